"""ECG quality head: how far the recent beats are from the patient's own beats.

A clean ECG repeats: each beat is close to one of the few beat shapes of this patient, on every
lead. Added noise of any kind (baseline wander, muscle, electrode motion) makes the beats differ
from those shapes by the noise itself, so the residual after subtracting the best-matching shape,
relative to that shape's size, estimates the noise level (a beat-template SNR, the basis of the
template-matching signal quality indices of Li, Mark & Clifford, Physiol Meas 29:15-32, 2008, and
Orphanidou et al., IEEE JBHI 19(3):832-838, 2015). It does not depend on what the noise looks like,
so it carries to a kind of noise it was not fitted on (NSTDB electrode motion).

Per session, on the preprocessed signal (model rate, µV; :mod:`models.sqi`):

1. the QRS detector of :mod:`models.qrs` on lead 0 (on lead 1 while lead 0 is lost, as the
   alarms' rhythm does: :mod:`models.rate_lead`; a lead whose samples stay within
   ``HELD_TOL_UV`` of each other for ``FLAT_LEAD_S``, a lead held at one value and band-passed, is
   lost, not perfectly clean), fed whole 1-s blocks counted from the
   session's start (so which beats are known at a token is a function of the signal alone,
   however it was chunked, and the detector costs one call a second);
2. per beat and lead, the window ``[-PRE_S, +POST_S]`` around the beat, its median removed, is
   compared with up to ``N_TEMPLATES`` running-mean templates (a beat updates the one it matches
   with correlation >= ``MATCH``, else it replaces the least used one); its *residual* is
   ``rms(window - best template) / peak-to-peak(best template)`` (the best: smallest residual);
3. per token, the median residual of each lead over the beats of the last ``WINDOW_S`` (a beat
   counts once its window has arrived); features: the log of the larger and of the smaller
   median over the leads (a single lead gives both);
4. a logistic regression (:class:`EcgQualityWeights`, fitted by :mod:`models.ecg_sqi_fit` on
   MIT-BIH training records with NSTDB ``bw`` and ``ma`` noise added) gives the probability.
   Fewer than ``MIN_BEATS`` beats in the window (asystole, the first seconds) give 0: no beats is
   not poor signal (signal loss and asystole have their own alarms).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.config import ModelConfig
from models.flatline import FLAT_LEAD_S, flat_samples
from models.mlp import load_weights_file
from models.small_arrays import median
from models.qrs import RhythmMonitor
from models.rate_lead import RateLead

PRE_S, POST_S = 0.25, 0.45   # beat window around the beat's sample, s
WINDOW_S = 8.0               # beats of this many seconds before a token's end make its features
BUFFER_S = 6.0               # model signal kept, s (search-back beats are reported up to ~3.4 s late)
BLOCK_S = 1.0                # the QRS detector runs on whole blocks of this long (its cost is per call)
MIN_BEATS = 3                # fewer beats in the window: probability 0
N_TEMPLATES = 4
MATCH = 0.8                  # correlation that makes a beat update a template
TEMPLATE_RATE = 0.05         # running-mean weight of a matched beat
DECAY = 0.99                 # template use counts decay per beat
FLOOR = 1e-3                 # residual floor (log features)
QUANTILE = 0.25              # of the window's residuals per lead: noise raises them all, ectopy a few
HELD_TOL_UV = 0.01           # a lead whose samples change by less than this (µV) for FLAT_LEAD_S is held
                             # at one value (an electrode off): after the band-pass it decays to ~0,
                             # which would read as a perfectly clean lead; it is no signal, as NaN
FEATURES = ("log_residual_max", "log_residual_min")
WEIGHTS_FILE = Path(__file__).resolve().parent / "checkpoints" / "vigil-ecg-sqi.json"


@dataclass
class EcgQualityWeights:
    """Logistic regression on :data:`FEATURES`: ``p = sigmoid(coef . f + intercept)``.

    Attributes
    ----------
    coef : (len(FEATURES),) float
    intercept : float
    meta : dict
        Provenance (data, split, metrics) written by :mod:`models.ecg_sqi_fit`.
    """

    coef: np.ndarray
    intercept: float
    meta: dict = field(default_factory=dict)

    def prob(self, f: np.ndarray) -> np.ndarray:
        """(n,) probabilities of (n, len(FEATURES)) features."""
        z = np.asarray(f, np.float64) @ np.asarray(self.coef, np.float64) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.minimum(np.maximum(z, -50.0), 50.0)))   # (np.clip, unwrapped)

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "coef": [float(c) for c in self.coef],
                "intercept": float(self.intercept), "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "EcgQualityWeights":
        if list(d["features"]) != list(FEATURES):
            raise ValueError(f"Invalid ECG quality weights: expected features {list(FEATURES)}, got {d['features']}")
        return cls(np.asarray(d["coef"], np.float64), float(d["intercept"]), d.get("meta", {}))


def load_weights(path: Path | None = None) -> EcgQualityWeights | None:
    """The shipped weights (``vigil-ecg-sqi.json``), or None when absent (shared, read-only)."""
    return load_weights_file(EcgQualityWeights, WEIGHTS_FILE if path is None else path)


class EcgQuality:
    """Streaming beat-template quality of one session (:class:`models.sqi.QualityHead`).

    Parameters
    ----------
    config : ModelConfig
        The ECG model (rate, token length).
    n_channels : int
        Model channels of the session (1 or 2; lead 0 finds the beats, lead 1 while lead 0 is lost).
    weights : EcgQualityWeights or None
        None: :meth:`process` returns the features' placeholder probability 0 (fitting uses
        :meth:`features`).
    """

    def __init__(self, config: ModelConfig, n_channels: int, weights: EcgQualityWeights | None):
        self.fs, self.patch = float(config.sample_rate), int(config.patch_len)
        self.c = int(n_channels)
        self.weights = weights
        self.monitor = RhythmMonitor(self.fs)
        self.rate_lead = RateLead(self.fs) if self.c > 1 else None
        self.pre, self.post = round(PRE_S * self.fs), round(POST_S * self.fs)
        self.window_n = round(WINDOW_S * self.fs)
        self.held_n = round(FLAT_LEAD_S * self.fs)
        self.block = max(1, round(BLOCK_S * self.fs / self.patch)) * self.patch   # samples, whole tokens
        self.keep = max(round(BUFFER_S * self.fs), self.pre + self.post + self.patch, self.block + self.patch)
        self._memo: tuple[list, tuple | None] = ([], None)   # the last window's residuals and features

    # --- state ---------------------------------------------------------------------------------
    def initial_state(self) -> dict[str, np.ndarray]:
        L, c = self.pre + self.post, self.c
        st = {f"m.{k}": v for k, v in self.monitor.initial_state().items()}
        st.update({
            "tail": np.zeros((0, c), np.float32),           # samples of the token not yet complete
            "buf": np.zeros((0, c), np.float64),            # the last ``keep`` samples (NaN = invalid)
            "n": np.asarray(0, np.int64),                   # model samples in complete tokens so far
            "pending": np.zeros((0, 2), np.int64),          # [beat, ready] of beats not yet measured
            "beats": np.zeros(0, np.int64),                 # measured beats of the last WINDOW_S, by sample
            "res": np.zeros((0, c), np.float64),            # (beats, c) residual per lead (NaN: none)
            "tpl": np.zeros((N_TEMPLATES, L, c), np.float64),
            "count": np.zeros((N_TEMPLATES, c), np.float64),
            "rl": RateLead.to_array(RateLead.initial_state()),   # the lead the detector follows
            "held_last": np.zeros(c),                       # each lead's last value and how long it
            "held_run": np.zeros(c, np.int64),              # has been held (models/flatline.py)
        })
        return st

    # --- per chunk -----------------------------------------------------------------------------
    def process(self, y: np.ndarray, mask: np.ndarray, state: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Poor-signal probability of each token completed by ``y`` (see :class:`models.sqi.QualityHead`)."""
        f, ok, state = self.features(y, mask, state)
        n_ok = np.count_nonzero(ok)
        if self.weights is None or not n_ok:
            return np.zeros(len(f)), state
        p = self.weights.prob(f)
        return (p if n_ok == len(ok) else np.where(ok, p, 0.0)), state

    def features(self, y: np.ndarray, mask: np.ndarray, state: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Per completed token: features (n, len(FEATURES)), whether defined (n,) bool, new state.

        The QRS detector runs on whole ``BLOCK_S`` blocks of model samples counted from the
        session's start (its cost is per call; the service's chunks are about 0.25 s): a beat it
        reports at the end ``B`` of a block is *ready* at ``max(B, beat + POST_S)``, a function of
        the signal alone. Token ``k`` (ending at sample ``e_k``) measures the ready beats with
        ``ready <= e_k`` in ready order, then takes the measured beats of ``[e_k - WINDOW_S, e_k)``.
        """
        x = np.where(np.asarray(mask, bool), np.nan, np.asarray(y, np.float64)).reshape(-1, self.c)
        st = dict(state)
        held, st["held_last"], st["held_run"] = flat_samples(    # a lead held at one value is lost
            x, st["held_last"] if "held_last" in st else np.zeros(self.c),
            st["held_run"] if "held_run" in st else np.zeros(self.c, np.int64), self.held_n, tol=HELD_TOL_UV)
        if np.count_nonzero(held):                                  # (cheaper than .any() on a chunk)
            x[held] = np.nan
        x = np.concatenate([st["tail"].astype(np.float64), x]) if len(st["tail"]) else x
        n_tok = len(x) // self.patch
        st["tail"] = x[n_tok * self.patch:].astype(np.float32)
        x = x[:n_tok * self.patch]
        feats, ok = np.zeros((n_tok, len(FEATURES))), np.zeros(n_tok, bool)
        if n_tok == 0:
            return feats, ok, st
        start = int(st["n"])
        buf = np.concatenate([st["buf"], x])
        buf_first = start + len(x) - len(buf)
        pend = st["pending"]
        beats, res = st["beats"].tolist(), st["res"].tolist()     # (Python floats: the same arithmetic)
        tpl, count = st["tpl"], st["count"]       # copied before the first beat measured updates them
        i, last, m = 0, None, None
        for k in range(n_tok):
            end = start + (k + 1) * self.patch
            if end % self.block == 0:                                       # a block is complete
                if m is None:
                    m = {key[2:]: v for key, v in st.items() if key.startswith("m.")}
                block = buf[end - self.block - buf_first:end - buf_first]
                if self.rate_lead is not None:
                    rl = RateLead.from_array(st.get("rl", RateLead.to_array(RateLead.initial_state())))
                    lead = self.rate_lead.select(block[:, :2], rl)
                    st["rl"] = RateLead.to_array(rl)
                else:
                    lead = block[:, 0]
                upd, m = self.monitor.process(lead, end - self.block, m)
                if len(upd.beats):
                    new = np.stack([upd.beats, np.maximum(end, upd.beats + self.post)], 1).astype(np.int64)
                    pend = np.concatenate([pend[i:], new])
                    pend, i = pend[np.lexsort((pend[:, 0], pend[:, 1]))], 0  # by ready, then beat
            while i < len(pend) and pend[i, 1] <= end:
                if tpl is st["tpl"]:
                    tpl, count = tpl.copy(), count.copy()
                b, r = int(pend[i, 0]), int(pend[i, 1])
                a = b - self.pre
                w = buf[a - buf_first:a - buf_first + self.pre + self.post] if a >= max(0, r - self.keep) else None
                at = bisect.bisect_right(beats, b)
                beats.insert(at, b)
                res.insert(at, [_match(w[:, j], tpl[:, :, j], count[:, j]) if w is not None else math.nan
                                for j in range(self.c)])
                i += 1
                last = None
            lo = bisect.bisect_left(beats, end - self.window_n)
            key = (lo, len(beats))
            if key != last:
                f_k, last = self._window_features(res[lo:]), key
            feats[k], ok[k] = (f_k, True) if f_k is not None else (0.0, False)
        if m is not None:
            st.update({f"m.{key}": v for key, v in m.items()})
        lo = bisect.bisect_left(beats, start + len(x) - self.window_n)
        if tpl is st["tpl"]:                    # no beat measured: the window's arrays, cut (the same values)
            st["beats"], st["res"] = st["beats"][lo:], st["res"][lo:]
        else:
            st["beats"] = np.asarray(beats[lo:], np.int64)
            st["res"] = np.asarray(res[lo:], np.float64).reshape(-1, self.c)
        st["pending"], st["tpl"], st["count"] = pend[i:], tpl, count
        st["buf"] = buf[-self.keep:]
        st["n"] = np.asarray(start + len(x), np.int64)
        return feats, ok, st

    def _window_features(self, res: list[list[float]]) -> tuple[float, float] | None:
        """:func:`_window_features`, remembered: a window's beats usually outlast a chunk, and its
        features are a function of the residuals' values alone."""
        memo = self._memo
        if res != memo[0]:                      # (NaN never compares equal: recomputed, as it should)
            memo = self._memo = (res, _window_features(res))
        return memo[1]


