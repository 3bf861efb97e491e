"""Checkpoints: the config, the weights and the metadata in one file, rebuilt from it alone.

A checkpoint is a ``torch.save`` of plain data (dicts, lists, strings, numbers, tensors), read
back with ``weights_only=True`` so that loading never runs code from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.config import ModelConfig
from models.network import Network

FORMAT = "vigil-checkpoint/1"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def save_checkpoint(network: Network, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``network`` with its config and metadata.

    ``meta`` holds what a model card reports: data summary and split, metrics, calibration
    (the temperatures themselves live in the weights, as the ``temperature`` buffer).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    meta["temperature"] = network.temperature.tolist()
    torch.save({"format": FORMAT, "config": network.config.to_dict(),
                "state_dict": network.state_dict(), "meta": meta}, path)
    return path


def resolve(path_or_name: str | Path) -> Path:
    """A path as given, or a shipped checkpoint name (``vigil-ecg`` -> checkpoints/vigil-ecg.pt)."""
    p = Path(path_or_name)
    if p.suffix == ".pt" and p.exists():
        return p
    shipped = CHECKPOINT_DIR / f"{path_or_name}.pt"
    if shipped.exists():
        return shipped
    available = sorted(f.stem for f in CHECKPOINT_DIR.glob("*.pt"))
    raise FileNotFoundError(f"Invalid model: no checkpoint file {p} and no shipped model named "
                            f"{path_or_name!r} (shipped: {available})")


def load_model(path_or_name: str | Path) -> Network:
    """Rebuild a network from a checkpoint file or a shipped model name, in eval mode.

    The returned network carries the checkpoint's metadata as ``network.meta``.
    """
    ckpt = torch.load(resolve(path_or_name), map_location="cpu", weights_only=True)
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"Invalid checkpoint: expected format {FORMAT}, got {ckpt.get('format')!r}")
    network = Network(ModelConfig.from_dict(ckpt["config"]))
    network.load_state_dict(ckpt["state_dict"])
    network.meta = ckpt.get("meta", {})
    return network.eval()
