"""``vigil evaluate`` on the shipped excerpts: runs through the streaming path and writes JSON."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from models.checkpoint import save_checkpoint
from models.config import ecg_config, eeg_config
from models.evaluate import alarm_score, cv_threshold_alarms, evaluate
from models.network import Network


@pytest.mark.parametrize("modality", ["ecg", "eeg"])
def test_evaluate_excerpts_writes_json(tmp_path, modality):
    torch.manual_seed(0)
    cfg = (ecg_config if modality == "ecg" else eeg_config)()
    path = save_checkpoint(Network(cfg), tmp_path / f"{modality}.pt", {"modality": modality})
    out = tmp_path / "report.json"
    report = evaluate(modality, model=str(path), json_out=str(out), data="excerpts",
                      console=Console(file=io.StringIO(), width=200))
    saved = json.loads(out.read_text())
    assert saved["modality"] == modality and saved["tables"] and saved["summary"]
    assert [t["title"] for t in saved["tables"]] == [t["title"] for t in report["tables"]]
    if modality == "ecg":
        assert saved["tables"][0]["rows"][0][3] == 1                       # one AF episode in 201 excerpt
        assert 0.0 <= saved["summary"]["noise_auroc_118e24_excerpt"] <= 1.0
    else:
        assert set(saved["summary"]) >= {"bonn_x1", "bonn_x0.5", "bonn_x2", "artifact_auroc_pop"}


def test_alarm_score_and_cross_validated_threshold():
    truth = np.array([True] * 5 + [False] * 5)
    assert alarm_score(truth, truth) == 100.0
    assert alarm_score(truth, ~truth) == 0.0
    assert alarm_score(truth, np.ones(10, bool)) == pytest.approx(100 * 5 / 10)
    assert alarm_score(truth, np.zeros(10, bool)) == pytest.approx(100 * 5 / 30)
    scores = np.r_[np.linspace(0.6, 1.0, 5), np.linspace(0.0, 0.4, 5)]
    assert cv_threshold_alarms(scores, truth, np.random.default_rng(0)).tolist() == truth.tolist()
