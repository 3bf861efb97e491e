"""The LSL bridge: mne-lsl's player streams a shipped EDF excerpt; the bridge forwards it to Vigil."""

from __future__ import annotations

import httpx
import numpy as np
from service_harness import unique

from clients.lsl import bridge
from models.data.eeg import read_edf
from models.data.excerpts import excerpt_path


async def test_lsl_player_to_vigil(server):
    from mne_lsl.player import PlayerLSL

    path = excerpt_path("eegmmidb_S001R01")
    rec = read_edf(path)  # (3200, 64) µV at 160 Hz
    name, sid = unique("lsl"), unique("lsl-session")
    chunks: list[np.ndarray] = []
    player = PlayerLSL(path, chunk_size=16, name=name).start()
    try:
        res = await bridge(server.ws, sid, name=name, duration_s=3.0, resolve_timeout=10, on_chunk=chunks.append)
    finally:
        player.stop()
    assert res.ended and res.samples == 3 * 160 and res.predictions > 0

    # what went out is a contiguous stretch of the file, in the stream's units (volts)
    sent = np.concatenate(chunks) * 1e6  # (t, 64) µV
    start = int(np.argmin([np.abs(rec.signal[i:i + 16] - sent[:16]).max() for i in range(len(rec.signal) - 16)]))
    looped = np.concatenate([rec.signal, rec.signal])[start:start + len(sent)]
    np.testing.assert_allclose(sent, looped, atol=0.01)

    row = httpx.get(f"{server.url}/v1/sessions/{sid}").json()
    assert row["status"] == "ended" and row["samples_received"] == 480 and row["sample_rate"] == 160.0
    assert row["channels"] == rec.channels and row["modality"] == "eeg" and row["units"] == "V"
    preds = httpx.get(f"{server.url}/v1/sessions/{sid}/predictions").json()["predictions"]
    assert len(preds) == res.predictions and preds[-1]["sample"] == 479
