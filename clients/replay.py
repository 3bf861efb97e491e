"""`vigil replay`: stream recordings into Vigil as bedside monitors would, one session per file.

Each file is read with the project's readers (:mod:`clients.recordings`), cut to ``--start`` /
``--duration``, and sent in ``--chunk``-second binary frames through the SDK, paced at ``speed`` x
real time (a chunk leaves when its last sample would have been recorded; ``speed`` 0 sends as fast
as the server takes it). All files stream concurrently; a rich progress bar per session shows the
signal time sent and the alerts raised, and each alert transition is printed as it arrives.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from clients.recordings import Source
from clients.sdk import Ack, Alert, Client, Message, Prediction, VigilError

PRIORITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}


@dataclass
class SessionResult:
    """What one streamed session produced (as the client received it)."""

    name: str
    session_id: str
    source: Source
    samples: int = 0
    predictions: int = 0
    last: Prediction | None = None
    alerts: dict[str, dict] = field(default_factory=dict)  # alert_id -> latest transition
    transitions: int = 0
    reconnects: int = 0
    error: str | None = None
    ended: bool = False


def session_id_for(prefix: str, name: str) -> str:
    """``{prefix}-{name}-{UTC stamp}``: unique per recording, as DESIGN §2 asks."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    safe = "".join(ch if ch.isalnum() or ch in "._:-" else "-" for ch in name)
    return f"{prefix}-{safe}-{stamp}"[:128]


def alert_line(name: str, a: dict, fs: float, offset_s: float = 0.0) -> str:
    """One alert transition as a rich markup line (times in seconds, plus ``offset_s``)."""
    style = PRIORITY_STYLE.get(a["priority"], "")
    end = f"-{a['end_sample'] / fs + offset_s:.1f}" if a.get("end_sample") is not None else ""
    ack = " ack" if a.get("acknowledged") else ""
    return (f"[{style}]{a['priority'].upper():6}[/] {name:22} {a['kind']:14} {a['state']:8}{ack} "
            f"at {a['onset_sample'] / fs + offset_s:6.1f}{end} s  conf {a.get('confidence') or 0:.2f}  "
            f"{a['alert_id']}")


async def stream_source(url: str, source: Source, session_id: str, *, speed: float = 1.0, chunk_s: float = 0.25,
                        token: str | None = None, leads_off: tuple[float, float] | None = None,
                        on_progress: Callable[[SessionResult], None] | None = None,
                        on_alert: Callable[[SessionResult, dict], None] | None = None,
                        connect_timeout: float = 60.0) -> SessionResult:
    """Stream one source through the SDK, end the session, return what came back.

    ``leads_off`` (start, end) in seconds flags those frames as leads-off, as a monitor would.
    """
    rec = source.recording
    fs = rec.sample_rate
    res = SessionResult(source.name, session_id, source)

    def on_message(m: Message) -> None:
        if isinstance(m, Prediction):
            res.predictions += 1
            res.last = m
        elif isinstance(m, Alert):
            res.transitions += 1
            res.alerts[m.alert_id] = m.data
            if on_alert:
                on_alert(res, m.data)
        elif isinstance(m, Ack):
            return
        else:
            res.reconnects += 1

    client = Client(url, session_id=session_id, modality=source.modality, sample_rate=fs,
                    channels=list(rec.channels), units="uV", token=token, on_message=on_message,
                    reconnect_timeout=connect_timeout)
    try:
        await client.connect()
        step = max(1, round(chunk_s * fs))
        t0 = time.perf_counter()
        for i in range(0, rec.n_samples, step):
            block = rec.signal[i:i + step]
            if speed > 0:
                await asyncio.sleep(max(0.0, t0 + (i + len(block)) / fs / speed - time.perf_counter()))
            off = leads_off is not None and leads_off[0] <= i / fs < leads_off[1]
            await client.send(block, leads_off=off)
            res.samples = i + len(block)
            if on_progress:
                on_progress(res)
        await client.end()
        res.ended = True
    except (VigilError, ConnectionError, TimeoutError, OSError) as e:
        res.error = str(e)
    finally:
        await client.close()
        if on_progress:
            on_progress(res)
    return res


def progress_bar(console: Console) -> Progress:
    """The per-session progress display: signal seconds sent, predictions, alerts."""
    return Progress(TextColumn("{task.description:<24}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[sent]}"), TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    console=console, transient=False)


async def replay(paths: list[str], url: str, *, speed: float, start_s: float, duration_s: float | None,
                 chunk_s: float, token: str | None, prefix: str, modality: str | None, console: Console) -> int:
    """Stream every path concurrently; the exit status (0: every session ended cleanly)."""
    from clients.recordings import load

    sources = [load(p, modality).window(start_s, duration_s) for p in paths]
    names = _unique_names([s.name for s in sources])
    console.print(f"Replaying {len(sources)} recording(s) to {url} at "
                  f"{'maximum' if speed <= 0 else f'{speed:g}x'} speed")
    with progress_bar(console) as progress:
        tasks = {}
        for name, s in zip(names, sources):
            tasks[name] = progress.add_task(name, total=s.recording.n_samples, sent="", status="connecting")

        def on_progress(r: SessionResult) -> None:
            fs = r.source.recording.sample_rate
            status = r.error or ("ended" if r.ended else f"{r.predictions} pred, {len(r.alerts)} alerts")
            progress.update(tasks[r.name], completed=r.samples, status=status,
                            sent=f"{r.samples / fs:7.1f}/{r.source.recording.duration_s:.1f} s")

        def on_alert(r: SessionResult, a: dict) -> None:
            progress.console.print(alert_line(r.name, a, r.source.recording.sample_rate, r.source.offset_s))

        jobs = []
        for name, s in zip(names, sources):
            s = replace(s, recording=replace(s.recording, name=name))
            jobs.append(stream_source(url, s, session_id_for(prefix, name), speed=speed, chunk_s=chunk_s,
                                      token=token, on_progress=on_progress, on_alert=on_alert))
        results = await asyncio.gather(*jobs)
    for r in results:
        verdict = f"[red]failed: {r.error}[/]" if r.error else "[green]ended[/]"
        console.print(f"{r.name}: session {r.session_id}, {r.samples} samples, {r.predictions} predictions, "
                      f"{len(r.alerts)} alerts, {r.reconnects} reconnects: {verdict}")
    return 0 if all(r.ended for r in results) else 1


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out
