"""`vigil lsl`: bridge a Lab Streaming Layer stream into a Vigil session through mne-lsl.

EEG labs stream from their amplifiers over LSL; this resolves one stream by name, type or source
id, opens an inlet, and forwards every chunk it pulls to Vigil through the SDK (so drops of the
Vigil connection are survived with the SDK's buffering and resume). The session's sample rate
and channel names come from the stream's description; units from its channel units when set
(names such as ``microvolts``, or the power-of-ten multiplier of volts that
mne-lsl's player writes: ``0`` for volts), else ``--units``, else volts. Samples are numbered in arrival order: LSL
timestamps are not used, so samples the amplifier's outlet lost are not seen as a gap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from rich.console import Console

from clients.replay import alert_line
from clients.sdk import Alert, Client, Message, Prediction

_UNIT_NAMES = {"uv": "uV", "µv": "uV", "microvolt": "uV", "microvolts": "uV", "mv": "mV", "millivolt": "mV",
               "millivolts": "mV", "v": "V", "volt": "V", "volts": "V",
               # mne-lsl writes MNE's unit multiplier (a power of ten of the SI unit, volts for EEG/ECG)
               "0": "V", "-3": "mV", "-6": "uV"}


def stream_units(units: list[str | None] | None) -> str | None:
    """The Vigil unit of an LSL stream's channel units, when they are set and agree."""
    names = {_UNIT_NAMES.get((u or "").strip().lower()) for u in (units or [])}
    return names.pop() if len(names) == 1 and None not in names else None


@dataclass
class BridgeResult:
    session_id: str
    samples: int = 0
    predictions: int = 0
    alerts: int = 0
    ended: bool = False


async def bridge(url: str, session_id: str, *, name: str | None = None, stype: str | None = None,
                 source_id: str | None = None, modality: str = "eeg", units: str | None = None,
                 duration_s: float | None = None, idle_timeout: float = 10.0, resolve_timeout: float = 10.0,
                 token: str | None = None, console: Console | None = None,
                 on_chunk: Callable[[np.ndarray], None] | None = None,
                 stop: asyncio.Event | None = None) -> BridgeResult:
    """Forward one LSL stream into a Vigil session until ``duration_s`` of signal, ``idle_timeout``
    s without data, or ``stop``; then end the session. ``on_chunk`` sees each ``(t, c)`` chunk sent."""
    from mne_lsl.lsl import StreamInlet, resolve_streams

    found = await asyncio.to_thread(resolve_streams, resolve_timeout, name, stype, source_id)
    if not found:
        raise LookupError(f"No LSL stream found (name={name!r}, type={stype!r}, source_id={source_id!r}) "
                          f"within {resolve_timeout:g} s")
    sinfo = found[0]
    fs = float(sinfo.sfreq)
    if fs <= 0:
        raise ValueError(f"Invalid LSL stream {sinfo.name!r}: expected a regular sampling rate, got {fs}")
    inlet = StreamInlet(sinfo, max_buffered=60)
    await asyncio.to_thread(inlet.open_stream, resolve_timeout)
    sinfo = await asyncio.to_thread(inlet.get_sinfo, resolve_timeout)  # the full description (channels)
    names = sinfo.get_channel_names() or [f"ch{i}" for i in range(sinfo.n_channels)]
    unit = units or stream_units(sinfo.get_channel_units()) or "V"
    res = BridgeResult(session_id)

    def on_message(m: Message) -> None:
        if isinstance(m, Prediction):
            res.predictions += 1
        elif isinstance(m, Alert):
            res.alerts += 1
            if console is not None:
                console.print(alert_line(sinfo.name, m.data, fs))

    if console is not None:
        console.print(f"LSL stream {sinfo.name!r} ({sinfo.stype}, {sinfo.n_channels} ch at {fs:g} Hz, {unit}) "
                      f"-> {url} as session {session_id}")
    limit = None if duration_s is None else round(duration_s * fs)
    client = Client(url, session_id=session_id, modality=modality, sample_rate=fs, channels=list(names),
                    units=unit, token=token, on_message=on_message)
    try:
        await client.connect()
        last = time.monotonic()
        while (limit is None or res.samples < limit) and not (stop is not None and stop.is_set()):
            data, _ts = inlet.pull_chunk(timeout=0.0, max_samples=4096)
            if len(_ts) == 0:
                if time.monotonic() - last > idle_timeout:
                    if console is not None:
                        console.print(f"No data from {sinfo.name!r} for {idle_timeout:g} s: ending the session")
                    break
                await asyncio.sleep(0.02)
                continue
            last = time.monotonic()
            x = np.asarray(data, dtype=np.float32)  # (t, c) in the stream's units
            if limit is not None:
                x = x[: limit - res.samples]
            if on_chunk is not None:
                on_chunk(x)
            await client.send(x)
            res.samples += len(x)
        await client.end()
        res.ended = True
    finally:
        await client.close()
        inlet.close_stream()
        del inlet
    if console is not None:
        console.print(f"Session {session_id}: {res.samples} samples ({res.samples / fs:.1f} s), "
                      f"{res.predictions} predictions, {res.alerts} alert transitions")
    return res
