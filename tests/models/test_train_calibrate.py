"""Temperature scaling and the episode detector on synthetic cases."""

from __future__ import annotations

import numpy as np

from models.calibrate import bce, calibrate, ece, fit_temperature
from models.detector import EpisodeDetector, fit_threshold


def test_temperature_scaling_fixes_overconfident_logits():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, size=20_000)
    y = (rng.random(true_logit.shape) < 1 / (1 + np.exp(-true_logit))).astype(float)
    z = 3.0 * true_logit                                                   # overconfident by 3x
    t = fit_temperature(z, y)
    assert 2.5 < t < 3.5
    assert bce(z / t, y) < bce(z, y) - 0.05
    out = calibrate(z[:, None], y[:, None], np.ones((len(y), 1)), ("af",))
    c = out["labels"]["af"]
    assert c["nll_after"] < c["nll_before"] and c["ece_after"] < c["ece_before"]
    assert ece(1 / (1 + np.exp(-true_logit)), y) < 0.02


def test_temperature_ignores_unweighted_and_single_class():
    z = np.array([5.0, -5.0, 1.0])
    assert fit_temperature(z, np.array([1.0, 1.0, 1.0])) == 1.0
    assert fit_temperature(z, np.array([1.0, 0.0, 1.0]), np.zeros(3)) == 1.0


def test_detector_threshold_join_and_minimum_duration():
    rate = 10.0                                                            # tokens per second
    p = np.zeros(300)
    p[20:60] = 0.9                                                          # 4 s
    p[63:100] = 0.8                                                         # 0.3-s gap: joined
    p[200:205] = 0.95                                                       # 0.5 s: too short
    det = EpisodeDetector("vt", threshold=0.5, min_duration_s=1.0, join_gap_s=0.5)
    assert det.detect(p, rate) == [(20, 100)]
    assert EpisodeDetector("vt", 0.5).detect(p, rate) == [(20, 60), (63, 100), (200, 205)]
    smooth = EpisodeDetector("af", 0.5, smooth_s=1.0).smooth(np.r_[np.zeros(10), np.ones(10)], rate)
    assert smooth[9] == 0 and smooth[19] == 1 and 0 < smooth[14] < 1      # causal moving average
    y = (p > 0.5).astype(float)
    fitted, f1 = fit_threshold(EpisodeDetector("vt"), [(0.6 * p + 0.1, y, np.ones_like(p))], rate)
    assert f1 == 1.0 and 0.1 < fitted.threshold <= 0.58
