"""The SDK survives connection cuts and a server crash: nothing lost, nothing duplicated.

A TCP proxy between the SDK and `vigil serve` aborts the connection 5 times mid-record; then the
server is SIGKILLed and a new one started on the same Redis and data dir. The session must end with
exactly the record's samples on the server, and the SDK must have delivered the same predictions
and alerts as an uninterrupted run of the same record.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import httpx
import numpy as np
from service_harness import unique
from tcp_proxy import CuttingProxy

from clients.sdk import Ack, Alert, Client, Prediction, Reconnected

SECONDS = 90.0  # of mitdb 203: AF throughout, the 9-beat VT run at 53.8 s


def _record():
    from models.data.ecg import read_wfdb
    from models.data.excerpts import excerpt_path

    rec = read_wfdb(excerpt_path("mitdb_203_vt"))
    return rec.signal[: int(SECONDS * rec.sample_rate)], rec.sample_rate, list(rec.channels)


async def _run(url: str, sid: str, x: np.ndarray, fs: float, leads: list[str], chunk: int, during=None):
    got: list = []
    c = Client(url, session_id=sid, modality="ecg", sample_rate=fs, channels=leads, buffer_seconds=12,
               backoff=(0.05, 1.0), reconnect_timeout=150, on_message=got.append)
    await c.connect()
    side = asyncio.create_task(during(c)) if during else None
    try:
        for i in range(0, len(x), chunk):
            await c.send(x[i:i + chunk])
        if side:
            await side
        await c.end()
    finally:
        if side is not None and not side.done():  # let a server start finish, so the fixture stops it
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(side, 120)
        await c.close()
    return c, got


async def test_reconnect_cuts_and_server_crash(make_server, tmp_path):
    x, fs, leads = _record()
    a = make_server(data_dir=tmp_path)
    proxy = await CuttingProxy(a.port).start()
    servers = [a]

    async def chaos(c: Client) -> None:
        """Cut at acks past 8, 16, 24, 32, 40 s; crash the server past 50 s (each once reconnected)."""
        for k, t in enumerate((8, 16, 24, 32, 40, 50)):
            while c.stats.acked < t * fs or c.stats.connects < k + 1 or not proxy.live:
                await asyncio.sleep(0.01)
            assert c.next_sample < len(x)  # mid-record
            if t < 50:
                assert proxy.cut() >= 1  # the stream (and a REST backfill if one is running)
        assert c.stats.acked < len(x)
        a.stop(signal.SIGKILL)
        proxy.cut()
        b = await asyncio.to_thread(make_server, tmp_path)
        servers.append(b)
        proxy.upstream = b.port

    sid = unique("cuts")
    try:
        cut, got = await _run(proxy.ws, sid, x, fs, leads, 90, chaos)
    finally:
        await proxy.close()
    b = servers[-1]
    clean, ref = await _run(b.ws, unique("clean"), x, fs, leads, 90)

    # the server has exactly the record's samples, and the session ended cleanly
    row = httpx.get(f"{b.url}/v1/sessions/{sid}").json()
    assert row["samples_received"] == len(x) and row["status"] == "ended"
    reconnects = [m for m in got if isinstance(m, Reconnected)]
    assert len(reconnects) >= 6 and cut.stats.connects == len(reconnects) + 1
    assert cut.stats.samples_sent - cut.stats.samples_resent == len(x) == cut.stats.samples_given
    assert cut.stats.samples_resent > 0  # cuts happened with unacknowledged samples in flight
    acks = [m.next_sample for m in got if isinstance(m, Ack)]
    assert acks[-1] == len(x)

    # predictions: same samples, in order, no duplicates, same values as the uninterrupted run
    p_cut = [m for m in got if isinstance(m, Prediction)]
    p_ref = [m for m in ref if isinstance(m, Prediction)]
    assert [p.sample for p in p_cut] == [p.sample for p in p_ref]
    assert max(abs(p.probs[k] - q.probs[k]) for p, q in zip(p_cut, p_ref) for k in q.probs) <= 1e-4

    # alerts: the same alert ids (id = session:kind:onset), the same final states
    ids = lambda msgs, s: {m.alert_id.removeprefix(s) for m in msgs if isinstance(m, Alert)}  # noqa: E731
    assert ids(got, sid) == ids(ref, clean.session_id) and ids(ref, clean.session_id)
    final = lambda s: {(al["alert_id"].removeprefix(s), al["state"], al["end_sample"])  # noqa: E731
                       for al in httpx.get(f"{b.url}/v1/sessions/{s}/alerts").json()["alerts"]}
    assert final(sid) == final(clean.session_id)
    # the raw strip of an alert is the record's signal, as streamed
    alert_id = next(m.alert_id for m in got if isinstance(m, Alert))
    strip = httpx.get(f"{b.url}/v1/alerts/{alert_id}/strip").json()
    data = np.array(strip["data"], dtype=float)
    np.testing.assert_array_equal(data, x[strip["first_sample"]:strip["first_sample"] + len(data)])
