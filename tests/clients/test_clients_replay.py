"""`vigil replay` streams shipped WFDB and EDF excerpts as concurrent sessions, as a subprocess."""

from __future__ import annotations

import os
import subprocess

import httpx
from service_harness import VIGIL, unique

from models.data.excerpts import excerpt_path


def test_replay_wfdb_and_edf_excerpts(server, tmp_path):
    prefix = unique("replay")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {"COLUMNS": "200"}
    files = [str(excerpt_path("mitdb_203_vt")), str(excerpt_path("eegmmidb_S001R01"))]
    out = subprocess.run([str(VIGIL), "replay", *files,
                          "--url", server.ws, "--speed", "0", "--duration", "8", "--prefix", prefix],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    # the progress display: one bar per session, complete, with the signal time sent
    for name, secs in (("mitdb_203_vt", "8.0/8.0 s"), ("eegmmidb_S001R01_20s", "8.0/8.0 s")):
        line = next((ln for ln in text.splitlines() if ln.startswith(name) and "%" in ln), None)
        assert line is not None and "100%" in line and secs in line, text

    sessions = {s["session_id"]: s for s in httpx.get(f"{server.url}/v1/sessions").json()["sessions"]
                if s["session_id"].startswith(prefix)}
    got = {sid.removeprefix(prefix + "-").rsplit("-", 1)[0]: s for sid, s in sessions.items()}
    assert set(got) == {"mitdb_203_vt", "eegmmidb_S001R01_20s"}
    assert got["mitdb_203_vt"]["samples_received"] == 8 * 360 and got["mitdb_203_vt"]["modality"] == "ecg"
    assert got["eegmmidb_S001R01_20s"]["samples_received"] == 8 * 160
    assert got["eegmmidb_S001R01_20s"]["modality"] == "eeg" and len(got["eegmmidb_S001R01_20s"]["channels"]) == 64
    assert all(s["status"] == "ended" for s in got.values())
    for sid in sessions:
        assert httpx.get(f"{server.url}/v1/sessions/{sid}/predictions", params={"limit": 5}).json()["predictions"]
