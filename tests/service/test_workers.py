"""`vigil serve --workers 2` (issue 4, acceptance 7): two replica processes on one port share the
sessions, answer every session's REST commands whichever of them gets the request (owner routing),
report both in /metrics, restart a worker that dies and stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time

import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis
from service_harness import VIGIL, free_port, hello, open_stream, unique

from service import constants as C

N_SESSIONS = 12  # on 2 workers all land on one with probability 2 / 2**12
SIGNAL_S = 8


class Workers:
    """A `vigil serve --workers N` subprocess."""

    def __init__(self, data_dir, env: dict, n: int = 2):
        self.port, self.n, self.data_dir = free_port(), n, data_dir
        self.url, self.ws = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}/v1/stream"
        self.log = open(data_dir / "serve.log", "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | env
        self.proc = subprocess.Popen([str(VIGIL), "serve", "--port", str(self.port), "--data-dir", str(data_dir),
                                      "--workers", str(n), "--log-level", "warning"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def replicas(self, tries: int = 24) -> set[str]:
        """Replica ids answering /healthz over fresh connections (the kernel spreads them)."""
        seen = set()
        for _ in range(tries):
            with contextlib.suppress(httpx.HTTPError):
                seen.add(httpx.get(self.url + "/healthz", timeout=2).json()["replica"])
        return seen

    def wait_ready(self, exclude: set[str] = frozenset(), timeout: float = 90) -> set[str]:
        """Wait until n replicas (none of ``exclude``) answer; return their ids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"vigil serve exited {self.proc.returncode}: {self.log.name}"
            seen = self.replicas() - exclude
            if len(seen) >= self.n:
                return seen
            time.sleep(0.3)
        raise RuntimeError(f"{self.n} workers not ready in {timeout} s: {self.log.name}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def owner_of(r: httpx.Response) -> str:
    """The replica that holds the session of a session-scoped answer (forwarded or not)."""
    return r.headers.get(C.OWNER_HEADER) or r.headers[C.REPLICA_HEADER]


async def fresh(method: str, url: str, **kw) -> httpx.Response:
    """One request on a new connection (so the kernel may pick either worker)."""
    async with httpx.AsyncClient(timeout=20) as c:
        return await c.request(method, url, **kw)


async def spread(method: str, url: str, n: int = 4, **kw) -> list[httpx.Response]:
    return [await fresh(method, url, **kw) for _ in range(n)]


@pytest.fixture(params=["embedded", "external"])
def workers(request, tmp_path, redis_url):
    env = {} if request.param == "embedded" else {"VIGIL_REDIS_URL": redis_url}
    w = Workers(tmp_path, env)
    w.redis_url = None if request.param == "embedded" else redis_url
    try:
        w.ids = w.wait_ready()
        yield w
    finally:
        w.stop()


async def test_workers_share_sessions_and_route_commands(workers, ecg_203):
    x, fs, leads = ecg_203
    x = x[: int(SIGNAL_S * fs)].astype(np.float32)
    sids = [unique("wk") for _ in range(N_SESSIONS)]
    opened = await asyncio.gather(*(open_stream(workers.ws, hello(sid, fs, leads,
                                                                 alarms={"not_monitoring_timeout_s": 2}), x, len(x))
                                    for sid in sids))
    runs = {sid: run for sid, (_, run, _) in zip(sids, opened)}
    assert all(r.ready["type"] == "ready" for r in runs.values())
    base = workers.url + "/v1/sessions/"

    # every session's settings answer from any worker; both workers hold sessions
    owners, forwarded = {}, 0
    for sid in sids:
        for r in await spread("GET", base + sid + "/alarms"):
            assert r.status_code == 200, r.text
            assert r.json()["session_id"] == sid
            owners.setdefault(sid, owner_of(r))
            assert owner_of(r) == owners[sid]
            forwarded += C.OWNER_HEADER in r.headers
    assert set(owners.values()) == workers.ids
    held_by = {sid: ws.response.headers[C.REPLICA_HEADER] for sid, (ws, _, _) in zip(sids, opened)}
    assert owners == held_by  # the worker that took the connection
    assert forwarded > 0

    # /metrics on any worker counts the sessions of both
    for _ in range(4):
        text = (await fresh("GET", workers.url + "/metrics")).text
        assert f'vigil_sessions{{status="streaming"}} {float(N_SESSIONS)}' in text
        assert 'vigil_errors_total{code="bad_hello"}' in text  # every family the dashboards query, at 0 too

    # settings and pauses change the owner's alarm state, whoever gets the request
    for i, sid in enumerate(sids):
        r = await fresh("PATCH", base + sid + "/alarms", json={"kinds": {"vt": {"threshold": 0.4}}, "by": f"rn-{i}"})
        assert r.status_code == 200, r.text
        r = await fresh("POST", base + sid + "/alarms/pause", json={"duration_s": 60, "by": f"rn-{i}"})
        assert r.status_code == 200, r.text
        for r in await spread("GET", base + sid + "/alarms", 2):
            body = r.json()
            assert body["overrides"]["kinds"]["vt"]["threshold"] == 0.4 and body["pause"] is not None

    # acknowledgements reach the owner's alarm state and the monitor connected there
    alerts = {}
    deadline = time.monotonic() + 20
    while len(alerts) < len(sids) and time.monotonic() < deadline:
        for sid in set(sids) - set(alerts):
            found = [a for a in (await fresh("GET", base + sid + "/alerts")).json()["alerts"]
                     if a["kind"] == C.NOT_MONITORING]
            if found:
                alerts[sid] = found[0]["alert_id"]
        await asyncio.sleep(0.3)
    assert len(alerts) == len(sids), "not_monitoring was not raised for every session"
    for sid, aid in alerts.items():
        r = await fresh("POST", f"{workers.url}/v1/alerts/{aid}/ack", json={"by": "rn-ack"})
        assert r.status_code == 200 and r.json()["acknowledged"] is True, r.text
        held = {h["alert_id"]: h for h in (await fresh("GET", base + sid + "/alarms")).json()["held"]}
        assert held[aid]["acknowledged"] is True
        actions = [e["action"] for e in (await fresh("GET", base + sid + "/alarms/audit")).json()["audit"]]
        assert sorted(actions) == sorted([C.AUDIT_SETTINGS, C.AUDIT_PAUSE, C.AUDIT_ACK])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
            any(a["alert_id"] == alerts[sid] and a["acknowledged"] for a in runs[sid].alerts) for sid in sids):
        await asyncio.sleep(0.1)
    for sid in sids:
        assert any(a["alert_id"] == alerts[sid] and a["acknowledged"] for a in runs[sid].alerts), sid

    # SIGTERM to the supervisor: every worker snapshots its sessions and closes its clients (1012)
    t0 = time.monotonic()
    assert await asyncio.to_thread(workers.stop) == 0
    assert time.monotonic() - t0 < 30
    await asyncio.wait_for(asyncio.gather(*(reader for _, _, reader in opened)), 10)
    assert {r.close for r in runs.values()} == {C.CLOSE_CODES[C.SHUTTING_DOWN]}
    if workers.redis_url:
        r = aioredis.from_url(workers.redis_url)
        try:
            assert all([await r.exists(C.snapshot_key(s)) for s in sids])
            assert not any([await r.exists(C.owner_key(s)) for s in sids])
        finally:
            await r.aclose()


