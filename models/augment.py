"""Training augmentations on preprocessed windows (µV at the model rate), with their targets.

The preprocessor (resampler, band-pass, notches) is linear, so an additive disturbance can be
preprocessed on its own and added afterwards: ``pre(x + n) = pre(x) + pre(n)`` up to the
filters' start-up. NSTDB noise arrives already preprocessed (:func:`models.datasets.load_ecg_noise`);
synthetic EEG artifacts are generated at the model rate and passed through the same filter
sections (:func:`filtered`). Device-rate changes (250/300/360 Hz) are applied per record when
the cache is built (:mod:`models.datasets`).

Every function takes and returns a :class:`models.datasets.Window` (modified in place).
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from models.config import ModelConfig
from models.datasets import Window
from models.labels import AF, ARTIFACT, NOISE, VF, VT
from models.preprocess import Preprocessor

# ECG noise: added at one of these SNRs (dB, signal RMS over noise RMS); target ``noise`` is 1
# at or below NOISE_POSITIVE_DB, unknown (weight 0) up to NOISE_UNKNOWN_DB, 0 above.
ECG_SNRS_DB = (-6.0, 0.0, 6.0, 12.0, 18.0, 24.0)
NOISE_POSITIVE_DB = 6.0
NOISE_UNKNOWN_DB = 12.0
RHYTHM_UNKNOWN_DB = 0.0  # at or below this SNR the rhythm labels are not trained on


def _span(n: int, rng: np.random.Generator, min_frac: float = 0.2, max_frac: float = 1.0) -> tuple[int, int]:
    """A random [a, b) inside [0, n) covering min_frac-max_frac of it."""
    length = int(n * rng.uniform(min_frac, max_frac))
    a = int(rng.integers(0, max(1, n - length + 1)))
    return a, a + length


def _token_span(a: int, b: int, patch_len: int) -> slice:
    """Tokens mostly inside samples [a, b)."""
    return slice((a + patch_len // 2) // patch_len, (b + patch_len // 2) // patch_len)


def gain(w: Window, rng: np.random.Generator, lo: float = 0.3, hi: float = 3.0) -> Window:
    """Scale by a log-uniform gain in [lo, hi] (the network's normaliser should not care)."""
    w.x *= np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return w


def polarity(w: Window, rng: np.random.Generator, p: float = 0.1) -> Window:
    """Invert the sign of each channel with probability p (reversed electrodes)."""
    flip = rng.random(w.x.shape[1]) < p
    w.x[:, flip] *= -1
    return w


def lead_choice(w: Window, rng: np.random.Generator, p_swap: float = 0.3, p_drop: float = 0.5) -> Window:
    """Swap the two ECG leads, or drop one of them (masked: the network sees a 1-lead session)."""
    present = ~w.mask.all(0)                                               # (c,)
    if w.x.shape[1] == 2 and present.all():
        if rng.random() < p_swap:
            w.x, w.mask = w.x[:, ::-1].copy(), w.mask[:, ::-1].copy()
        if rng.random() < p_drop:
            j = int(rng.integers(0, 2))
            w.x[:, j], w.mask[:, j] = 0.0, True
    return w


def surrogate_lead(w: Window, rng: np.random.Generator, p: float = 0.5) -> Window:
    """Give a single-lead window a second lead: a scaled, possibly inverted mix of the lead and
    its short-lag difference, plus independent noise at ~30 dB.

    Without it, 2-lead windows come only from MIT-BIH and CinC 2015 and 1-lead windows carry
    all CinC 2017 AF, and the network learns "two leads, no AF" (seen on mitdb 201: AF 0.88
    on MLII alone, 0.01 with both leads). A real second lead is another projection of the same
    cardiac vector: same rhythm, different morphology; this is a crude stand-in for that.
    """
    present = ~w.mask.all(0)                                               # (c,)
    if w.x.shape[1] != 2 or present.sum() != 1 or rng.random() >= p:
        return w
    src, dst = int(np.flatnonzero(present)[0]), int(np.flatnonzero(~present)[0])
    x = w.x[:, src].astype(np.float64)
    k = int(rng.integers(2, 7))                                            # 8-24 ms at 250 Hz
    d = np.concatenate([np.zeros(k), x[k:] - x[:-k]])
    d *= np.std(x) / max(np.std(d), 1e-6)
    theta = rng.uniform(0, np.pi / 2)
    y = np.cos(theta) * x + np.sin(theta) * d
    y *= np.exp(rng.uniform(np.log(0.3), np.log(1.5))) * rng.choice([-1.0, 1.0])
    y += rng.standard_normal(len(y)) * np.std(y) * 10 ** (-30 / 20)
    w.x[:, dst] = y.astype(np.float32)
    w.mask[:, dst] = w.mask[:, src]
    return w


def channel_dropout(w: Window, rng: np.random.Generator, p: float = 0.3, max_frac: float = 0.5) -> Window:
    """Mask a random subset (up to max_frac) of the channels of a multichannel EEG window."""
    c = w.x.shape[1]
    if c > 1 and rng.random() < p:
        k = int(rng.integers(1, max(2, int(c * max_frac) + 1)))
        j = rng.choice(c, size=k, replace=False)
        w.x[:, j], w.mask[:, j] = 0.0, True
    return w


def _rms(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(c,) RMS over valid samples (1 µV floor)."""
    ok = ~mask
    return np.sqrt((np.square(x) * ok).sum(0) / np.maximum(ok.sum(0), 1)).clip(1.0)


def ecg_noise(w: Window, rng: np.random.Generator, noise: dict[str, np.ndarray], labels: tuple[str, ...],
              patch_len: int, snrs_db=ECG_SNRS_DB) -> Window:
    """Add a stretch of preprocessed NSTDB noise (``bw`` or ``ma``) at a random SNR.

    The ``noise`` target follows the SNR (see the module constants); rhythm labels are made
    unknown where the noise buries the signal.
    """
    kind = str(rng.choice(sorted(noise)))
    src = noise[kind]                                                      # (T, 2) µV
    n, c = w.x.shape
    a, b = _span(n, rng, 0.2, 1.0)
    start = int(rng.integers(0, len(src) - (b - a)))
    seg = src[start:start + b - a, rng.permutation(src.shape[1])[:c]]      # (b - a, c)
    snr = float(rng.choice(snrs_db))
    scale = _rms(w.x, w.mask) / _rms(seg, np.zeros_like(seg, bool)) * 10 ** (-snr / 20)
    w.x[a:b] += (seg * scale).astype(np.float32) * ~w.mask[a:b]
    tok = _token_span(a, b, patch_len)
    j = labels.index(NOISE)
    if snr <= NOISE_POSITIVE_DB:
        w.targets[tok, j], w.weights[tok, j] = 1.0, 1.0
    elif snr <= NOISE_UNKNOWN_DB:
        w.weights[tok, j] = 0.0
    else:
        w.targets[tok, j], w.weights[tok, j] = 0.0, 1.0
    if snr <= RHYTHM_UNKNOWN_DB:
        for name in (AF, VT, VF):
            w.weights[tok, labels.index(name)] = 0.0
        w.drop_bags(tok)
    return w


# --- EEG artifacts -----------------------------------------------------------------------

def filtered(config: ModelConfig, a: np.ndarray) -> np.ndarray:
    """(t, c) disturbance at the model rate through the preprocessor's band-pass and notches,
    from rest (linearity: adding it after preprocessing equals adding it before)."""
    sos = Preprocessor(config, config.sample_rate, 1).sos
    return sps.sosfilt(sos, a, axis=0).astype(np.float32)


def _bump(n: int, centre: int, width: int) -> np.ndarray:
    t = np.arange(n)
    return np.exp(-0.5 * ((t - centre) / max(width, 1)) ** 2)


def make_artifact(kind: str, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) unit-scale artifact waveform of one type, at ``fs`` Hz.

    Types: ``blink`` (1-4 smooth 150-250 ms monophasic bumps), ``emg`` (20-70 Hz noise
    bursts), ``pop`` (a step that decays over 0.1-0.5 s: electrode pop), ``motion`` (slow
    0.3-2 Hz swings with a few sharp jumps), ``line`` (50 or 60 Hz sinusoid). ``flat`` is not
    additive (see :func:`eeg_artifact`).
    """
    t = np.arange(n) / fs
    if kind == "blink":
        y = sum(_bump(n, int(rng.integers(0, n)), int(fs * rng.uniform(0.15, 0.25)))
                for _ in range(int(rng.integers(1, 5))))
    elif kind == "emg":
        b, a = sps.butter(4, [20, min(70, 0.45 * fs)], btype="bandpass", fs=fs)
        y = sps.lfilter(b, a, rng.standard_normal(n)) * (0.5 + _bump(n, n // 2, n // 3))
        y = y / (np.abs(y).max() + 1e-9)
    elif kind == "pop":
        y = np.zeros(n)
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(0, max(1, n - 1)))
            y[k:] += rng.choice([-1, 1]) * np.exp(-(t[k:] - t[k]) / rng.uniform(0.1, 0.5))
    elif kind == "motion":
        f = rng.uniform(0.3, 2.0)
        y = np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * (0.5 + 0.5 * np.sin(np.pi * t / max(t[-1], 1e-3)))
        jumps = np.zeros(n)
        jumps[rng.integers(0, n, size=int(rng.integers(1, 4)))] = rng.normal(0, 1, size=1)
        y = y + np.cumsum(jumps) * 0.5
    elif kind == "line":
        y = np.sin(2 * np.pi * float(rng.choice([50.0, 60.0])) * t + rng.uniform(0, 6))
    else:
        raise ValueError(f"Invalid artifact kind: expected blink, emg, pop, motion, line or flat, got {kind!r}")
    return np.asarray(y, np.float64)


# Amplitude of each type relative to the background RMS of the affected channel.
ARTIFACT_SCALE = {"blink": (3.0, 10.0), "emg": (1.5, 5.0), "pop": (4.0, 15.0), "motion": (3.0, 10.0),
                  "line": (1.0, 5.0)}


ARTIFACT_START_S = 3.0  # an input artifact starts after this (the evaluation's burn-in, models.evaluate)


def insert_artifact(x: np.ndarray, fs: float, kind: str, rng: np.random.Generator,
                    start_s: float = ARTIFACT_START_S) -> tuple[np.ndarray, int, int, np.ndarray]:
    """One artifact added at the raw input (before preprocessing): 1-4 s after ``start_s``, on a
    random subset of the channels, scaled to each channel's SD (how ``vigil evaluate eeg`` and the
    EEG quality head's fit insert them).

    Parameters
    ----------
    x : (n, c) float32
        Background, µV at ``fs`` Hz.
    kind : str
        ``flat`` or a :func:`make_artifact` type.
    rng : np.random.Generator
    start_s : float
        Earliest start, s.

    Returns
    -------
    y : (n, c) float32
        The signal with the artifact.
    a, b : int
        Its span, input samples ``[a, b)``.
    chans : (k,) int
        The channels it was added to.
    """
    n, c = x.shape
    length = int(rng.uniform(1.0, 4.0) * fs)
    a = int(rng.integers(int(start_s * fs), max(int(start_s * fs) + 1, n - length)))
    b = min(n, a + length)
    chans = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)
    y = x.copy()
    sd = np.nanstd(x[:, chans], axis=0).clip(1.0)
    if kind == "flat":
        y[a:b, chans] = np.nanmean(x[:, chans], axis=0)
    else:
        lo, hi = ARTIFACT_SCALE[kind]
        for i, ch in enumerate(chans):
            y[a:b, ch] += (make_artifact(kind, b - a, fs, rng) * sd[i] * rng.uniform(lo, hi)).astype(np.float32)
    return y, a, b, chans


def eeg_artifact(w: Window, rng: np.random.Generator, kind: str, config: ModelConfig) -> Window:
    """Add one artifact of type ``kind`` to a stretch of a window, on a random subset of the
    channels, and set the ``artifact`` target there (``line`` stays 0: the notch removes it)."""
    labels, P = config.labels, config.patch_len
    n, c = w.x.shape
    a, b = _span(n, rng, 0.1, 0.5)
    valid = np.flatnonzero(~w.mask.all(0))
    if len(valid) == 0 or b - a < P:
        return w
    k = int(rng.integers(1, len(valid) + 1)) if c > 1 else 1
    chans = rng.choice(valid, size=k, replace=False)
    if kind == "flat":
        w.x[a:b, chans] = rng.normal(0, 0.2, size=(b - a, len(chans))).astype(np.float32)
    else:
        lo, hi = ARTIFACT_SCALE[kind]
        rms = _rms(w.x[:, chans], w.mask[:, chans])                        # (k,)
        wave = np.zeros((n, len(chans)))
        for i in range(len(chans)):
            wave[a:b, i] = make_artifact(kind, b - a, config.sample_rate, rng) * rms[i] * rng.uniform(lo, hi)
        w.x[:, chans] += filtered(config, wave) * ~w.mask[:, chans]
    tok = _token_span(a, b, P)
    j = labels.index(ARTIFACT)
    w.targets[tok, j] = 0.0 if kind == "line" else 1.0
    w.weights[tok, j] = 1.0
    return w
