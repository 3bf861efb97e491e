"""Record-level AF decision (:mod:`models.af_record`): entropy, features (RR and morphology of
:mod:`models.morphology`), fitting, the shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.af import FEATURES as RR_FEATURES
from models.af_fit import record_beats
from models.af_record import (EXTRA, MORPHOLOGY, RecordWeights, cv_threshold, f1_af, fit, load_weights,
                              record_features, sample_entropy)
from models.data.ecg import read_wfdb
from models.data.excerpts import excerpt_path
from models.morphology import FEATURES as MORPH_FEATURES
from models.morphology import morphology_features

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
    morph = np.linspace(0.1, 1.0, len(MORPHOLOGY))
    f = record_features(beats, pv, FS, n, np.full(len(beats), 0.9), np.array([0.1, 0.8, 0.0, 0.0, 0.1]), morph)
    assert f.shape == (len(RR_FEATURES) + len(EXTRA) + 5,) and np.isfinite(f).all()
    assert f[len(RR_FEATURES) + EXTRA.index("af_prob_mean")] == pytest.approx(0.9)
    np.testing.assert_allclose(f[len(RR_FEATURES) + EXTRA.index(MORPHOLOGY[0]):][: len(MORPHOLOGY)], morph)
    f = record_features(beats, pv, FS, n, np.full(len(beats), 0.9), np.zeros(5))   # morphology unknown: nan
    assert np.isnan(f[len(RR_FEATURES) + EXTRA.index(MORPHOLOGY[0]):][: len(MORPHOLOGY)]).all()
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
        return record_features(beats, pv, FS, n, np.full(len(beats), 0.5), rng.uniform(size=5),
                               rng.uniform(size=len(MORPHOLOGY)))

    y = np.array([i % 3 == 0 for i in range(60)], float)
    x = np.array([feats(bool(v)) for v in y])
    thr, oof = cv_threshold(x, y)
    assert 0.05 <= thr <= 0.975 and oof >= 0.9
    w = fit(x, y)
    yt = np.array([i % 2 == 0 for i in range(20)])
    assert f1_af(yt, w.prob(np.array([feats(bool(v)) for v in yt])) >= thr) >= 0.9
    w.meta = {"labels": list("abcde")}
    again = RecordWeights.from_json(json.loads(json.dumps(w.to_json())))
    np.testing.assert_allclose(again.prob(x[:3]), w.prob(x[:3]))
    # weights fitted before the morphology features (or on any other list) are refused
    old = w.to_json()
    old["features"] = [f for f in old["features"] if f not in MORPHOLOGY]
    for k in ("mean", "scale", "w1"):
        old[k] = [v for f, v in zip(w.to_json()["features"], old[k]) if f not in MORPHOLOGY]
    with pytest.raises(ValueError, match="refit"):
        RecordWeights.from_json(old)
    # nan features (too few beats) are read as the training mean: the probability stays finite
    assert np.isfinite(w.prob(np.full(x.shape[1], np.nan))).all()


def test_shipped_record_weights():
    w = load_weights()
    assert w is not None, "models/checkpoints/vigil-af-record.json is shipped"
    assert w.meta["labels"] == ["normal", "af", "vt", "vf", "noise"] and 0.05 <= w.threshold <= 0.975
    assert w.mean.shape == (len(RR_FEATURES) + len(EXTRA) + len(w.meta["labels"]),)
    assert all(f in w.to_json()["features"] for f in MORPHOLOGY)


def synthetic_ecg(rr_s, p_waves: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A one-lead ECG (mV) at FS: Gaussian Q, R, S and T waves on the given RR intervals, with a
    P wave 0.16 s before each R (sinus) or none and 6-Hz f waves of drifting phase (AF)."""
    rng = np.random.default_rng(seed)
    r = (0.5 + np.concatenate([[0.0], np.cumsum(rr_s)])) * FS
    t = np.arange(int(r[-1] + 0.8 * FS))
    x = 0.01 * rng.standard_normal(len(t))
    waves = [(-0.02, 0.008, -0.1), (0.0, 0.01, 1.0), (0.025, 0.008, -0.2), (0.25, 0.04, 0.3)]
    waves += [(-0.16, 0.02, 0.15)] if p_waves else []
    for b in r:
        for at, sd, amp in waves:
            x += amp * np.exp(-0.5 * ((t - b - at * FS) / (sd * FS)) ** 2)
    if not p_waves:
        phase = np.cumsum(2 * np.pi * (6.0 + 0.5 * rng.standard_normal(len(t))) / FS)
        x += 0.06 * np.sin(phase)
    return x, np.round(r).astype(int) + 1               # the detector's beats sit a sample or so off R


