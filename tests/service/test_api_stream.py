"""Protocol v1 end to end against a real `vigil serve`: happy path, chunking, masking, takeover."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import redis.asyncio as aioredis
from service_harness import HEADER, binary_frame, hello, open_stream, reference, stream, unique

from service import constants as C

SECONDS = 20


def with_dropout(x: np.ndarray, fs: float) -> np.ndarray:
    """A copy with a 2-s NaN burst at 5 s and a 4.5-s flat line at 12 s (both raise signal_loss; a
    flat line does once it has lasted 4 s)."""
    x = x.copy()
    x[int(5 * fs):int(7 * fs)] = np.nan
    x[int(12 * fs):int(16.5 * fs)] = x[int(12 * fs)]
    return x


def assert_matches_reference(run, ref: dict[int, np.ndarray], labels: list[str]) -> None:
    got = run.probs()
    common = sorted(set(got) & set(ref))
    assert len(common) >= len(ref) - 1, "every reference step has a prediction"
    worst = max(abs(got[s][lab] - float(ref[s][i])) for s in common for i, lab in enumerate(labels))
    assert worst <= 1e-4


async def test_happy_path_excerpt(server, ecg_203, redis_url):
    x, fs, leads = ecg_203
    x = with_dropout(x[: int(SECONDS * fs)], fs)
    sid = unique("happy")
    r = aioredis.from_url(redis_url)
    group = f"g-{sid}"
    await r.xgroup_create(C.ALERTS_STREAM, group, id="$", mkstream=True)
    run = await stream(server.ws, hello(sid, fs, leads, patient_id="p-1"), x, int(fs / 4))

    assert run.ready["resume_from"] == 0 and run.ready["labels"] and run.ready["output_rate"] == 10.0
    assert run.ready["delay_samples"] <= 0.25 * fs
    assert not run.errors and run.close == 1000
    samples = [s for s, _ in run.predictions]
    assert samples == sorted(set(samples)) and samples[-1] == len(x) - 1
    assert_matches_reference(run, reference(x, fs), run.ready["labels"])
    assert run.acks[-1] == len(x) and all(b - a <= 5 * fs for a, b in zip([0] + run.acks, run.acks))
    loss = [a for a in run.alerts if a["kind"] == "signal_loss"]
    assert {a["onset_sample"] for a in loss} == {int(5 * fs), int(12 * fs)}
    assert {a["state"] for a in loss} == {"active", "cleared"}
    assert all(a["alert_id"] == f"{sid}:{a['kind']}:{a['onset_sample']}" for a in run.alerts)

    # everything is visible over REST once the socket has closed
    async with httpx.AsyncClient(base_url=server.url) as http:
        sess = (await http.get(f"/v1/sessions/{sid}")).json()
        assert sess["status"] == "ended" and sess["samples_received"] == len(x) and sess["patient_id"] == "p-1"
        assert any(s["session_id"] == sid for s in (await http.get("/v1/sessions")).json()["sessions"])
        latest = {a["alert_id"]: a for a in run.alerts}
        rest = (await http.get(f"/v1/sessions/{sid}/alerts")).json()["alerts"]
        assert {a["alert_id"]: a for a in rest} == latest
        pages, cursor = [], None
        while True:
            params = {"limit": 70} | ({"cursor": cursor} if cursor is not None else {})
            page = (await http.get(f"/v1/sessions/{sid}/predictions", params=params)).json()
            pages += page["predictions"]
            if (cursor := page["next_cursor"]) is None:
                break
        assert [p["sample"] for p in pages] == samples
        window = (await http.get(f"/v1/sessions/{sid}/predictions",
                                 params={"from_sample": 1000, "to_sample": 2000})).json()["predictions"]
        assert [p["sample"] for p in window] == [s for s in samples if 1000 <= s < 2000]
        aid = loss[0]["alert_id"]
        alert = (await http.get(f"/v1/alerts/{aid}")).json()
        assert alert["evidence"]["strip"] == f"/v1/alerts/{aid}/strip"
        strip = (await http.get(f"/v1/alerts/{aid}/strip")).json()
        assert strip["sample_rate"] == fs and strip["channels"] == leads and strip["first_sample"] <= int(5 * fs)
        assert None in sum(strip["data"], [])  # the NaN burst comes back as null
        acked = (await http.post(f"/v1/alerts/{aid}/ack")).json()
        assert acked["acknowledged"] and acked["seq"] == latest[aid]["seq"] + 1
        metrics = (await http.get("/metrics")).text
        for name in ("vigil_sessions", "vigil_frames_total", "vigil_inference_batch_size",
                     "vigil_frame_to_prediction_seconds", "vigil_alerts_total", "vigil_snapshot_seconds"):
            assert f"# TYPE {name}" in metrics
        assert (await http.get("/openapi.json")).status_code == 200

    # the same transitions went to the vigil:alerts stream (consumer group: at-least-once)
    got = []
    while True:
        res = await r.xreadgroup(group, "c1", {C.ALERTS_STREAM: ">"}, count=1000)
        if not res or not res[0][1]:
            break
        got += [orjson.loads(f[b"alert"]) for _, f in res[0][1]]
    await r.xgroup_destroy(C.ALERTS_STREAM, group)
    await r.aclose()
    mine = [(a["alert_id"], a["seq"]) for a in got if a["session_id"] == sid]
    assert mine[: len(run.alerts)] == [(a["alert_id"], a["seq"]) for a in run.alerts]


def json_frames(x: np.ndarray, chunk: int):
    """Text frames with null for NaN, each also re-sending the previous frame's last 5 samples."""
    def frames(start: int):
        for i in range(start, len(x), chunk):
            a = max(start, i - 5)
            rows = [[None if np.isnan(v) else float(v) for v in row] for row in x[a:i + chunk]]
            yield orjson.dumps({"type": "samples", "first_sample": a, "data": rows}).decode()
    return frames


