"""`vigil demo` runs the embedded service on shipped excerpts and prints alerts."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_streams_excerpts_and_prints_alerts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {"COLUMNS": "200"}
    log = tmp_path / "demo.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "vigil"), "demo", "--duration", "25", "--speed", "0"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
        try:
            rc = proc.wait(240)
        finally:
            if proc.poll() is None:  # kill the demo and the embedded Redis it started
                os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert rc == 0, out
    assert "mitdb_203_vt" in out and "bonn_S001" in out
    assert "signal_loss  active" in out and "signal_loss  cleared" in out
