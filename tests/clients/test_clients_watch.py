"""`vigil watch` against a real Redis: consumer group, delivery after downtime, XAUTOCLAIM, XACK."""

from __future__ import annotations

import asyncio
import os
import subprocess

import orjson
import redis
from service_harness import VIGIL, unique

from service import constants as C
from service.bus import Bus


def _alert(sid: str, kind: str, onset: int, state: str = "active", seq: int = 1) -> dict:
    k = C.ALERT_KINDS[kind]
    return {"alert_id": f"{sid}:{kind}:{onset}", "seq": seq, "session_id": sid, "patient_id": None,
            "modality": "ecg", "kind": kind, "category": k.category, "priority": k.priority, "state": state,
            "acknowledged": False, "onset_sample": onset, "raised_sample": onset + 360, "end_sample": None,
            "onset_time": None, "end_time": None, "confidence": 0.9, "supersedes": None,
            "model": {"name": "vigil-ecg", "version": "0.1.0"}, "evidence": {}}


def _publish(url: str, alerts: list[dict]) -> None:
    """Publish through the service's own Bus (XADD + PUBLISH, as the engine does)."""
    import redis.asyncio as aioredis

    async def go():
        bus = Bus(aioredis.from_url(url))
        await bus.publish_alerts(alerts)
        await bus.redis.aclose()
    asyncio.run(go())


def _watch(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {"COLUMNS": "250"}
    return subprocess.run([str(VIGIL), "watch", "--redis-url", url, *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_watch_delivers_backlog_once_after_xack(redis_url):
    r = redis.Redis.from_url(redis_url)
    group, sid, other = unique("group"), unique("bed"), unique("other-bed")
    common = ["--group", group, "--consumer", "w1", "--session", f"{sid}*", "--priority", "medium"]

    first = _watch(redis_url, *common, "--json", "--idle-timeout", "1")  # joins the group, nothing to show yet
    assert first.returncode == 0 and first.stdout == "", first.stdout + first.stderr

    # while the watcher is down: five alerts, two of which its filters reject
    vt, af = _alert(sid, "vt", 7000), _alert(sid, "af", 100)
    af_cleared = _alert(sid, "af", 100, "cleared", 2)
    _publish(redis_url, [vt, af, _alert(sid, "artifact", 50), _alert(other, "vt", 10), af_cleared])
    # a consumer that died holding vt, and w1 itself crashed after reading af (neither acknowledged)
    assert len(r.xreadgroup(group, "gone", {C.ALERTS_STREAM: ">"}, count=1)[0][1]) == 1
    assert len(r.xreadgroup(group, "w1", {C.ALERTS_STREAM: ">"}, count=1)[0][1]) == 1

    out = _watch(redis_url, *common, "--json", "--claim-idle", "0", "--idle-timeout", "2")
    assert out.returncode == 0, out.stderr
    shown = [orjson.loads(line) for line in out.stdout.splitlines()]
    keys = sorted((a["alert_id"], a["seq"]) for a in shown)
    assert keys == sorted([(vt["alert_id"], 1), (af["alert_id"], 1), (af["alert_id"], 2)])
    assert r.xpending(C.ALERTS_STREAM, group)["pending"] == 0  # every entry acknowledged

    # acknowledged means done: a restart shows nothing again; a new alert shows once, as a table row
    _publish(redis_url, [_alert(sid, "vt", 9000)])
    again = _watch(redis_url, *common, "--claim-idle", "0", "--idle-timeout", "1")
    assert again.returncode == 0, again.stderr
    rows = [ln for ln in again.stdout.splitlines() if sid in ln]
    assert len(rows) == 1 and f"{sid}:vt:9000" in rows[0] and "high" in rows[0]
    assert "alert_id" in again.stdout.splitlines()[0]  # the table header
    r.xgroup_destroy(C.ALERTS_STREAM, group)
