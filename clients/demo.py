"""`vigil demo`: four bedside sessions of real recordings through Vigil, then what it found.

The service starts in-process on a free port with a temporary data dir (embedded Redis and
SQLite, the default). Four shipped excerpts (``clients/excerpts``) stream concurrently through the
SDK at ``speed`` x real time, as monitors would: an AF onset (MIT-BIH 201), a VT run within AF
(MIT-BIH 203), an intracranial seizure (Bonn set S) and an ECG with an electrode-motion noise block
(NSTDB 118e24) on which a 3-s leads-off is flagged, as a monitor reports it. A live table shows each
bed's probabilities and active alerts; alert transitions print as they arrive. At the end each
session's alerts are read back from REST and set beside the excerpt's annotated episodes: what was
found (and how long after the episode began), what was missed, and what was raised falsely.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from clients.recordings import Episode, Source, load
from clients.replay import PRIORITY_STYLE, SessionResult, alert_line, session_id_for, stream_source
from models.data.excerpts import CATALOGUE, excerpt_path
from service import constants as C

MATCH_AFTER_S = 10.0  # an alert up to this long after an episode's end still counts as finding it
# Which alert kinds find an annotated episode of each kind.
FINDS = {"af": {"af"}, "vt": {"vt", "vf"}, "vf": {"vf"}, "seizure": {"seizure", "status_epilepticus"},
         "artifact": {"artifact", "signal_loss"}, "signal_loss": {"signal_loss"},
         "bradycardia": {"bradycardia", "asystole"}, "tachycardia": {"tachycardia"}}
NAMES = {"af": "AF episode", "vt": "VT run", "vf": "VF", "seizure": "seizure", "artifact": "noise (poor signal)",
         "signal_loss": "leads-off", "bradycardia": "extreme bradycardia", "tachycardia": "extreme tachycardia"}
KEY_LABELS = {"ecg": ("af", "vt", "vf", "noise"), "eeg": ("seizure", "artifact")}


@dataclass(frozen=True)
class Bed:
    """One demo session: a shipped excerpt and why it is here."""

    bed: str
    excerpt: str
    story: str
    focus_s: float                       # the moment worth seeing (an episode's onset), seconds
    leads_off: tuple[float, float] | None = None  # flagged leads-off, seconds into the streamed part


BEDS = (
    Bed("Bed 1 ECG", "mitdb_201_af", "AF onset at 43.9 s, lasting 36.8 s, among slow stretches (MIT-BIH 201)", 43.9),
    Bed("Bed 2 ECG", "mitdb_203_vt", "AF throughout; a 9-beat VT run at 53.8 s (MIT-BIH 203)", 53.8),
    Bed("Bed 3 EEG", "bonn_S001", "intracranial EEG during a seizure, 23.6 s (Bonn set S)", 0.0),
    Bed("Bed 4 ECG", "nstdb_118e24_noise", "mild electrode-motion noise (24 dB SNR) from 30 s to 150 s (NSTDB 118e24); "
        "leads-off flagged 2-5 s into the stream", 30.0, (2.0, 5.0)),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bed_source(bed: Bed, duration: float | None) -> Source:
    """The excerpt, or a ``duration``-s window that starts 40 % of it before the bed's focus."""
    src = load(excerpt_path(bed.excerpt), CATALOGUE[bed.excerpt].modality)
    if duration is not None and duration < src.recording.duration_s:
        start = min(max(0.0, bed.focus_s - 0.4 * duration), src.recording.duration_s - duration)
        src = src.window(start, duration)
    return replace(src, recording=replace(src.recording, name=bed.bed))


# ------------------------------------------------------------------ live view


