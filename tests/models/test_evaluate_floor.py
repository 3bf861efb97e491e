"""The shipped checkpoints still meet a floor on one held-out record per task (``-m datasets``;
skipped cleanly without the datasets). Floors sit below the numbers in the model cards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.checkpoint import CHECKPOINT_DIR, load_model
from models.data import ecg as ecg_data
from models.data import eeg as eeg_data
from models.data.paths import datasets_dir
from models.evaluate import _nstdb_row, _seizure_score

pytestmark = pytest.mark.datasets


def dataset(sub: str):
    path = datasets_dir() / sub
    if not path.is_dir():
        pytest.skip(f"dataset {sub} not found under {datasets_dir()} (set VIGIL_DATASETS)")
    return path


def shipped(name: str):
    if not (CHECKPOINT_DIR / f"{name}.pt").exists():
        pytest.skip(f"no shipped checkpoint {name}")
    torch.set_num_threads(1)
    return load_model(name)


def test_ecg_noise_floor_on_nstdb_118e00():
    """Electrode-motion noise (held-out type) at 0 dB: noise AUROC and no false AF/VT episodes."""
    root = dataset("nstdb")
    net = shipped("vigil-ecg")
    row, _, _, _ = _nstdb_row(net, root / "118e00", "118e00")
    assert row[1] >= 0.9
    assert row[5] + row[6] <= 1                                          # false AF + VT episodes in 30 min


def test_eeg_seizure_floor_on_bonn_segment_061():
    """Held-out Bonn segments 061: S above the stored threshold, Z/O/N/F below, at x0.5, x1, x2."""
    root = dataset("bonn")
    net = shipped("vigil-eeg")
    thr = net.meta["rules"]["seizure_segment_threshold"]
    segs = {s: p for p, s in eeg_data.bonn_segments(root) if p.stem[1:] == "061"}
    assert set(segs) == set("ZONFS")
    for gain in (0.5, 1.0, 2.0):
        scores = {s: _seizure_score(net, eeg_data.read_bonn(p).signal * gain, eeg_data.BONN_SAMPLE_RATE)[0]
                  for s, p in segs.items()}
        assert scores["S"] >= thr
        assert all(scores[s] < thr for s in "ZONF"), scores