def _window_features(res: list[list[float]]) -> tuple[float, float] | None:
    """:data:`FEATURES` of the residuals (beats, c) of one window, or None when undefined."""
    if len(res) < MIN_BEATS:
        return None
    med = []
    for lead in zip(*res):
        v = [r for r in lead if r == r]                                        # finite (not NaN)
        if v:
            med.append(math.log(max(_quantile(v, QUANTILE), FLOOR)))
    return (max(med), min(med)) if med else None


def _quantile(v: list[float], q: float) -> float:
    """The ``q`` quantile of ``v`` (linear interpolation, as ``numpy.quantile``)."""
    v = sorted(v)
    pos = q * (len(v) - 1)
    i = int(pos)
    return v[i] if i + 1 >= len(v) else v[i] + (pos - i) * (v[i + 1] - v[i])


def _match(w: np.ndarray, tpl: np.ndarray, count: np.ndarray) -> float:
    """Residual of beat window ``w`` (L,) against the best of templates ``tpl`` (K, L), updating
    ``tpl`` and ``count`` (K,) in place; NaN when ``w`` holds invalid samples or no template yet.

    The reductions are the ufuncs ``numpy.mean`` / ``ptp`` / ``median`` call, without their Python
    wrappers (a beat window is short: the wrappers cost more than the arithmetic); same bits."""
    n = len(w)
    if np.count_nonzero(np.isfinite(w)) < n:
        return math.nan
    w = w - median(w)
    count *= DECAY
    used = count > 0
    n_used = np.count_nonzero(used)
    best, r = -1, math.nan
    if n_used:
        if n_used == len(count):                # all in use (after the first few beat shapes): rows in order
            idx, t = range(n_used), np.ascontiguousarray(tpl)                   # the rows of tpl[idx]
        else:
            idx = np.flatnonzero(used)
            t = tpl[idx]                                                        # (k, L)
        size = np.maximum.reduce(t, axis=1) - np.minimum.reduce(t, axis=1)      # (k,) peak to peak
        rr = np.sqrt(np.add.reduce((t - w) ** 2, axis=1) / n) / np.maximum(size, 1e-9)   # (k,)
        i = int(rr.argmin())
        best, r = int(idx[i]), float(rr[i])
        wc, tc = w - np.add.reduce(w) / n, t[i] - np.add.reduce(t[i]) / n       # minus their means
        corr = float(wc @ tc / (math.sqrt(float(wc @ wc) * float(tc @ tc)) + 1e-12))
        if corr < MATCH:
            best = -1
    if best >= 0:
        tpl[best] += TEMPLATE_RATE * (w - tpl[best])
        count[best] += 1.0
    else:
        j = int(count.argmin())
        tpl[j], count[j] = w, 1.0
    return r
