"""ECG quality head (:mod:`models.ecg_sqi`) and its fusion into the stream (:mod:`models.sqi`):
chunk invariance through saved states, noise
raising the probability on a real excerpt, the shipped weights, the logistic fit, and a floor on
the held-out electrode-motion noise of NSTDB 118e12."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import random_bounds

from models.checkpoint import CHECKPOINT_DIR, load_model
from models.config import ecg_config
from models.data import ecg
from models.data.excerpts import excerpt_path
from models.data.paths import datasets_dir
from models.ecg_sqi import FEATURES, EcgQuality, EcgQualityWeights, load_weights
from models.ecg_sqi_fit import fit_logistic, nstdb_scores
from models.preprocess import Preprocessor
from models.record_rules import auroc
from models.sqi import fuse, quality_head_for
from models.state import arrays_to_bytes, bytes_to_arrays
from models.stream import run_offline

CFG = ecg_config()


def preprocessed(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    pre = Preprocessor(CFG, fs, x.shape[1], "uV")
    y, mask, _ = pre.process(x, pre.init_state())
    return y, mask


def excerpt(name: str) -> tuple[np.ndarray, float]:
    rec = ecg.read_wfdb(excerpt_path(name))
    return rec.signal[:, :2], rec.sample_rate


def test_shipped_weights_load_and_round_trip():
    w = load_weights()
    assert w is not None, "models/checkpoints/vigil-ecg-sqi.json is shipped"
    assert w.coef.shape == (len(FEATURES),) and (w.coef > 0).all()     # a larger residual is worse signal
    assert w.meta["metrics"]["val_auroc"] >= 0.8
    again = EcgQualityWeights.from_json(json.loads(json.dumps(w.to_json())))
    assert again.prob(np.zeros((1, len(FEATURES))))[0] == pytest.approx(w.prob(np.zeros((1, len(FEATURES))))[0])
    with pytest.raises(ValueError, match="Invalid ECG quality weights"):
        EcgQualityWeights.from_json({**w.to_json(), "features": ["x", "y"]})


def test_any_chunking_and_saved_states_give_the_same_probabilities():
    x, fs = excerpt("mitdb_203_vt")
    y, mask = preprocessed(x[: int(60 * fs)], fs)
    mask[3000:3400, 0] = True                                              # a lost stretch on lead 0
    head = EcgQuality(CFG, 2, load_weights())
    whole, _ = head.process(y, mask, head.initial_state())
    assert len(whole) == len(y) // CFG.patch_len
    rng = np.random.default_rng(3)
    for trial in range(2):
        st, parts = head.initial_state(), []
        edges = [0, *random_bounds(len(y), CFG.sample_rate, rng, max_s=3.0), len(y)]
        for a, b in zip(edges[:-1], edges[1:]):
            q, st = head.process(y[a:b], mask[a:b], st)
            parts.append(q)
            st = bytes_to_arrays(arrays_to_bytes(st))                      # as a snapshot stores it
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-12, atol=0)


def test_noise_raises_the_probability_and_clean_signal_keeps_it_low():
    x, fs = excerpt("mitdb_201_af")
    x = x[: int(120 * fs)].copy()
    half = len(x) // 2
    rng = np.random.default_rng(0)
    noise = np.cumsum(rng.standard_normal((len(x) - half, 2)), axis=0)    # a random walk, high-passed below
    noise = noise - np.convolve(noise[:, 0], np.ones(90) / 90, "same")[:, None]
    noise *= x.std(0) / noise.std(0)                                       # 0 dB
    x[half:] += noise
    y, mask = preprocessed(x, fs)
    head = EcgQuality(CFG, 2, load_weights())
    q, _ = head.process(y, mask, head.initial_state())
    t = (np.arange(len(q)) + 1) * CFG.patch_len / CFG.sample_rate            # token end, s
    clean, noisy = q[(t > 20) & (t < 55)], q[t > 75]
    assert np.median(clean) < 0.3 and np.mean(clean >= 0.5) < 0.25        # (AF with aberrant beats here)
    assert np.median(noisy) >= 0.5 and np.mean(noisy >= 0.5) > 0.75
    assert q[t < 2].max() == 0.0                                           # no beats yet: 0


def test_fusion_takes_the_larger_probability_in_the_quality_column_only():
    x, fs = excerpt("nstdb_118e24_noise")
    net = load_model("vigil-ecg") if (CHECKPOINT_DIR / "vigil-ecg.pt").exists() else pytest.skip("no checkpoint")
    fused = run_offline(net, x, fs).probs
    alone = run_offline(net, x, fs, quality=False).probs
    j = net.config.labels.index("noise")
    head = quality_head_for(net.config, 2)
    y, mask = preprocessed(x, fs)
    q, _ = head.process(y, mask, head.initial_state())
    np.testing.assert_allclose(fused[:, j], np.maximum(alone[:, j], q.astype(np.float32)), atol=1e-7)
    np.testing.assert_array_equal(np.delete(fused, j, 1), np.delete(alone, j, 1))
    with pytest.raises(ValueError, match="Invalid quality"):
        fuse(alone, q[:-1], net.config)


def test_logistic_fit_finds_the_direction_of_separable_features():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((400, 2))
    y = f @ np.array([2.0, 1.0]) + 0.3 * rng.standard_normal(400) > 0.5
    coef, intercept = fit_logistic(f, y)
    p = EcgQualityWeights(coef, intercept).prob(f)
    assert (coef > 0).all() and auroc(p, y) > 0.95


def test_floor_on_held_out_electrode_motion_noise():
    """NSTDB 118e12 (electrode motion at 12 dB, a noise type the head was not fitted on)."""
    root = datasets_dir()
    if not (root / "nstdb" / "118e12.hea").exists():
        pytest.skip("NSTDB not in VIGIL_DATASETS")
    scores = nstdb_scores(load_weights(), root)
    p, inside = scores["118e12"]
    assert auroc(p, inside) >= 0.9


def test_alert_rule_on_the_fused_column():
    """EEG: the artifact alert uses the fused rule when the head is shipped; ECG keeps the network's."""
    from models.config import eeg_config
    from models.detector import EpisodeDetector
    from models.sqi import FUSED_ALERT_RULES, alert_detectors

    fitted = {"artifact": EpisodeDetector("artifact", 0.225, 0.25), "seizure": EpisodeDetector("seizure", 0.35, 3.0)}
    got = alert_detectors(eeg_config(), fitted)
    assert got["artifact"] == FUSED_ALERT_RULES["eeg"] and got["seizure"] == fitted["seizure"]
    ecg_fitted = {"noise": EpisodeDetector("noise", 0.8, 2.0)}
    assert alert_detectors(CFG, ecg_fitted) == ecg_fitted
    assert alert_detectors(CFG, None) is None


