"""Record-level AF decision (:mod:`models.af_record`): entropy, features, fitting, the shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.af import FEATURES as RR_FEATURES
from models.af_record import (EXTRA, RecordWeights, cv_threshold, f1_af, fit, load_weights, record_features,
                              sample_entropy)

FS = 300.0


def record(rr_s, pv=None):
    beats = (100 + np.concatenate([[0.0], np.cumsum(rr_s)]) * FS).round().astype(int)
    pv = np.zeros(len(beats)) if pv is None else pv
    return beats, pv, int(beats[-1] + FS)


def test_sample_entropy_is_low_for_a_regular_and_high_for_an_irregular_rhythm():
    rng = np.random.default_rng(0)
    regular, _ = sample_entropy(0.8 + 0.005 * rng.standard_normal(40))
    irregular, cosen = sample_entropy(rng.uniform(0.4, 1.1, 40))
    assert irregular > regular + 1.0 and np.isfinite(cosen)
    assert sample_entropy(np.array([0.5, 1.0, 1.5, 2.0, 0.7])) == (2.5, 0.0)   # no matching templates


def test_record_features_shape_and_short_records():
    rng = np.random.default_rng(1)
    beats, pv, n = record(rng.uniform(0.4, 1.1, 40))
    f = record_features(beats, pv, FS, n, np.full(len(beats), 0.9), np.array([0.1, 0.8, 0.0, 0.0, 0.1]))
    assert f.shape == (len(RR_FEATURES) + len(EXTRA) + 5,) and np.isfinite(f).all()
    assert f[len(RR_FEATURES) + EXTRA.index("af_prob_mean")] == pytest.approx(0.9)
    beats, pv, n = record([0.8, 0.8, 0.8])                 # too few clean intervals: RR part undefined
    f = record_features(beats, pv, FS, n, np.full(len(beats), np.nan), np.zeros(5))
    assert np.isnan(f[: len(RR_FEATURES)]).all() and np.isnan(f[len(RR_FEATURES) + EXTRA.index("af_prob_mean")])


def test_a_few_steps_of_fitting_separate_irregular_records():
    """A training run on synthetic records: irregular (AF-like) against regular ones; the fitted
    model and its cross-validated threshold separate held-out records."""
    rng = np.random.default_rng(2)

    def feats(irregular):
        rr = rng.uniform(0.4, 1.1, 35) if irregular else 0.8 + 0.02 * rng.standard_normal(35)
        beats, pv, n = record(rr)
        return record_features(beats, pv, FS, n, np.full(len(beats), 0.5), rng.uniform(size=5))

    y = np.array([i % 3 == 0 for i in range(60)], float)
    x = np.array([feats(bool(v)) for v in y])
    thr, oof = cv_threshold(x, y)
    assert 0.05 <= thr <= 0.975 and oof >= 0.9
    w = fit(x, y)
    yt = np.array([i % 2 == 0 for i in range(20)])
    assert f1_af(yt, w.prob(np.array([feats(bool(v)) for v in yt])) >= thr) >= 0.9
    again = RecordWeights.from_json(json.loads(json.dumps({**w.to_json(), "meta": {"labels": list("abcde")}})))
    np.testing.assert_allclose(again.prob(x[:3]), w.prob(x[:3]))


def test_shipped_record_weights():
    w = load_weights()
    assert w is not None, "models/checkpoints/vigil-af-record.json is shipped"
    assert w.meta["labels"] == ["normal", "af", "vt", "vf", "noise"] and 0.05 <= w.threshold <= 0.975
    assert w.mean.shape == (len(RR_FEATURES) + len(EXTRA) + len(w.meta["labels"]),)
