"""The `vigil` command line: one entry point, a subcommand per capability."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Vigil: streaming ECG and EEG inference with clinical alerts.", no_args_is_help=True)
console = Console()


@app.callback()
def main() -> None:
    """Vigil: streaming ECG and EEG inference with clinical alerts."""


@app.command("model-info")
def model_info(model: str = typer.Argument(..., help="checkpoint file or shipped model name"),
               channels: int = typer.Option(2, help="channel count used to size the state")) -> None:
    """Show a checkpoint's config, labels, output rate and per-session state size."""
    from models.checkpoint import load_model
    from models.state import state_nbytes

    network = load_model(model)
    cfg = network.config
    table = Table(title=f"{cfg.name} {cfg.version}")
    table.add_column("field")
    table.add_column("value")
    for k, v in cfg.to_dict().items():
        table.add_row(k, str(v))
    table.add_row("output_rate (Hz)", f"{cfg.output_rate:g}")
    table.add_row("parameters", f"{sum(p.numel() for p in network.parameters()):,}")
    table.add_row(f"state bytes ({channels} ch)", f"{state_nbytes(network.init_state(1, channels)):,}")
    console.print(table)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="address to bind"),
          port: int = typer.Option(8000, help="TCP port"),
          data_dir: Path = typer.Option(Path("vigil-data"), help="embedded Redis and SQLite live here"),
          log_level: str = typer.Option("info", help="uvicorn log level"),
          workers: int = typer.Option(None, min=1, help="replica processes sharing the port (SO_REUSEPORT), "
                                                        "one embedded Redis and the history [default: "
                                                        "$VIGIL_WORKERS, else one per CPU, at most 4]")) -> None:
    """Run the service (embedded Redis and SQLite unless VIGIL_REDIS_URL / VIGIL_DATABASE_URL)."""
    import logging

    import uvicorn

    from service.config import Settings
    from service.workers import auto_workers, serve_workers, uvicorn_config

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workers = workers or Settings(host=host, port=port, data_dir=data_dir).workers or auto_workers()
    if workers > 1:
        try:
            raise typer.Exit(serve_workers(workers, host, port, data_dir, log_level))
        except OSError as e:
            console.print(f"[red]{e.strerror or e}[/]")
            raise typer.Exit(1) from None
    from service.app import create_app

    uvicorn.Server(uvicorn_config(create_app(host=host, port=port, data_dir=data_dir), host, port, log_level)).run()


@app.command()
def demo(duration: float = typer.Option(None, help="seconds of signal per excerpt, a window around its annotated "
                                                   "episode (default: the whole excerpt, 24-180 s)"),
         speed: float = typer.Option(10.0, help="playback speed: 1 = real time, 0 = as fast as possible"),
         leads_off: bool = typer.Option(True, help="flag 3 s of the noisy ECG as leads-off (a technical alarm)"),
         live: bool = typer.Option(True, help="show the live probability table (off: alert lines only)")) -> None:
    """Start Vigil embedded, stream shipped real excerpts as bedside sessions, score the alerts."""
    from clients.demo import run_demo

    raise typer.Exit(run_demo(duration=duration, speed=speed, console=console, leads_off=leads_off, live=live))


def _token(token: str | None) -> str | None:
    import os

    return token or os.environ.get("VIGIL_TOKEN") or None