def live_table(beds: list[Bed], results: dict[str, SessionResult]) -> Table:
    table = Table(title="Vigil demo: live", expand=False)
    for col in ("bed", "signal (s of the excerpt)", "probabilities (latest output)", "active alerts"):
        table.add_column(col)
    for bed in beds:
        r = results.get(bed.bed)
        if r is None:
            table.add_row(bed.bed, "connecting", "", "")
            continue
        fs = r.source.recording.sample_rate
        start = r.source.offset_s
        sent = f"{start + r.samples / fs:5.1f} ({start:.0f}-{start + r.source.recording.duration_s:.0f})" + \
            (" ended" if r.ended else "")
        probs = ""
        if r.last is not None:
            probs = "  ".join(f"[{'bold red' if r.last.probs.get(k, 0) >= 0.5 else 'dim'}]{k} "
                              f"{r.last.probs.get(k, 0):.2f}[/]" for k in KEY_LABELS[r.source.modality]
                              if k in r.last.probs)
            if r.last.numerics.get("hr") is not None:
                probs += f"  HR {r.last.numerics['hr']:.0f}"
        active = ", ".join(f"[{PRIORITY_STYLE.get(a['priority'], '')}]{a['kind']}[/]" for a in r.alerts.values()
                           if a["state"] == C.ACTIVE)
        table.add_row(bed.bed, sent, probs, active)
    return table


# ------------------------------------------------------------------ scoring


def _overlaps(a0: int, a1: int, e0: int, e1: int) -> bool:
    return a0 < e1 and e0 < a1


def score(src: Source, alerts: list[dict], leads_off: tuple[float, float] | None) -> list[tuple[str, str, str, str]]:
    """Rows (what, when, verdict, outcome) setting the alerts (latest state, from REST) beside the
    annotated episodes; outcome is found, missed, false (physiological alert without an episode),
    technical (technical alarm without an annotated cause) or quiet."""
    fs, n = src.recording.sample_rate, src.recording.n_samples
    off = src.offset_s
    episodes = list(src.episodes)
    if leads_off is not None:
        episodes.append(Episode("signal_loss", round(leads_off[0] * fs), round(leads_off[1] * fs),
                                "leads-off flagged by the monitor"))
    t = lambda smp: f"{smp / fs + off:.1f}"  # noqa: E731  seconds in the excerpt
    rows, used = [], set()
    for e in sorted(episodes, key=lambda e: e.start):
        span = (e.start, e.end + round(MATCH_AFTER_S * fs))
        hits = sorted((a for a in alerts if a["kind"] in FINDS.get(e.kind, {e.kind})
                       and _overlaps(a["onset_sample"], a["end_sample"] if a["end_sample"] is not None else n, *span)),
                      key=lambda a: a["raised_sample"])
        used |= {a["alert_id"] for a in hits}
        what = NAMES.get(e.kind, e.kind) + (f": {e.note}" if e.note else "")
        if hits:
            delay = (hits[0]["raised_sample"] - e.start) / fs
            verdict = (f"[green]found[/]: {hits[0]['kind']} raised at {t(hits[0]['raised_sample'])} s "
                       f"({f'{delay:.1f} s after it began' if delay >= 0 else 'already active'}"
                       f"{' in the stream' if e.start == 0 else ''})")
        else:
            verdict = "[red]missed[/]"
        rows.append((what, f"{t(e.start)}-{t(e.end)} s", verdict, "found" if hits else "missed"))
    for a in sorted(alerts, key=lambda a: a["onset_sample"]):
        if a["alert_id"] in used:
            continue
        end = t(a["end_sample"]) if a["end_sample"] is not None else "end"
        technical = a["category"] == C.TECHNICAL
        verdict = ("[yellow]technical alarm, no annotated cause[/]" if technical
                   else "[red]false alarm[/] (no annotated episode)")
        rows.append((f"{a['priority']} {a['kind']} alert ({a['state']})", f"{t(a['onset_sample'])}-{end} s", verdict,
                     "technical" if technical else "false"))
    if not rows:
        rows.append(("nothing annotated, nothing raised", "", "[green]quiet, as expected[/]", "quiet"))
    return rows