def test_the_beats_come_from_lead_1_while_lead_0_is_lost():
    """Lead 0 lost (masked) from 20 s of the 203 excerpt: the head's QRS detector follows lead 1
    (models/rate_lead.py), so the windows after the loss still have beats and defined features;
    on lead 0 alone they had none."""
    x, fs = excerpt("mitdb_203_vt")
    y, mask = preprocessed(x[: int(50 * fs)], fs)
    cut = int(20 * CFG.sample_rate)
    mask[cut:, 0] = True
    head = EcgQuality(CFG, 2, load_weights())
    _, ok, _ = head.features(y, mask, head.initial_state())
    late = slice(int(35 * CFG.sample_rate) // CFG.patch_len, None)
    assert ok[late].all()
    head.rate_lead = None
    _, ok0, _ = head.features(y, mask, head.initial_state())
    assert not ok0[late].any() and ok0[: cut // CFG.patch_len].sum() > 0


def test_a_flat_lead_reads_as_a_lost_lead_not_a_clean_one():
    """Lead 0 held at one value from 20 s of the 203 excerpt (an electrode off without NaN): once
    the band-pass has settled the head's features are those of lead 0 masked (lead 1 alone),
    not the floor of a perfectly clean lead 0, which would read every window as clean."""
    from models.ecg_sqi import FLOOR

    x, fs = excerpt("mitdb_203_vt")
    x = x[: int(60 * fs)].copy()
    x[int(20 * fs):, 0] = x[int(20 * fs), 0]
    y, mask = preprocessed(x, fs)
    lost = mask.copy()
    lost[int(20 * CFG.sample_rate):, 0] = True
    head = EcgQuality(CFG, 2, load_weights())
    f_flat, ok_flat, _ = head.features(y, mask, head.initial_state())
    f_lost, ok_lost, _ = head.features(y, lost, head.initial_state())
    late = slice(int(40 * CFG.sample_rate) // CFG.patch_len, None)
    assert ok_flat[late].all() and ok_lost[late].all()
    assert np.allclose(f_flat[late], f_lost[late])
    assert (f_flat[late, 1] > np.log(FLOOR) + 1).all() and np.allclose(f_flat[late, 0], f_flat[late, 1])