@app.command()
def replay(paths: list[Path] = typer.Argument(..., help="recordings: WFDB .hea, EDF/BDF, Bonn .txt, CHB-MIT .npy "
                                                     "(each becomes one session, all stream concurrently)"),
           url: str = typer.Option("ws://127.0.0.1:8000/v1/stream", help="Vigil's stream endpoint"),
           speed: float = typer.Option(1.0, help="1 = real time, N = N x real time, 0 = as fast as the server takes it"),
           start: float = typer.Option(0.0, help="start this many seconds into each recording"),
           duration: float = typer.Option(None, help="stream at most this many seconds of each recording"),
           chunk: float = typer.Option(0.25, help="seconds of signal per binary frame"),
           modality: str = typer.Option(None, help="ecg or eeg (default: ecg for WFDB, eeg for the others)"),
           prefix: str = typer.Option("replay", help="session ids are PREFIX-NAME-UTCSTAMP"),
           token: str = typer.Option(None, help="bearer token (default $VIGIL_TOKEN)")) -> None:
    """Stream recordings into Vigil as monitors would, with a progress bar per session and live alert lines.

    Exits 0 when every session ended cleanly (the server processed, stored and closed it).
    """
    import asyncio

    from clients.replay import replay as run

    raise typer.Exit(asyncio.run(run([str(p) for p in paths], url, speed=speed, start_s=start, duration_s=duration,
                                     chunk_s=chunk, token=_token(token), prefix=prefix, modality=modality,
                                     console=console)))


@app.command()
def watch(redis_url: str = typer.Option(None, help="Redis holding vigil:alerts (default $VIGIL_REDIS_URL, "
                                                    "else redis://127.0.0.1:6379/0)"),
          group: str = typer.Option("vigil-watch", help="consumer group (one per filter set: rejected alerts are "
                                                        "acknowledged too)"),
          consumer: str = typer.Option(None, help="consumer name (default watch-HOSTNAME, stable across restarts)"),
          session: list[str] = typer.Option(None, help="only these session ids (glob patterns; repeatable)"),
          kind: list[str] = typer.Option(None, help="only these alert kinds, e.g. vt, af, seizure (repeatable)"),
          priority: str = typer.Option(None, help="only alerts of this priority or higher: low, medium or high"),
          json_lines: bool = typer.Option(False, "--json", help="print each alert as a JSON line instead of a table"),
          from_start: bool = typer.Option(False, help="a new group starts at the stream's first entry "
                                                      "(default: at its end)"),
          claim_idle: float = typer.Option(60.0, help="claim entries other consumers left unacknowledged for "
                                                      "this many seconds (XAUTOCLAIM)"),
          count: int = typer.Option(None, help="exit after showing this many alerts"),
          idle_timeout: float = typer.Option(None, help="exit after this many seconds without a new entry")) -> None:
    """Print alerts from Redis as they are published: consumer group, XACK after printing, at least once.

    Alerts published while the watcher was down are delivered when it starts again (same group).
    """
    import asyncio
    import os

    from clients.watch import AlertFilter, Watcher, default_consumer, json_printer, table_printer
    from service import constants as C

    if priority is not None and priority not in (C.LOW, C.MEDIUM, C.HIGH):
        raise typer.BadParameter(f"expected low, medium or high, got {priority!r}", param_hint="--priority")
    unknown = sorted(set(kind or ()) - set(C.ALERT_KINDS))
    if unknown:
        raise typer.BadParameter(f"expected kinds among {', '.join(C.ALERT_KINDS)}, got {', '.join(unknown)}",
                                 param_hint="--kind")
    w = Watcher(redis_url or os.environ.get("VIGIL_REDIS_URL") or "redis://127.0.0.1:6379/0", group=group,
                consumer=consumer or default_consumer(),
                accept=AlertFilter(tuple(session or ()), tuple(kind or ()), priority),
                claim_idle_ms=int(claim_idle * 1000), start_id="0" if from_start else "$")
    show = json_printer if json_lines else table_printer(console)
    try:
        asyncio.run(w.run(show, count=count, idle_timeout=idle_timeout))
    except KeyboardInterrupt:
        pass


