"""Test-wide settings and fixtures (helpers live in ``tests/synthetic.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# One intra-op thread: the tests' tensors are small, and on a busy 2-core machine a second
# OpenMP thread spins and waits, which made the model tests ten times slower.
torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# A true CinC 2015 VT alarm the service finds (only while the VT gate's levels are low) and a false
# one it lets pass (models/checkpoints/vigil-ecg-alarms-eval.json).
TWO_CINC2015_ALARMS = {"v197l": True, "v140s": False}


@pytest.fixture
def two_cinc2015_alarms(tmp_path, monkeypatch):
    """A datasets folder (``VIGIL_DATASETS``) whose CinC 2015 set is the two real records of
    :data:`TWO_CINC2015_ALARMS` and their ``alarms.csv``; returns its ``cinc2015`` folder. Skips
    when the full data are not found."""
    from models.data.paths import datasets_dir

    src = datasets_dir() / "cinc2015"
    if not all((src / f"{n}.hea").exists() for n in TWO_CINC2015_ALARMS):
        pytest.skip(f"CinC 2015 records {sorted(TWO_CINC2015_ALARMS)} not under {src} (set VIGIL_DATASETS)")
    data = tmp_path / "data" / "cinc2015"
    data.mkdir(parents=True)
    for name in TWO_CINC2015_ALARMS:
        for ext in ("hea", "mat"):
            (data / f"{name}.{ext}").symlink_to(src / f"{name}.{ext}")
    (data / "alarms.csv").write_text("recordname,result\n" + "".join(
        f"{n},{int(t)}\n" for n, t in TWO_CINC2015_ALARMS.items()))
    monkeypatch.setenv("VIGIL_DATASETS", str(tmp_path / "data"))
    return data
