"""A short training run on the shipped excerpts: loss goes down, the checkpoint loads and
streams finite outputs, and the metadata holds the split, calibration and detectors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from rich.console import Console

from models.checkpoint import load_model
from models.data import ecg as ecg_data
from models.data.excerpts import excerpt_path
from models.stream import run_offline
from models.train import TrainSettings, token_loss, train


def test_token_loss_ignores_unweighted_and_padding():
    logits = torch.zeros(1, 4, 2, requires_grad=True)
    targets = torch.tensor([[[1.0, 0.0]] * 4])
    weights = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]])
    valid = torch.tensor([[True, True, True, False]])
    loss = token_loss(logits, targets, weights, valid)
    assert loss.item() == pytest.approx(np.log(2))
    loss.backward()
    assert logits.grad[0, 2:].abs().sum() == 0 and logits.grad[0, :, 1].abs().sum() == 0


def test_token_loss_scores_a_bag_on_its_largest_logit():
    """A bag is one positive on its most positive token: marking one token is enough, and the
    gradient reaches that token only (multiple-instance learning)."""
    targets, weights = torch.zeros(1, 4, 1), torch.zeros(1, 4, 1)
    valid = torch.ones(1, 4, dtype=torch.bool)
    bags = torch.tensor([[[False], [True], [True], [True]]])
    one_marked = torch.tensor([[[5.0], [-5.0], [4.0], [-5.0]]], requires_grad=True)
    loss = token_loss(one_marked, targets, weights, valid, bags)
    assert loss.item() == pytest.approx(float(np.log1p(np.exp(-4.0))), rel=1e-5)
    loss.backward()
    assert one_marked.grad[0, :, 0].nonzero().flatten().tolist() == [2]
    none_marked = torch.full((1, 4, 1), -5.0)
    assert token_loss(none_marked, targets, weights, valid, bags).item() > 4.9
    assert token_loss(none_marked, targets, weights, valid, torch.zeros_like(bags)).item() == 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "ecg.pt"
    settings = TrainSettings("ecg", minutes=1.0, steps=12, seed=0, batch=3, window_s=15.0, lr=3e-3,
                             data="excerpts")
    path, meta = train(settings, out=out, console=Console(file=io.StringIO()))
    return path, meta


def test_training_reduces_loss_and_writes_metadata(trained):
    path, meta = trained
    assert meta["training"]["steps"] == 12
    assert meta["training"]["loss_last"] < meta["training"]["loss_first"]
    assert meta["split"]["unit"] == "record" and "201" in meta["split"]["mitdb"]["test"]
    assert set(meta["detectors"]) == {"normal", "af", "vt", "vf", "noise"}
    assert len(meta["calibration"]["temperature"]) == 5
    assert path.with_suffix(".md").exists()


def test_checkpoint_loads_and_streams_finite_outputs(trained):
    path, meta = trained
    net = load_model(path)
    assert net.temperature.tolist() == pytest.approx(meta["calibration"]["temperature"])
    rec = ecg_data.read_wfdb(excerpt_path("mitdb_201_af"))
    out = run_offline(net, rec.signal[:36_000], rec.sample_rate)
    assert out.probs.shape == (999, 5) and np.isfinite(out.probs).all()


def test_card_reports_the_retrained_5_fold_vt_score_when_its_report_is_beside(trained, tmp_path):
    import json
    import shutil

    from models.model_card import write_card
    from models.vt_cv import SERVICE

    path, _ = trained
    ckpt = shutil.copy(path, tmp_path / "vigil-ecg.pt")
    evaluation = {"summary": {"cinc2015_vt_score_beats": 85.3}, "tables": []}
    card = write_card(ckpt, evaluation=evaluation).read_text()
    assert "CinC 2015 VT alarm score >= 75 (service: beat-classifier VT runs; test half) | 85.300 | yes" in card
    assert "retrained per fold" not in card                    # no report: no row
    assert "retrained for each fold (no report beside this checkpoint)" in card
    decision = {"score": 60.7, "ci95": [45.2, 82.4], "tp": 24, "fp": 3, "tn": 27, "fn": 6}
    (tmp_path / "vigil-ecg-vt-cv.json").write_text(json.dumps({"decisions": {SERVICE: decision}}))
    card = write_card(ckpt, evaluation=evaluation).read_text()
    assert "network retrained per fold: python -m models.vt_cv) | 60.700 | no" in card
    assert "retrained for each fold: 60.7 [45.2, 82.4] (TP 24, FP 3, TN 27, FN 6)" in card   # the limits quote it
