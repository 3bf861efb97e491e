"""A session's quality head (models/sqi.py): on by default with the fused alert rule, off with the
``quality_heads`` setting (the network's fitted rule), and carried through a snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from models.state import StatePool, bytes_to_arrays
from service.config import Settings
from service.protocol import Hello
from service.registry import load_all
from service.sessions import Session


@pytest.fixture(scope="module")
def eeg_model():
    s = Settings()
    return load_all(s.ecg_model, s.eeg_model)["eeg"]


def build(model, quality_heads=True, snapshot=None):
    hello = Hello("q-1", "eeg", 256.0, ("C3", "C4"), "uV")
    pool = StatePool(model.network, 2, 2)
    return Session.build(hello, model, pool, pool.alloc(), 10.0, snapshot, quality_heads=quality_heads)


def test_heads_on_by_default_and_off_by_setting(eeg_model):
    if eeg_model.fitted_detectors is None:
        pytest.skip("untrained EEG model")
    on, off = build(eeg_model), build(eeg_model, quality_heads=False)
    assert on.sqi is not None and off.sqi is None and off.sqi_state is None
    assert on.alarms.detectors["artifact"].threshold == 0.5                  # models.sqi.FUSED_ALERT_RULES
    assert off.alarms.detectors["artifact"] == eeg_model.fitted_detectors["artifact"]
    assert Settings().quality_heads is True


def test_head_state_travels_in_the_snapshot(eeg_model):
    s = build(eeg_model)
    y = np.random.default_rng(0).normal(0, 30, (700, 2)).astype(np.float32)
    _, s.sqi_state = s.sqi.process(y, np.zeros(y.shape, bool), s.sqi_state)
    arrays = bytes_to_arrays(s.snapshot())
    again = build(eeg_model, snapshot=arrays)
    assert set(again.sqi_state) == set(s.sqi_state)
    for k, v in s.sqi_state.items():
        np.testing.assert_array_equal(again.sqi_state[k], v)
    old = {k: v for k, v in arrays.items() if not k.startswith("sqi.")}   # a snapshot from before the heads
    assert build(eeg_model, snapshot=old).sqi is None
