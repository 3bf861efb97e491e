"""Causal flat-line marking (:mod:`models.flatline`) and what the QRS detector makes of a flat lead."""

from __future__ import annotations

import numpy as np
from synthetic import random_bounds

from models.flatline import FLAT_LEAD_S, flat_samples
from models.qrs import RhythmMonitor


def naive_flat(x: np.ndarray, n_flat: int) -> np.ndarray:
    """(n, L): x[i] and the n_flat - 1 samples before it are one finite value."""
    out = np.zeros(x.shape, bool)
    for i in range(n_flat - 1, len(x)):
        w = x[i - n_flat + 1: i + 1]
        out[i] = np.isfinite(w).all(axis=0) & (w == w[-1]).all(axis=0)
    return out


def chunked(x: np.ndarray, n_flat: int, bounds: list[int]) -> np.ndarray:
    last, run = np.zeros(x.shape[1]), np.zeros(x.shape[1], np.int64)
    parts, cuts = [], [0, *bounds, len(x)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        f, last, run = flat_samples(x[a:b], last, run, n_flat)
        parts.append(f)
    return np.concatenate(parts)


def test_flat_samples_is_the_causal_definition_on_any_chunking():
    """Held values of various lengths (shorter and longer than the rule), NaN inside and between
    runs, two leads that differ: every random chunking marks what the whole-signal definition does."""
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((3000, 2)) * 3)           # small integers: short natural runs
    for a, n in ((100, 49), (300, 50), (700, 51), (1200, 400)):
        x[a:a + n, 0] = 7.0
    x[1400:1500, 1] = -2.0
    x[1450, 1] = np.nan                                         # a gap splits a run
    x[2000:2600, :] = 0.0
    x[2100:2110, 0] = np.nan
    want = naive_flat(x, 50)
    assert want[:, 0].sum() > 500 and want[:, 1].sum() > 500 and not want[100:149, 0].any()
    for seed in range(5):
        bounds = random_bounds(len(x), 100.0, np.random.default_rng(seed), max_s=2.0)
        assert np.array_equal(chunked(x, 50, bounds), want)


def _ecg(fs: float, seconds: float, beat_s: np.ndarray) -> np.ndarray:
    """(n,) mV: a narrow QRS at each of ``beat_s``, low-level noise throughout."""
    t = np.arange(int(seconds * fs)) / fs
    x = 0.02 * np.random.default_rng(0).standard_normal(len(t))
    for b in beat_s:
        x += 1.2 * np.exp(-0.5 * ((t - b) / 0.012) ** 2) - 0.36 * np.exp(-0.5 * ((t - b - 0.03) / 0.01) ** 2)
    return x


def _stream(mon: RhythmMonitor, x: np.ndarray, bounds: list[int]):
    """Beats and events of ``x`` cut at ``bounds``."""
    state, beats, events, cuts = mon.initial_state(), [], [], [0, *bounds, len(x)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        upd, state = mon.process(x[a:b], a, state)
        beats += upd.beats.tolist()
        events += upd.events
    return np.asarray(beats), events


def test_a_flat_line_is_no_asystole_but_a_quiet_one_is():
    """Beats until 19.7 s, none from 20 to 30 s, beats again from 30.5 s. With low-level noise in
    the pause it is an asystole (and a bradycardia around it); held at one value from 20 s (an electrode off) it is a lost lead:
    no asystole, on any chunking, and the beats after it are detected again."""
    fs = 250.0
    beat_s = np.r_[np.arange(0.5, 20.0, 0.8), np.arange(30.5, 40.0, 0.8)]
    quiet = _ecg(fs, 40.0, beat_s)
    mon = RhythmMonitor(fs)
    _, events = _stream(mon, quiet, [])
    assert [e.end_sample is None for e in events if e.kind == "asystole"] == [True, False]
    flat = quiet.copy()
    flat[int(20 * fs): int(30 * fs)] = flat[int(20 * fs)]
    for seed in range(3):
        beats, events = _stream(mon, flat, random_bounds(len(flat), fs, np.random.default_rng(seed)))
        assert events == []
        assert np.sum(beats > 31 * fs) >= 10
    assert 0.74 < FLAT_LEAD_S < 4.0    # above the longest held value in real ECG, below an asystole
