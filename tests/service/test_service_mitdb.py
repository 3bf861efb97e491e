"""Acceptance on a full record: MIT-BIH 203 at full speed, af and vt alerts read from vigil:alerts."""

from __future__ import annotations

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from service_harness import hello, stream, unique

from models.checkpoint import CHECKPOINT_DIR
from models.data.paths import datasets_dir
from service import constants as C

pytestmark = [pytest.mark.datasets, pytest.mark.slow]


@pytest.fixture(scope="module")
def record_203():
    path = datasets_dir() / "mitdb" / "203"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"MIT-BIH 203 not under {datasets_dir()} (set VIGIL_DATASETS)")
    if not (CHECKPOINT_DIR / "vigil-ecg.pt").exists():
        pytest.skip("no trained ECG checkpoint (models/checkpoints/vigil-ecg.pt) yet: alerts would be meaningless")
    from models.data.ecg import read_wfdb

    rec = read_wfdb(path)
    return rec.signal, rec.sample_rate, list(rec.channels)


async def test_record_203_af_and_vt(record_203, server, redis_url):
    x, fs, leads = record_203
    sid = unique("mitdb203")
    r = aioredis.from_url(redis_url)
    group = f"g-{sid}"
    await r.xgroup_create(C.ALERTS_STREAM, group, id="$", mkstream=True)
    run = await stream(server.ws, hello(sid, fs, leads), x, int(fs / 4))
    assert not run.errors and run.close == 1000
    assert run.predictions[-1][0] == len(x) - 1

    kinds = set()
    while True:
        res = await r.xreadgroup(group, "c1", {C.ALERTS_STREAM: ">"}, count=1000)
        if not res or not res[0][1]:
            break
        for msg_id, fields in res[0][1]:
            a = orjson.loads(fields[C.ALERT_FIELD.encode()])
            if a["session_id"] == sid:
                kinds.add(a["kind"])
            await r.xack(C.ALERTS_STREAM, group, msg_id)
    await r.xgroup_destroy(C.ALERTS_STREAM, group)
    await r.aclose()
    assert {"af", "vt"} <= kinds

    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get(f"/v1/sessions/{sid}")).json()["status"] == "ended"
        assert {a["kind"] for a in (await http.get(f"/v1/sessions/{sid}/alerts")).json()["alerts"]} >= {"af", "vt"}
        assert (await http.get(f"/v1/sessions/{sid}/predictions")).json()["predictions"]
