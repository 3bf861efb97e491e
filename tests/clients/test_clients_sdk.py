"""The SDK's plain paths: the synchronous wrapper, typed messages, refusals raised as errors."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from service_harness import unique

from clients.sdk import Ack, Client, Prediction, VigilError, _rest_base, _with_session
from clients.sync import SyncClient


def _ecg(seconds: float):
    from models.data.ecg import read_wfdb
    from models.data.excerpts import excerpt_path

    rec = read_wfdb(excerpt_path("mitdb_201_af"))
    return rec.signal[: int(seconds * rec.sample_rate)], rec.sample_rate, list(rec.channels)


def test_sync_client_streams_and_ends(server):
    x, fs, leads = _ecg(12)
    sid = unique("sync")
    with SyncClient(server.ws, session_id=sid, modality="ecg", sample_rate=fs, channels=leads) as c:
        assert c.client.ready.resume_from == 0 and "af" in c.client.ready.labels
        for i in range(0, len(x), 97):  # odd chunking: frames need not align with anything
            c.send(x[i:i + 97])
    preds = [m for m in c.received if isinstance(m, Prediction)]
    acks = [m.next_sample for m in c.received if isinstance(m, Ack)]
    assert acks[-1] == len(x) and acks == sorted(acks)
    stored = httpx.get(f"{server.url}/v1/sessions/{sid}/predictions").json()["predictions"]
    assert [p.sample for p in preds] == [p["sample"] for p in stored] and len(preds) == 120
    assert httpx.get(f"{server.url}/v1/sessions/{sid}").json()["samples_received"] == len(x)


async def test_refusal_is_raised_not_retried(server):
    x, fs, leads = _ecg(2)
    sid = unique("ended")
    async with Client(server.ws, session_id=sid, modality="ecg", sample_rate=fs, channels=leads) as c:
        await c.send(x)
    assert c.finished
    again = Client(server.ws, session_id=sid, modality="ecg", sample_rate=fs, channels=leads)
    with pytest.raises(VigilError) as e:  # a hello for an ended session: session_ended (4409), final
        await again.connect()
    assert e.value.code == "session_ended" and again.stats.connects == 0
    with pytest.raises(ValueError):
        await c.send(np.zeros((10, 3), np.float32))


def test_urls():
    assert _with_session("ws://h:1/v1/stream", "bed-1") == "ws://h:1/v1/stream?session=bed-1"
    assert _rest_base("wss://vigil.example/v1/stream?session=x") == "https://vigil.example"
