"""Resume across a crash: SIGKILL the server mid-record, restart it on the same Redis, resume."""

from __future__ import annotations

import asyncio
import signal

import numpy as np
from service_harness import hello, open_stream, reference, stream, unique
from test_api_stream import with_dropout


async def test_resume_after_sigkill(make_server, tmp_path, ecg_203):
    x, fs, leads = ecg_203
    x = with_dropout(x[: int(20 * fs)], fs).astype(np.float32)
    sid = unique("crash")
    a = make_server(data_dir=tmp_path)

    ws, before, reader = await open_stream(a.ws, hello(sid, fs, leads), x, int(15 * fs))
    for _ in range(600):
        if before.acks and before.acks[-1] >= 12 * fs:
            break
        await asyncio.sleep(0.05)
    a.stop(signal.SIGKILL)
    await asyncio.wait_for(reader, 10)
    assert before.acks and not before.errors

    b = make_server(data_dir=tmp_path)
    after = await stream(b.ws, hello(sid, fs, leads), x, 90)
    assert after.ready["resume_from"] >= before.acks[-1]
    assert not after.errors and after.close == 1000

    merged = before.probs() | after.probs()
    ref = reference(x, fs)
    assert set(ref) <= set(merged)
    assert max(abs(merged[s][lab] - float(ref[s][i])) for s in ref
               for i, lab in enumerate(after.ready["labels"])) <= 1e-4

    clean = await stream(b.ws, hello(unique("clean"), fs, leads), x, 90)
    key = lambda run: {(al["kind"], al["onset_sample"]) for al in run.alerts}  # noqa: E731
    assert key(before) | key(after) == key(clean) and key(clean)
    final = lambda run: {(al["kind"], al["onset_sample"], al["state"], al["end_sample"])  # noqa: E731
                         for al in run.alerts if al["state"] == "cleared"}
    assert final(before) | final(after) == final(clean)