def test_morphology_features_see_p_waves_and_f_waves_not_gain_or_polarity():
    rr = np.random.default_rng(3).uniform(0.7, 1.1, 30)            # the same irregular RR for both
    sinus, beats = synthetic_ecg(rr, p_waves=True)
    af, _ = synthetic_ecg(rr, p_waves=False)
    fs_, fa = (dict(zip(MORPH_FEATURES, morphology_features(x, FS, beats))) for x in (sinus, af))
    assert np.isfinite(list(fs_.values())).all() and np.isfinite(list(fa.values())).all()
    assert fs_["p_corr"] > 0.9 and fa["p_corr"] < 0.6
    assert fs_["p_present"] > 0.9 > 0.5 > fa["p_present"]
    assert fs_["p_coherence"] > fa["p_coherence"] + 0.5 and fs_["p_snr"] > fa["p_snr"] + 1.0
    assert fs_["p_amp"] > 2 * fa["p_amp"]
    assert fa["f_band_share"] > fs_["f_band_share"] and fa["tq_residual"] > fs_["tq_residual"]
    # an inverted lead at another gain gives the same features
    np.testing.assert_allclose(morphology_features(-40.0 * sinus, FS, beats), list(fs_.values()), rtol=1e-6)


def test_morphology_features_without_enough_beats_are_nan_not_errors():
    x, beats = synthetic_ecg([0.8] * 10, p_waves=True)
    for b in (beats[:3], np.array([], int), np.array([-5, 10 ** 7])):
        assert np.isnan(morphology_features(x, FS, b)).all()
    assert np.isnan(morphology_features(np.zeros(3000), FS, np.arange(100, 3000, 240))).all()   # flat
    assert np.isnan(morphology_features(x[:5], FS, beats)).all()                                # too short
    fast, beats = synthetic_ecg([0.3] * 30, p_waves=True)          # 200 bpm: P windows cut by the T waves
    f = morphology_features(fast, FS, beats)
    assert f.shape == (len(MORPH_FEATURES),) and np.isfinite(f[MORPH_FEATURES.index("qrst_corr")])


def test_morphology_of_the_201_excerpt_sinus_against_af():
    """The shipped MIT-BIH 201 excerpt (360 Hz, MLII): sinus rhythm until sample 15815, AF to 29068."""
    rec = read_wfdb(excerpt_path("mitdb_201_af"))
    feats = {}
    for name, (lo, hi) in {"sinus": (0, 15815), "af": (15815, 29068)}.items():
        x = rec.signal[lo:hi]
        beats, pv = record_beats(x, rec.sample_rate)
        feats[name] = dict(zip(MORPH_FEATURES, morphology_features(x, rec.sample_rate, beats, pv)))
    s, a = feats["sinus"], feats["af"]
    assert s["p_corr"] > 0.8 > 0.5 > a["p_corr"]
    assert s["p_present"] > 0.8 > 0.5 > a["p_present"]
    assert s["p_coherence"] > a["p_coherence"] + 0.5 and s["p_amp"] > 3 * a["p_amp"]
    assert a["tq_residual"] > s["tq_residual"]