def summary(beds: list[Bed], results: dict[str, SessionResult], rest: dict[str, list[dict]], console: Console) -> None:
    console.rule("What Vigil found: each session's alerts read back from REST, beside the excerpt's annotated episodes")
    totals: dict[str, int] = {}
    for bed in beds:
        r = results[bed.bed]
        table = Table(title=f"{bed.bed}: {bed.story}", title_justify="left", show_lines=False)
        table.add_column("episode or alert", max_width=60)
        table.add_column("when (s in the excerpt)")
        table.add_column("verdict")
        for *row, outcome in score(r.source, rest.get(bed.bed, []), bed.leads_off):
            table.add_row(*row)
            totals[outcome] = totals.get(outcome, 0) + 1
        start = r.source.offset_s
        streamed = f"streamed {start:.1f}-{start + r.samples / r.source.recording.sample_rate:.1f} s"
        table.caption = f"session {r.session_id}: {streamed}, {r.predictions} predictions" + \
            (f", error: {r.error}" if r.error else "")
        console.print(table)
    console.print(f"[bold]In all:[/] {totals.get('found', 0)} of {totals.get('found', 0) + totals.get('missed', 0)} "
                  f"annotated episodes found, {totals.get('missed', 0)} missed, {totals.get('false', 0)} false "
                  f"alarm(s), {totals.get('technical', 0)} technical alarm(s) without an annotated cause. The shipped "
                  "models are research checkpoints (see models/checkpoints/*.md for their measured limits).",
                  highlight=False)
    console.print("Decision support only: Vigil supplements, and never replaces, a certified monitor and the "
                  "people at the bedside.")


# ------------------------------------------------------------------ run


async def _demo(duration: float | None, speed: float, console: Console, leads_off: bool, live: bool) -> int:
    import uvicorn

    from service.app import create_app

    beds = [b if leads_off else replace(b, leads_off=None) for b in BEDS]
    with tempfile.TemporaryDirectory(prefix="vigil-demo-") as tmp:
        port = free_port()
        app = create_app(host="127.0.0.1", port=port, data_dir=Path(tmp))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               ws_max_size=64 * 1024 * 1024, ws_per_message_deflate=False))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                console.print("[red]The service did not start[/]")
                return 1
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        console.print(f"[bold]Vigil[/] on {base} (embedded Redis and SQLite in {tmp}); four bedside sessions at "
                      f"{'maximum' if speed <= 0 else f'{speed:g}x'} speed. Decision support only, "
                      "not a medical device.")
        sources = {b.bed: bed_source(b, duration) for b in beds}
        for b in beds:
            console.print(f"  {b.bed}: {b.story}  [dim]{sources[b.bed].path}[/]", highlight=False)
        results: dict[str, SessionResult] = {}
        view = Live(live_table(beds, results), console=console, refresh_per_second=4, transient=False) if live else None

        def on_progress(r: SessionResult) -> None:
            results[r.name] = r
            if view is not None:
                view.update(live_table(beds, results))

        def on_alert(r: SessionResult, a: dict) -> None:
            console.print(alert_line(r.name, a, r.source.recording.sample_rate, r.source.offset_s))

        jobs = []
        for b in beds:
            jobs.append(stream_source(f"ws://127.0.0.1:{port}/v1/stream", sources[b.bed],
                                      session_id_for("demo", b.excerpt),
                                      speed=speed, leads_off=b.leads_off, on_progress=on_progress,
                                      on_alert=on_alert))
        if view is not None:
            with view:
                done = await asyncio.gather(*jobs)
            console.print()
        else:
            done = await asyncio.gather(*jobs)
        results = {r.name: r for r in done}
        rest: dict[str, list[dict]] = {}
        ok = all(r.ended and r.predictions for r in done)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for r in done:
                resp = await http.get(f"/v1/sessions/{r.session_id}/alerts")
                ok &= resp.status_code == 200
                rest[r.name] = resp.json()["alerts"] if resp.status_code == 200 else []
        server.should_exit = True
        await serving
    summary(beds, results, rest, console)
    for r in done:
        if r.error or not r.ended:
            console.print(f"[red]{r.name}: the session did not end cleanly: {r.error}[/]")
    return 0 if ok else 1


def run_demo(duration: float | None, speed: float, console: Console, leads_off: bool = True, live: bool = True) -> int:
    """Run the demo; the exit status (0: every session streamed, ended, and was read back)."""
    return asyncio.run(_demo(duration, speed, console, leads_off, live))
