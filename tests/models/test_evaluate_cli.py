"""The ``vigil evaluate`` command on the shipped excerpts, through the typer app."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from models.checkpoint import save_checkpoint
from models.config import eeg_config
from models.network import Network
from service.cli import app


def test_cli_evaluate_eeg_excerpts(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(Network(eeg_config()), tmp_path / "eeg.pt", {"modality": "eeg"})
    out = tmp_path / "eeg.json"
    result = CliRunner().invoke(app, ["evaluate", "eeg", "--model", str(path), "--json", str(out), "--data", "excerpts"])
    assert result.exit_code == 0, result.output
    assert "Bonn" in result.output and json.loads(out.read_text())["summary"]["bonn_x1"]["auroc"] is not None