async def test_chunking_invariance(sqlite_server, ecg_203):
    x, fs, leads = ecg_203
    x = with_dropout(x[: int(SECONDS * fs)], fs).astype(np.float32)
    runs = await asyncio.gather(
        stream(sqlite_server.ws, hello(unique("chunk1"), fs, leads), x, 1),
        stream(sqlite_server.ws, hello(unique("chunk37"), fs, leads), x, 37, frames=json_frames(x, 37)),
        stream(sqlite_server.ws, hello(unique("chunk5000"), fs, leads), x, 5000))
    assert all(not r.errors and r.close == 1000 for r in runs)
    grids = [[s for s, _ in r.predictions] for r in runs]
    assert grids[0] == grids[1] == grids[2]
    ref = runs[0].probs()
    for r in runs[1:]:
        assert max(abs(p[k] - ref[s][k]) for s, p in r.predictions for k in p) <= 1e-4
    ids = [sorted((a["kind"], a["onset_sample"], a["seq"], a["state"]) for a in r.alerts) for r in runs]
    assert ids[0] == ids[1] == ids[2] and ids[0]


async def test_nan_inf_gap_and_leads_off_are_masked(sqlite_server, ecg_203):
    x, fs, leads = ecg_203
    x = x[: int(10 * fs)].copy()
    x[100:110, 0] = np.inf
    x[500:900] = -np.inf
    x[1000:1003] = np.nan
    gap = (int(4 * fs), int(6 * fs))

    def frames(start: int):
        step = int(fs / 4)
        for i in range(start, len(x), step):
            if gap[0] <= i < gap[1]:
                continue  # never sent: a gap the server masks
            yield binary_frame(i, x[i:i + step], flags=1 if int(7 * fs) <= i < int(9 * fs) else 0)

    run = await stream(sqlite_server.ws, hello(unique("nan"), fs, leads), x, 0, frames=frames)
    assert not run.errors and run.close == 1000 and run.acks[-1] == len(x)
    assert all(np.isfinite(list(p.values())).all() for _, p in run.predictions)
    assert [s for s, _ in run.predictions][-1] == len(x) - 1
    onsets = {a["onset_sample"] for a in run.alerts if a["kind"] == "signal_loss"}
    assert onsets == {500, gap[0], int(7 * fs)}


async def test_int16_frames(sqlite_server, ecg_203):
    x, fs, leads = ecg_203
    counts = np.round(x[: int(5 * fs)] / 5.0).astype("<i2")

    def frames(start: int):
        for i in range(start, len(counts), 90):
            block = counts[i:i + 90]
            yield HEADER.pack(i, len(block), 2, 2, 0) + block.tobytes()

    run = await stream(sqlite_server.ws, hello(unique("i16"), fs, leads, scale=5.0), x, 0, frames=frames)
    assert not run.errors and run.close == 1000
    assert_matches_reference(run, reference(counts.astype(np.float32) * 5.0, fs), run.ready["labels"])


async def test_takeover_and_ended(sqlite_server, ecg_203):
    x, fs, leads = ecg_203
    x = x[: int(8 * fs)]
    sid = unique("takeover")
    ws_a, first, reader_a = await open_stream(sqlite_server.ws, hello(sid, fs, leads), x, int(3 * fs))
    second = await stream(sqlite_server.ws, hello(sid, fs, leads), x, 90)
    await asyncio.wait_for(reader_a, 10)
    assert first.errors[-1]["code"] == C.TAKEN_OVER and first.close == 4409
    assert second.ready["resume_from"] == int(3 * fs) and not second.errors and second.close == 1000
    merged, ref = first.probs() | second.probs(), reference(x, fs)
    assert set(ref) <= set(merged) and len(merged) == len(ref) + 1  # + the final padded step

    third = await stream(sqlite_server.ws, hello(sid, fs, leads), x, 90)
    assert third.errors[0]["code"] == C.SESSION_ENDED and third.close == 4409


async def test_resume_repeats_the_last_ack(sqlite_server, ecg_203):
    """Acks sent while no connection held the session are lost; a resuming client gets the last one
    again right after ready, so a client whose buffer is full up to resume_from does not wait for an
    ack the server would only send after more data (found as a hang of the SDK reconnect test)."""
    import websockets

    x, fs, leads = ecg_203
    sid = unique("reack")
    ws, first, reader = await open_stream(sqlite_server.ws, hello(sid, fs, leads), x, int(7 * fs))
    ws.transport.abort()                                   # gone without a close: the session detaches
    await asyncio.gather(reader, return_exceptions=True)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as http:
        for _ in range(100):                               # the detached session is processed and snapshotted
            if (await http.get(f"/v1/sessions/{sid}")).json()["status"] == "detached":
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    async with websockets.connect(sqlite_server.ws) as ws2:
        await ws2.send(orjson.dumps(hello(sid, fs, leads)).decode())
        ready = orjson.loads(await asyncio.wait_for(ws2.recv(), 30))
        ack = orjson.loads(await asyncio.wait_for(ws2.recv(), 30))
    assert ready["type"] == "ready" and ready["resume_from"] == int(7 * fs)
    assert ack == {"type": "ack", "next_sample": int(7 * fs)}
    assert not first.acks or first.acks[-1] < ack["next_sample"]