async def test_workers_restart_a_dead_worker(tmp_path):
    w = Workers(tmp_path, {})
    try:
        ids = w.wait_ready()
        victim = sorted(ids)[0]
        os.kill(int(victim.rsplit("-", 1)[1]), signal.SIGKILL)
        now = w.wait_ready(exclude={victim})
        assert len(now) == 2 and victim not in now
    finally:
        assert w.stop() == 0
    assert "exited with -9: restarting it" in (tmp_path / "serve.log").read_text()


def test_workers_reject_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([str(VIGIL), "serve", "--port", str(port), "--data-dir", str(tmp_path), "--workers", "2"],
                           capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")})
    assert r.returncode == 1 and f"got {port}" in r.stdout + r.stderr


async def test_separate_replicas_route_by_advertised_url(redis_url, tmp_path, ecg_203):
    """Two single-process replicas sharing Redis and the history, each with VIGIL_ADVERTISE_URL: a
    session held by one is configured through the other."""
    from service_harness import Server

    servers = []
    try:
        for _ in range(2):
            s = Server({"VIGIL_REDIS_URL": redis_url}, tmp_path)
            s.env["VIGIL_ADVERTISE_URL"] = s.url
            servers.append(s.start())
        a, b = servers
        x, fs, leads = ecg_203
        sid = unique("adv")
        ws, run, reader = await open_stream(a.ws, hello(sid, fs, leads), x.astype(np.float32), int(4 * fs))
        holder = ws.response.headers[C.REPLICA_HEADER]
        r = await fresh("PATCH", f"{b.url}/v1/sessions/{sid}/alarms", json={"kinds": {"vt": {"threshold": 0.35}}})
        assert r.status_code == 200, r.text
        assert r.headers[C.OWNER_HEADER] == holder != r.headers[C.REPLICA_HEADER]
        direct = await fresh("GET", f"{a.url}/v1/sessions/{sid}/alarms")
        assert direct.json()["overrides"]["kinds"]["vt"]["threshold"] == 0.35
        await ws.send('{"type":"end"}')
        await asyncio.wait_for(reader, 30)
        r = await fresh("GET", f"{b.url}/v1/sessions/{sid}/alarms")
        assert r.status_code == 409 and C.OWNER_HEADER not in r.headers  # ended: no owner left
    finally:
        for s in servers:
            s.stop()


def test_workers_stop_when_a_worker_cannot_start(tmp_path):
    """A configuration error fails every worker's first start: the supervisor stops (status 3, as a
    single `vigil serve`) instead of restarting them forever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"}  # nothing listens there
    r = subprocess.run([str(VIGIL), "serve", "--port", str(free_port()), "--data-dir", str(tmp_path), "--workers", "2",
                        "--log-level", "warning"], capture_output=True, text=True, timeout=90, env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "could not start" in r.stderr


def test_workers_listen_together(tmp_path):
    """On the first start every worker listens once all have loaded their models: as soon as the port
    answers, both workers take connections (the first clients do not all land on the first one up)."""
    w = Workers(tmp_path, {})
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(w.url + "/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline and w.proc.poll() is None
            time.sleep(0.05)
        assert len(w.replicas()) == 2
    finally:
        assert w.stop() == 0


def test_auto_workers_is_one_per_usable_cpu():
    from service.workers import MAX_AUTO_WORKERS, auto_workers

    assert 1 <= auto_workers() <= min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)))
