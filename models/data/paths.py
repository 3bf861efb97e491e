"""Where the public datasets live.

The datasets are not part of the repository (see ``../shared/data/README.md``). Tests that
need them are marked ``@pytest.mark.datasets`` and skip when the folder is absent; the demo
and the always-run tests use the small excerpts in ``clients/excerpts`` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

DATASETS_ENV = "VIGIL_DATASETS"

REPO_ROOT = Path(__file__).resolve().parents[2]


def datasets_dir() -> Path:
    """Root folder of the public datasets.

    Returns
    -------
    Path
        ``$VIGIL_DATASETS`` when set, else ``<repo root>/../shared/data``. The folder may not
        exist; use :func:`require_dataset` to fail with a clear message.
    """
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env).expanduser()
    return REPO_ROOT.parent / "shared" / "data"


def require_dataset(sub: str) -> Path:
    """Folder of one dataset, e.g. ``require_dataset("mitdb")``.

    Raises
    ------
    FileNotFoundError
        When ``datasets_dir() / sub`` is not a folder.
    """
    root = datasets_dir()
    path = root / sub
    if not path.is_dir():
        raise FileNotFoundError(
            f"Dataset {sub} not found under {root}; set {DATASETS_ENV} to the folder that holds it"
        )
    return path
