"""`vigil demo` runs unattended from a copy of the tree with no datasets beside it, and exits 0."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"


def _fresh_tree(dest: Path) -> Path:
    """The project's files as a clone would have them (tracked and new, not ignored), no ../shared."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    return dest


def test_demo_runs_unattended_without_datasets(tmp_path):
    tree = _fresh_tree(tmp_path / "vigil")
    assert not (tree.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "COLUMNS": "200", "VIGIL_DATASETS": str(tmp_path / "no-datasets"), "PYTHONPATH": str(tree)}
    log = tmp_path / "demo.log"
    with open(log, "w") as f:
        # the copy's code (cwd and PYTHONPATH first on sys.path), the project's venv for the packages
        proc = subprocess.Popen([str(PYTHON), "-m", "service.cli", "demo", "--duration", "20", "--speed", "0"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tree, start_new_session=True)
        try:
            rc = proc.wait(240)
        finally:
            if proc.poll() is None:  # kill the demo and the embedded Redis it started
                os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert rc == 0, out
    assert str(tree / "clients" / "excerpts") in out  # it streamed the copy's excerpts
    # live alert lines: the flagged leads-off raises and clears a technical alarm
    lines = out.splitlines()
    assert any("Bed 4 ECG" in ln and "signal_loss" in ln and " active " in ln for ln in lines), out
    assert any("Bed 4 ECG" in ln and "signal_loss" in ln and " cleared " in ln for ln in lines), out
    # the summary: every bed, alerts from REST beside the annotated episodes
    assert "What Vigil found" in out
    for bed in ("Bed 1 ECG", "Bed 2 ECG", "Bed 3 EEG", "Bed 4 ECG"):
        assert f"{bed}: " in out and bed in out.split("What Vigil found")[1]
    summary = out.split("What Vigil found")[1]
    assert "found: seizure raised" in summary and "found: signal_loss raised" in summary
    assert "VT run: >= 5 ventricular beats" in summary and "streamed 45.8-65.8 s" in summary