@app.command()
def lsl(url: str = typer.Option("ws://127.0.0.1:8000/v1/stream", help="Vigil's stream endpoint"),
        name: str = typer.Option(None, help="LSL stream name to resolve"),
        stype: str = typer.Option(None, "--type", help="LSL stream type to resolve, e.g. EEG"),
        source_id: str = typer.Option(None, help="LSL source id to resolve"),
        session_id: str = typer.Option(None, help="Vigil session id (default lsl-NAME-UTCSTAMP)"),
        modality: str = typer.Option("eeg", help="eeg or ecg"),
        units: str = typer.Option(None, help="uV, mV or V (default: the stream's channel units, else V)"),
        duration: float = typer.Option(None, help="stop after this many seconds of signal (default: until the "
                                                  "stream stops or Ctrl-C)"),
        idle_timeout: float = typer.Option(10.0, help="end the session after this many seconds without data"),
        token: str = typer.Option(None, help="bearer token (default $VIGIL_TOKEN)")) -> None:
    """Bridge a Lab Streaming Layer stream (an amplifier, mne-lsl's player) into a Vigil session via mne-lsl."""
    import asyncio

    from clients.lsl import bridge
    from clients.replay import session_id_for

    sid = session_id or session_id_for("lsl", name or stype or source_id or "stream")
    try:
        res = asyncio.run(bridge(url, sid, name=name, stype=stype, source_id=source_id, modality=modality,
                                 units=units, duration_s=duration, idle_timeout=idle_timeout, token=_token(token),
                                 console=console))
    except LookupError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from None
    raise typer.Exit(0 if res.ended else 1)


# ---------------------------------------------------------------------------------------------
# Model training and evaluation (issue 3). Modules are imported inside the commands so that the
# service's other commands do not pay for torch/scipy/wfdb at start-up.
# ---------------------------------------------------------------------------------------------

@app.command("train")
def train_cmd(modality: str = typer.Argument(..., help="ecg or eeg"),
              out: str = typer.Option(None, help="checkpoint file (default models/checkpoints/vigil-<modality>.pt)"),
              minutes: float = typer.Option(28.0, help="wall-clock budget of the whole run (load, train, validate)"),
              steps: int = typer.Option(100_000, help="maximum optimiser steps"),
              seed: int = typer.Option(0, help="random seed (numpy and torch)"),
              data: str = typer.Option("datasets", help="datasets (VIGIL_DATASETS) or excerpts (shipped)"),
              batch: int = typer.Option(8, help="windows per step"),
              window_s: float = typer.Option(30.0, help="window length in seconds"),
              threads: int = typer.Option(1, help="torch threads"),
              device: str = typer.Option("cpu", help="torch device of the optimisation loop (cpu or cuda)"),
              cinc2015_bags: bool = typer.Option(False, help="ecg: train vt on each true CinC 2015 alarm's 10 s as a "
                                                            "bag (multiple-instance; an experiment, docs/beats.md)")
              ) -> None:
    """Train an ECG or EEG model on the split of models/splits.py, calibrate it, write checkpoint and card."""
    import torch

    from models.train import TrainSettings, train

    torch.set_num_threads(threads)
    train(TrainSettings(modality, minutes=minutes, steps=steps, seed=seed, data=data, batch=batch,
                        window_s=window_s, device=device, cinc2015_bags=cinc2015_bags), out=out, console=console)


@app.command("evaluate")
def evaluate_cmd(modality: str = typer.Argument(..., help="ecg, eeg, or alarms (the alarm engine on NSTDB and "
                                                             "CinC 2015, suppression off vs on)"),
                 model: str = typer.Option(None, help="checkpoint file or shipped name (default vigil-<modality>)"),
                 json_out: str = typer.Option(None, "--json", help="write the report as JSON here"),
                 data: str = typer.Option("datasets", help="datasets (held-out records) or excerpts (shipped)"),
                 card: bool = typer.Option(False, help="also rewrite the model card with these metrics"),
                 lose_lead: str = typer.Option(None, help="alarms only: nan or flat, every record's first lead "
                                                          "lost from 200 s (docs/qrs.md)"),
                 threads: int = typer.Option(1, help="torch threads")) -> None:
    """Score a model through the streaming path on held-out records; print a table, write JSON."""
    import torch

    from models.evaluate import evaluate

    torch.set_num_threads(threads)
    evaluate(modality, model=model, json_out=json_out, data=data, card=card, console=console, lose_lead=lose_lead)


if __name__ == "__main__":
    app()
