"""Several processes write one SQLite history at once (`vigil serve --workers N`): every write
waits for the lock instead of failing with "database is locked", and nothing is lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from service.store import Store

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import asyncio, sys
from pathlib import Path
from service.store import Store

async def main(data_dir, name, n):
    store = await Store.connect(None, Path(data_dir))
    await store.put_session({"session_id": name, "patient_id": None, "modality": "ecg", "sample_rate": 360.0,
                             "channels": ["MLII"], "units": "uV", "started_at": "2026-01-01T00:00:00Z",
                             "ended_at": None, "status": "streaming", "samples_received": 0})
    for i in range(n):  # one transaction per tick, as the engine writes: predictions + a session update
        rows = [(name, 40 * i + k, '{"af": 0.1}', None) for k in range(40)]
        await store.write(predictions=rows, sessions=[(name, "streaming", 40 * (i + 1), None)])
        await store.audit([(name, None, "settings", "test", "2026-01-01T00:00:00Z", {"i": i})])
        assert (await store.session(name))["samples_received"] == 40 * (i + 1)
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""
PROCESSES, TICKS = 4, 150


def test_processes_share_one_sqlite_history(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"writer-{p}", str(TICKS)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for p in range(PROCESSES)]
    errors = [(p.wait(120), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in errors), [e for rc, e in errors if rc]

    async def check():
        store = await Store.connect(None, tmp_path)
        try:
            for p in range(PROCESSES):
                sid = f"writer-{p}"
                assert len(await store.predictions(sid, 0, 2**62, -1, 10_000)) == 40 * TICKS
                assert len(await store.audit_log(sid)) == TICKS
                assert (await store.session(sid))["samples_received"] == 40 * TICKS
        finally:
            await store.close()
    asyncio.run(check())


def test_advertise_auto_resolves_to_this_host(monkeypatch):
    """VIGIL_ADVERTISE_URL=auto (compose, Kubernetes) advertises this host's address and port."""
    import socket

    from service.config import Settings

    monkeypatch.setenv("VIGIL_ADVERTISE_URL", "auto")
    s = Settings(port=8123)
    assert s.advertised == f"http://{socket.gethostbyname(socket.gethostname())}:8123"
    monkeypatch.setenv("VIGIL_ADVERTISE_URL", "http://vigil-a:8000")
    assert Settings().advertised == "http://vigil-a:8000"
