"""The `vigil` command line: one entry point, a subcommand per capability."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Vigil: streaming ECG and EEG inference with clinical alerts.", no_args_is_help=True)
console = Console()
WS_MAX_SIZE = 64 * 1024 * 1024  # larger than the protocol's 8 MiB, so oversized frames get frame_too_large


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
          log_level: str = typer.Option("info", help="uvicorn log level")) -> None:
    """Run the service (embedded Redis and SQLite unless VIGIL_REDIS_URL / VIGIL_DATABASE_URL)."""
    import importlib.util
    import logging

    import uvicorn

    from service.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    uvicorn.run(create_app(host=host, port=port, data_dir=data_dir), host=host, port=port, loop=loop,
                ws_max_size=WS_MAX_SIZE, log_level=log_level, lifespan="on")


@app.command()
def demo(duration: float = typer.Option(60.0, help="seconds of signal per excerpt (at most its length)"),
         speed: float = typer.Option(10.0, help="playback speed: 1 = real time, 0 = as fast as possible"),
         leads_off: bool = typer.Option(True, help="flag 3 s of the ECG as leads-off (a technical alarm)")) -> None:
    """Start Vigil embedded and stream shipped ECG and EEG excerpts through it, printing alerts."""
    from clients.demo import run_demo

    raise typer.Exit(run_demo(duration=duration, speed=speed, console=console, leads_off=leads_off))


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
              threads: int = typer.Option(1, help="torch threads")) -> None:
    """Train an ECG or EEG model on the split of models/splits.py, calibrate it, write checkpoint and card."""
    import torch

    from models.train import TrainSettings, train

    torch.set_num_threads(threads)
    train(TrainSettings(modality, minutes=minutes, steps=steps, seed=seed, data=data, batch=batch,
                        window_s=window_s), out=out, console=console)


@app.command("evaluate")
def evaluate_cmd(modality: str = typer.Argument(..., help="ecg or eeg"),
                 model: str = typer.Option(None, help="checkpoint file or shipped name (default vigil-<modality>)"),
                 json_out: str = typer.Option(None, "--json", help="write the report as JSON here"),
                 data: str = typer.Option("datasets", help="datasets (held-out records) or excerpts (shipped)"),
                 card: bool = typer.Option(False, help="also rewrite the model card with these metrics"),
                 threads: int = typer.Option(1, help="torch threads")) -> None:
    """Score a model through the streaming path on held-out records; print a table, write JSON."""
    import torch

    from models.evaluate import evaluate

    torch.set_num_threads(threads)
    evaluate(modality, model=model, json_out=json_out, data=data, card=card, console=console)


if __name__ == "__main__":
    app()
