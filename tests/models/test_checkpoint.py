"""Checkpoints rebuild a model from the file alone."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import synthetic_signal

from models.checkpoint import load_model, save_checkpoint
from models.config import ModelConfig, ecg_config
from models.network import Network
from models.stream import run_offline


def test_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(3)
    network = Network(ecg_config(d_model=32, n_layers=2)).eval()
    network.temperature.fill_(1.7)
    path = save_checkpoint(network, tmp_path / "m.pt", {"data": "synthetic"})
    loaded = load_model(path)
    assert loaded.config == network.config and loaded.meta["data"] == "synthetic"
    assert loaded.meta["temperature"] == pytest.approx([1.7] * len(network.config.labels))
    x = synthetic_signal(30, 360.0, 2)
    np.testing.assert_array_equal(run_offline(loaded, x, 360.0).probs, run_offline(network, x, 360.0).probs)


def test_config_round_trips_and_rejects_unknown_fields():
    cfg = ecg_config()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "surprise": 1})


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no shipped model named 'nope'"):
        load_model("nope")


def test_model_info_command(tmp_path):
    path = save_checkpoint(Network(ecg_config()), tmp_path / "m.pt")
    out = subprocess.run([str(Path(sys.executable).parent / "vigil"), "model-info", str(path)], capture_output=True, text=True, check=True).stdout
    assert "vigil-ecg" in out and "output_rate" in out and "state bytes" in out
