"""Causal, streaming EEG signal-quality head: a per-token artifact probability.

The network's ``artifact`` output knows the corruptions it was trained on (blinks, EMG bursts,
flat channels). This head asks a more general question, FASTER / Autoreject style: *how far is
each channel's current token from that channel's own recent behaviour?* It is fused into the
network's ``artifact`` column by ``max(network, head)`` (:func:`models.sqi.fuse`).

Per token (``patch_len`` = 32 model samples, 125 ms at 256 Hz) and channel:

1. the preprocessed signal ``y`` (µV) and four causal Butterworth band signals
   (:data:`BANDS_HZ`: < 2, 2-8, 8-20, > 20 Hz) give :data:`QUANTITIES`, the logs of the token's
   mean power, band powers, largest and mean absolute first difference;
2. each is compared with the channel's running *level* of that quantity (a clipped exponential
   average, an M-estimate of the recent median, time constant :data:`TAU_S`; one token moves it
   by at most :data:`STEP_CLIP` x its rate, so a burst barely moves it while a lasting change of
   state is followed): the differences, in nats and clipped to :data:`REL_CLIP`, are the
   ``rel_`` features; divided by the channel's running *spread* of them (mean absolute
   deviation, same rate, :data:`SPREAD_CLIP`, :data:`SPREAD_FLOOR`) they are the ``z_`` features
   (a channel that is restless by nature needs a larger change); the token's log kurtosis
   (log of m4 / m2^2: spikes, steps) is added;
3. a small MLP (:class:`models.mlp.TanhMLP`, fitted by :mod:`models.eeg_sqi_fit`) maps the
   :data:`FEATURES` of each channel to a logit; the token's logit is the largest over its valid
   channels (an artifact may touch one channel of 64) less ``channel_penalty * sqrt(2 ln c)``
   for ``c`` valid channels (the expected growth of the largest of ``c`` clean scores, so that
   one threshold suits a 1-channel and a 64-channel montage), and its sigmoid is the token's raw
   probability;
4. the output is the largest raw probability of the last ``hold_tokens`` tokens (stored with the
   weights): artifacts come and go within their span (blinks, pops), and a short causal hold
   keeps the token between two bumps flagged.

A channel's token counts only when none of its samples is masked: a masked token neither gives a
probability nor moves the channel's levels (the band filters run on through the preprocessor's
held values). A channel gives no probability (0) until it has :data:`WARMUP_TOKENS` valid tokens
(its levels are the plain means of them meanwhile), so the first seconds of a session read low;
a token with no counting channel reads 0. Everything is vectorised over a chunk's tokens and
channels except the level update (a few numpy operations per token); the state is a dict of
numpy arrays, and any chunking gives the same probabilities (the same arithmetic on the same
samples: only the MLP's matrix products may round differently with the batch size, ~1e-16).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal as sps

from models.config import ModelConfig
from models.filter_design import butter_sos
from models.mlp import TanhMLP, load_weights_file
from models.small_arrays import sosfilt_core

BANDS_HZ = ((None, 2.0), (2.0, 8.0), (8.0, 20.0), (20.0, None))  # Hz; None: open edge (low- / high-pass)
BAND_ORDER = 2             # Butterworth order of the band-passes; the low- and high-pass have twice it (2 biquads each)
TAU_S = 20.0               # time constant of the running levels, s
STEP_CLIP = 1.0            # largest deviation (nats) one token may pull a warmed-up level by (times its rate)
REL_CLIP = 10.0            # relative features are clipped to +-this many nats
SPREAD_CLIP = 3.0          # deviations (nats) enter the running spread clipped to this
SPREAD_FLOOR = 0.05        # smallest spread (nats) a deviation is divided by
WARMUP_TOKENS = 16         # valid tokens (2 s at 8 tokens/s) before a channel gives a probability
POWER_FLOOR_UV2 = 1e-2     # added to powers before the log, µV^2 (a flat channel stays finite)
DIFF_FLOOR_UV = 1e-3       # added to first differences before the log, µV per sample
WEIGHTS_FILE = Path(__file__).resolve().parent / "checkpoints" / "vigil-eeg-sqi.json"

BAND_NAMES = ("low", "theta", "beta", "high")       # names of BANDS_HZ, in order
QUANTITIES = ("power", *(f"power_{b}" for b in BAND_NAMES), "max_diff", "line_length")
FEATURES = (*(f"rel_{q}" for q in QUANTITIES), *(f"z_{q}" for q in QUANTITIES), "log_kurtosis")


def band_filters(fs: float) -> np.ndarray:
    """``(B, 2, 6)`` second-order sections of the :data:`BANDS_HZ` filters at ``fs`` Hz (a new array;
    the designs are made once per rate, :mod:`models.filter_design`)."""
    out = []
    for lo, hi in BANDS_HZ:
        if lo is None:
            sos = butter_sos(2 * BAND_ORDER, hi, "lowpass", fs)
        elif hi is None:
            sos = butter_sos(2 * BAND_ORDER, lo, "highpass", fs)
        else:
            sos = butter_sos(BAND_ORDER, (lo, hi), "bandpass", fs)
        out.append(sos)
    return np.stack(out)


@dataclass
class EegQualityWeights(TanhMLP):
    """The per-channel classifier (a :class:`models.mlp.TanhMLP` on :data:`FEATURES`), the channel
    count penalty and the output hold.

    Attributes
    ----------
    channel_penalty : float
        Subtracted from the largest channel logit, times ``sqrt(2 ln c)`` for ``c`` valid channels.
    hold_tokens : int
        The output is the largest raw probability of this many last tokens (1: no hold).
    meta : dict
        Provenance (data, split, metrics, command) written by :mod:`models.eeg_sqi_fit`.
    """

    channel_penalty: float
    hold_tokens: int
    meta: dict

    def to_json(self) -> dict:
        return {"features": list(FEATURES), **_constants(), **self.params_json(),
                "channel_penalty": float(self.channel_penalty), "hold_tokens": int(self.hold_tokens),
                "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "EegQualityWeights":
        got = {k: d.get(k) for k in _constants()}
        if list(d["features"]) != list(FEATURES) or got != _constants():
            raise ValueError(f"Invalid EEG quality weights: expected features {list(FEATURES)} with {_constants()}, "
                             f"got {d['features']} with {got}")
        return cls(**TanhMLP.params_from_json(d), channel_penalty=float(d["channel_penalty"]),
                   hold_tokens=int(d["hold_tokens"]), meta=d.get("meta", {}))


def _constants() -> dict:
    """The feature constants stored with (and checked against) the weights."""
    return {"bands_hz": [list(b) for b in BANDS_HZ], "band_order": BAND_ORDER, "tau_s": TAU_S,
            "step_clip": STEP_CLIP, "rel_clip": REL_CLIP, "spread_clip": SPREAD_CLIP,
            "spread_floor": SPREAD_FLOOR, "warmup_tokens": WARMUP_TOKENS}


def load_weights(path: Path | None = None) -> EegQualityWeights | None:
    """The shipped EEG quality head, or None when its file is absent (shared, read-only)."""
    return load_weights_file(EegQualityWeights, WEIGHTS_FILE if path is None else path)


class EegQuality:
    """Streaming artifact probability per token of one EEG session (:class:`models.sqi.QualityHead`).

    Parameters
    ----------
    config : ModelConfig
        The EEG model (its ``sample_rate`` and ``patch_len``).
    n_channels : int
        Model channels of the session.
    weights : EegQualityWeights, optional
        The fitted classifier; without it only :meth:`features` works (for fitting).
    """

    def __init__(self, config: ModelConfig, n_channels: int, weights: EegQualityWeights | None = None):
        self.patch_len, self.n_channels, self.weights = int(config.patch_len), int(n_channels), weights
        self.sos = np.ascontiguousarray(band_filters(config.sample_rate), np.float64)   # (B, S, 6)
        self.alpha = 1.0 / (TAU_S * config.sample_rate / config.patch_len)         # level rate per token
        # valid tokens after which a channel is warm and both its rates are alpha (1 / n <= alpha)
        self.steady = max(WARMUP_TOKENS, math.ceil(1.0 / self.alpha))
        while 1.0 / self.steady > self.alpha:
            self.steady += 1
        self.hold = max(1, weights.hold_tokens) if weights is not None else 1

    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh state (dict of numpy arrays)."""
        c, b, s = self.n_channels, len(BANDS_HZ), self.sos.shape[1]
        return {
            "n_samples": np.asarray(0, np.int64),                   # model samples seen
            "prev": np.zeros(c),                                     # (c,) last sample of the last complete token, µV
            "tail": np.zeros((0, 1 + b, c)),                         # (r < P, 1 + B, c) open token: signal, bands
            "tail_mask": np.zeros((0, c), bool),                     # (r, c)
            "zi": np.zeros((b, s, 2, c)),                            # band filter states
            "level": np.zeros((len(QUANTITIES), c)),                 # (Q, c) running levels, nats
            "spread": np.zeros((len(QUANTITIES), c)),                # (Q, c) running mean |deviation|, nats
            "n_valid": np.zeros(c, np.int64),                        # (c,) valid tokens seen per channel
            "recent": np.zeros(self.hold - 1),                       # last raw token probabilities
        }

    def process(self, y: np.ndarray, mask: np.ndarray, state: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One chunk of preprocessed signal.

        Parameters
        ----------
        y : (t, c) float32
            Model-rate samples in µV, ``t >= 0``.
        mask : (t, c) bool
            True where a sample is invalid.
        state : dict of np.ndarray
            Not modified.

        Returns
        -------
        q : (n,) float64
            Artifact probability of each token this chunk completes.
        state : dict of np.ndarray
        """
        if self.weights is None:
            raise ValueError("Invalid EegQuality: process needs fitted weights")
        f, ok, state = self.features(y, mask, state)                             # (n, c, F), (n, c)
        return self._hold(token_probability(self.weights, f, ok), state)

    def _hold(self, raw: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The largest raw probability over the last ``hold`` tokens, and the state's new ``recent``."""
        h = self.hold - 1
        seq = np.concatenate([state["recent"], raw])                              # (h + n,)
        if not h or not len(raw):
            q = raw.copy()
        elif len(raw) <= h:                     # a chunk's few tokens: one maximum each
            q = np.empty(len(raw))
            for j in range(len(raw)):
                q[j] = np.maximum.reduce(seq[j:j + h + 1])
        else:
            q = np.lib.stride_tricks.sliding_window_view(seq, h + 1).max(axis=1)  # (n,)
        return q, {**state, "recent": seq[len(seq) - h:].copy()}

    def features(self, y: np.ndarray, mask: np.ndarray, state: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Per-channel features of the tokens a chunk completes.

        Parameters
        ----------
        y : (t, c) float
            Model-rate samples in µV.
        mask : (t, c) bool
        state : dict of np.ndarray
            Not modified.

        Returns
        -------
        f : (n, c, F) float64
            :data:`FEATURES` of each completed token and channel.
        ok : (n, c) bool
            Where ``f`` counts: the channel's token has no masked sample and the channel is warmed up.
        state : dict of np.ndarray
            The new state (its ``recent`` unchanged).
        """
        c, P = self.n_channels, self.patch_len
        y = np.asarray(y, np.float64).reshape(-1, c)                             # (t, c) µV
        mask = np.asarray(mask, bool).reshape(-1, c)
        prev = state["prev"] if int(state["n_samples"]) or not len(y) else y[0]
        bands, zi = self._bands(y, state["zi"])                                   # (t, B, c)
        # (the memory layout of z, which these concatenations choose from their inputs', sets the
        # order of the sums over each token below: keep it, for the same bits)
        z = np.concatenate([state["tail"], np.concatenate([y[:, None], bands], axis=1)])  # (r + t, 1 + B, c)
        zm = np.concatenate([state["tail_mask"], mask]) if len(state["tail_mask"]) else mask   # (r + t, c)
        n = len(z) // P
        blocks = z[:n * P].reshape(n, P, z.shape[1], c)                           # (n, P, 1 + B, c)
        valid = ~np.logical_or.reduce(zm[:n * P].reshape(n, P, c), axis=1)        # (n, c) (.any, unwrapped)
        q, kurt = _token_quantities(blocks, prev)                                  # (n, Q, c), (n, c)
        rel, zs, ok, level, spread, n_valid = self._relative(q, valid, state["level"], state["spread"],
                                                               state["n_valid"])
        f = np.concatenate([rel, zs, kurt[:, None]], axis=1).transpose(0, 2, 1)   # (n, c, F)
        new = {**state, "n_samples": np.asarray(int(state["n_samples"]) + len(y), np.int64),
               "prev": blocks[-1, -1, 0].copy() if n else np.asarray(prev, np.float64).copy(),
               "tail": z[n * P:].copy(), "tail_mask": zm[n * P:].copy(), "zi": zi, "level": level,
               "spread": spread, "n_valid": n_valid}
        return f, ok, new

    def _bands(self, y: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(t, B, c)`` band signals of ``y`` (t, c) and the new filter states (``zi`` is not modified).

        ``scipy.signal.sosfilt``'s core is called directly when available (the same arithmetic:
        identical output); the public function's checks and axis moves cost most of a call on
        the short chunks the service passes, four bands each."""
        if not len(y):
            return np.zeros((0, len(self.sos), y.shape[1])), zi
        if sosfilt_core is None:
            out, new = [], np.empty_like(zi)
            for i, sos in enumerate(self.sos):
                b, new[i] = sps.sosfilt(sos, y, axis=0, zi=zi[i])
                out.append(b)
            return np.stack(out, axis=1), new
        xs = np.repeat(np.ascontiguousarray(y.T, np.float64)[None], len(self.sos), axis=0)  # (B, c, t)
        z = np.array(zi.transpose(0, 3, 1, 2), np.float64, order="C")    # (B, c, S, 2), always a copy
        for i in range(len(self.sos)):
            sosfilt_core(self.sos[i], xs[i], z[i])                                   # in place
        return xs.transpose(2, 0, 1), z.transpose(0, 2, 3, 1)

    def _relative(self, q: np.ndarray, valid: np.ndarray, level: np.ndarray, spread: np.ndarray,
                  n_valid: np.ndarray):
        """Quantities relative to the running levels and spreads, token by token, and the updated state.

        Parameters
        ----------
        q : (n, Q, c) nats; valid : (n, c) bool; level, spread : (Q, c) nats; n_valid : (c,) int

        Returns
        -------
        rel : (n, Q, c) deviation from the level, clipped to +-REL_CLIP
        z : (n, Q, c) the same over the spread, clipped to +-REL_CLIP
        ok : (n, c) bool; level, spread : (Q, c); n_valid : (c,)
        """
        level, spread = level.copy(), spread.copy()
        if np.count_nonzero(valid) == valid.size and np.minimum.reduce(n_valid, initial=self.steady) >= self.steady:
            # the steady state (every channel valid and past ``steady`` tokens): every rate is alpha
            warm, ok = None, valid.copy()
            rate = rate_s = (self.alpha,) * len(q)
        else:
            # the valid tokens each channel has seen before each token (n, c), and what depends on them
            seen = n_valid + (np.cumsum(valid, axis=0) - valid)
            warm = seen >= WARMUP_TOKENS
            ok = valid & warm
            rate = np.where(valid, np.maximum(1.0 / (seen + 1.0), self.alpha), 0.0)        # (n, c) level rate
            # the spread from the second valid token on (the first has no level to deviate from)
            rate_s = np.where(valid & (seen > 0), np.maximum(1.0 / np.maximum(seen, 1), self.alpha), 0.0)
        d, floor = np.empty_like(q), np.empty_like(q)     # per token: deviation, the spread it is divided by
        for i in range(len(q)):
            np.subtract(q[i], level, out=d[i])                                    # (Q, c)
            np.maximum(spread, SPREAD_FLOOR, out=floor[i])
            step = _clip(d[i], STEP_CLIP)                 # a warmed-up level moves by at most STEP_CLIP
            if warm is not None and not warm[i].all():
                step = np.where(warm[i], step, d[i])
            level += rate[i] * step
            spread += rate_s[i] * (np.minimum(np.abs(d[i]), SPREAD_CLIP) - spread)
        n_valid = n_valid.copy()
        n_valid += valid.sum(axis=0)
        # (clipped, and divided by the spread, all tokens at once: the same arithmetic per element)
        return _clip(d, REL_CLIP), _clip(d / floor, REL_CLIP), ok, level, spread, n_valid


def _clip(a: np.ndarray, limit: float) -> np.ndarray:
    """``numpy.clip(a, -limit, limit)`` (the same values, NaN kept) without its wrapper."""
    return np.minimum(np.maximum(a, -limit), limit)


def token_probability(weights: EegQualityWeights, f: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Raw token probabilities (before the hold).

    Parameters
    ----------
    f : (n, c, F)
        Per-channel features.
    ok : (n, c) bool
        Which channels count; a token without any gets 0.

    Returns
    -------
    (n,) float64
    """
    n, c, _ = f.shape
    if n == 0 or c == 0:
        return np.zeros(n)
    logits = weights.logit(f.reshape(n * c, -1)).reshape(n, c)                  # (n, c)
    if np.count_nonzero(ok) == ok.size:  # every channel counts (the usual case): the same arithmetic
        return _sigmoid(np.maximum.reduce(logits, axis=1) - _penalty(weights.channel_penalty, n, c))
    logit = np.maximum.reduce(np.where(ok, logits, -np.inf), axis=1)            # (n,)
    k = ok.sum(axis=1)
    logit = logit - weights.channel_penalty * np.sqrt(2.0 * np.log(np.maximum(k, 1)))
    with np.errstate(over="ignore"):
        return np.where(k > 0, 1.0 / (1.0 + np.exp(-np.where(k > 0, logit, 0.0))), 0.0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))``; ``exp`` overflows to inf (silenced: the probability is 0) only below
    about -709, so ``numpy.errstate``, whose cost is that of the rest, is entered only then."""
    if np.minimum.reduce(z, initial=0.0) > -700.0:
        return 1.0 / (1.0 + np.exp(-z))
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


@functools.lru_cache(maxsize=64)
def _penalty(channel_penalty: float, n: int, c: int) -> np.ndarray:
    """``(n,)`` the channel count penalty of :func:`token_probability` for ``n`` tokens of ``c``
    valid channels each (computed as there, on the same arrays: the same bits; read-only)."""
    k = np.full(n, c, np.int_)                                                    # as ok.sum(axis=1)
    out = channel_penalty * np.sqrt(2.0 * np.log(np.maximum(k, 1)))
    out.flags.writeable = False
    return out


def _token_quantities(blocks: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log quantities and log kurtosis of complete tokens.

    Parameters
    ----------
    blocks : (n, P, 1 + B, c)
        Each token's signal (µV, index 0) and band signals.
    prev : (c,)
        The sample before the first token (for its first difference), µV.

    Returns
    -------
    q : (n, Q, c)
        :data:`QUANTITIES` in nats (logs of µV^2 and µV per sample).
    log_kurtosis : (n, c)
    """
    n, P, _, c = blocks.shape
    if n == 0:
        return np.zeros((0, len(QUANTITIES), c)), np.zeros((0, c))
    x = blocks[:, :, 0]                                                           # (n, P, c)
    # np.add.reduce(., axis) / P is np.mean's own arithmetic, without its wrapper: the same bits.
    # The layouts of the arrays summed (which set the order of the sums) are left as they were.
    before = np.concatenate([np.asarray(prev, np.float64)[None], x[:-1, -1]])    # (n, c) sample before each token
    xp = np.concatenate([before[:, None], x], axis=1)                            # (n, 1 + P, c)
    d = np.abs(xp[:, 1:] - xp[:, :-1])                                            # (n, P, c), as np.diff
    power = np.add.reduce(np.square(blocks), axis=1) / P                          # (n, 1 + B, c)
    q = np.concatenate([np.log(power + POWER_FLOOR_UV2),
                        np.log(np.maximum.reduce(d, axis=1) + DIFF_FLOOR_UV)[:, None],
                        np.log(np.add.reduce(d, axis=1) / P + DIFF_FLOOR_UV)[:, None]], axis=1)
    xc2 = np.square(x - np.add.reduce(x, axis=1, keepdims=True) / P)             # (n, P, c)
    m2 = np.add.reduce(xc2, axis=1) / P + POWER_FLOOR_UV2                         # (n, c)
    m4 = np.add.reduce(np.square(xc2), axis=1) / P + POWER_FLOOR_UV2 ** 2
    return q, np.log(m4 / np.square(m2))
