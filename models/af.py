"""Causal, streaming atrial-fibrillation detector on RR intervals.

AF is an irregularly irregular rhythm: the RR intervals vary from beat to beat without pattern.
Monitors and Holter software find it from the beat series (Tateno & Glass 2001; Dash et al. 2009;
Petrėnas et al. 2015); this module does the same on the beats of the QRS detector
(:mod:`models.qrs`), with the ventricular beats of :mod:`models.beats` taken out first (a PVC and
its compensatory pause are irregular, but not AF).

Per beat:

1. the RR interval ending at the beat (s) is *clean* when neither of its beats is ventricular
   (p >= :data:`ECTOPIC_P`) and it lies in :data:`RR_RANGE_S`; the last :data:`WINDOW_BEATS`
   clean intervals are kept (a gap longer than :data:`RESET_GAP_S` between beats starts afresh);
2. from at least :data:`MIN_RR` of them, :data:`FEATURES`: RMSSD and median absolute successive
   difference relative to the mean / median RR, the turning-point ratio, the Shannon entropy of
   the RR histogram (:data:`ENTROPY_BINS` bins, divided by its maximum), the fraction of
   successive changes larger than :data:`BIG_CHANGE` of the RR, the lag-1 and lag-2
   autocorrelations (bigeminy and trigeminy are regular patterns, AF is not), the log heart rate
   (bpm), and the fraction of ventricular beats among the last :data:`WINDOW_BEATS` beats;
3. a small MLP (weights fitted by :mod:`models.af_fit` on CinC 2017, stored as JSON) gives the
   probability of AF.

Episode rule (its constants are stored with the weights): AF *begins* once the probability has
stayed >= ``threshold`` for ``on_s`` seconds (it is *established* there; the onset is
``back_beats`` beats before the first beat of that stretch, since the window lags the rhythm);
it *ends* once it has stayed below for ``off_s`` (the end is ``back_beats`` beats before the
first beat below), or at a gap.

All state is a dict of numpy arrays: any chunking of the beats gives the same probabilities and
episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.mlp import TanhMLP, load_weights_file

WINDOW_BEATS = 24          # clean RR intervals in the window
MIN_RR = 12                # fewest clean intervals that give a probability
RR_RANGE_S = (0.2, 2.0)    # a clean RR interval lies in this range, s
ECTOPIC_P = 0.9            # ventricular-beat probability that makes a beat ectopic
BIG_CHANGE = 0.1           # a "big" successive change: |dRR| > this fraction of the RR
ENTROPY_BINS = 8
RESET_GAP_S = 10.0         # beats further apart than this (lost signal) start a new window, s
WEIGHTS_FILE = Path(__file__).resolve().parent / "checkpoints" / "vigil-af.json"

FEATURES = ("nrmssd", "nmad", "turning_points", "entropy", "big_changes", "autocorr_1", "autocorr_2",
            "log_hr", "ectopic_fraction")


def rr_features(rr, ectopic_fraction: float) -> np.ndarray:
    """Irregularity features of a window of clean RR intervals.

    Plain Python on purpose: on a window of 24 values the numpy calls cost ten times the
    arithmetic, and this runs once per beat per session.

    Parameters
    ----------
    rr : sequence of float
        ``(k,)`` RR intervals in s, oldest first, ``k >= 3``.
    ectopic_fraction : float
        Fraction of ventricular beats among the window's beats.

    Returns
    -------
    np.ndarray
        ``(F,)`` in the order of :data:`FEATURES`.
    """
    r = [float(v) for v in rr]
    k = len(r)
    d = [b - a for a, b in zip(r, r[1:])]
    mean, med = sum(r) / k, _median(r)
    nrmssd = math.sqrt(sum(v * v for v in d) / len(d)) / mean
    nmad = _median([abs(v) for v in d]) / med
    turning = sum((b - a) * (b - c) > 0 for a, b, c in zip(r, r[1:], r[2:])) / max(1, k - 2)
    lo, span = min(r), max(r) - min(r) + 1e-9
    counts = [0] * ENTROPY_BINS
    for v in r:
        counts[min(int((v - lo) / span * ENTROPY_BINS), ENTROPY_BINS - 1)] += 1
    entropy = -sum(c / k * math.log2(c / k) for c in counts if c) / math.log2(ENTROPY_BINS)
    big = sum(abs(v) / b > BIG_CHANGE for v, b in zip(d, r[1:])) / len(d)
    z = [v - mean for v in r]
    den = sum(v * v for v in z) + 1e-12
    ac1 = sum(a * b for a, b in zip(z, z[1:])) / den
    ac2 = sum(a * b for a, b in zip(z, z[2:])) / den
    return np.array([nrmssd, nmad, turning, entropy, big, ac1, ac2, math.log(60.0 / med), ectopic_fraction])


def _median(v: list[float]) -> float:
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


@dataclass
class AfWeights(TanhMLP):
    """The AF classifier (a :class:`models.mlp.TanhMLP` on :data:`FEATURES`) and its episode rule.

    Attributes
    ----------
    threshold : float
        Probability at or above which a beat's window looks like AF.
    on_s, off_s : float
        Seconds above (below) the threshold that begin (end) an episode.
    back_beats : int
        Beats by which onsets and ends are moved back (the window's lag).
    meta : dict
        Provenance (data, split, metrics) written by :mod:`models.af_fit`.
    """

    threshold: float
    on_s: float
    off_s: float
    back_beats: int
    meta: dict

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "window_beats": WINDOW_BEATS, **self.params_json(),
                "threshold": float(self.threshold), "on_s": float(self.on_s), "off_s": float(self.off_s),
                "back_beats": int(self.back_beats), "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "AfWeights":
        if list(d["features"]) != list(FEATURES) or int(d.get("window_beats", -1)) != WINDOW_BEATS:
            raise ValueError(f"Invalid AF weights: expected features {list(FEATURES)} over {WINDOW_BEATS} beats, "
                             f"got {d['features']} over {d.get('window_beats')}")
        return cls(**TanhMLP.params_from_json(d), threshold=float(d["threshold"]), on_s=float(d["on_s"]),
                   off_s=float(d["off_s"]), back_beats=int(d["back_beats"]), meta=d.get("meta", {}))


def load_weights(path: str | Path = WEIGHTS_FILE) -> AfWeights | None:
    """The shipped AF detector, or None when its file is absent (shared, read-only)."""
    return load_weights_file(AfWeights, path)


@dataclass
class AfEvent:
    """An AF-episode transition: ``end_sample`` None when it began (at ``established``)."""

    onset_sample: int
    established: int
    end_sample: int | None = None


class AfDetector:
    """Streaming RR features, AF probabilities and AF episodes for one session.

    Parameters
    ----------
    fs : float
        Session sample rate, Hz (beats are sample indices).
    weights : AfWeights, optional
        The fitted classifier; without it :meth:`process` returns features only (for fitting).
    """

    def __init__(self, fs: float, weights: AfWeights | None = None):
        self.fs, self.weights = float(fs), weights
        self.back = weights.back_beats if weights is not None else 0

    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh state (dict of numpy arrays)."""
        return {
            "last_beat": np.asarray(-1, np.int64),
            "last_ectopic": np.asarray(False),
            "rr": np.zeros(0),                          # (<= WINDOW_BEATS,) clean RR, s
            "ectopic": np.zeros(0, bool),               # (<= WINDOW_BEATS,) last beats' flags
            "recent": np.zeros(0, np.int64),            # (<= back + 1,) last beat samples
            "onset": np.asarray(-1, np.int64),          # the current episode's onset (-1: none)
            "above": np.asarray(-1, np.int64),          # first beat of the stretch >= threshold
            "above_onset": np.asarray(-1, np.int64),    # ... moved back by ``back_beats``
            "below": np.asarray(-1, np.int64),          # first beat below, within an episode
            "below_end": np.asarray(-1, np.int64),      # ... moved back by ``back_beats``
        }

    def process(self, beats: list[tuple[int, float]], state: dict[str, np.ndarray], threshold: float | None = None
                ) -> tuple[list[tuple[int, np.ndarray | None, float]], list[AfEvent], dict]:
        """Consume classified beats.

        Parameters
        ----------
        beats : list of (sample, p_ventricular)
            Absolute beat samples, increasing and after earlier calls' beats, with their
            ventricular probability (nan: unknown, counted as not ectopic).
        state : dict
            From :meth:`initial_state` or a previous call; not modified.
        threshold : float, optional
            AF probability threshold (default: the weights').

        Returns
        -------
        scored : list of (sample, features (F,) or None, p_af)
            ``p_af`` is nan (and the features None) until :data:`MIN_RR` clean intervals are in
            the window.
        events : list of AfEvent
        state : dict
        """
        st = _unpack(state)
        thr = threshold if threshold is not None else (self.weights.threshold if self.weights else 0.5)
        out, events = [], []
        for b, pv in beats:
            b, ectopic = int(b), bool(pv >= ECTOPIC_P)
            last = st["last_beat"]
            if last >= 0 and b - last > RESET_GAP_S * self.fs:      # lost signal: a new window
                if self.weights is not None:
                    self._end(st, last, events)
                st["rr"], st["ectopic"], st["recent"], last = [], [], [], -1
            if last >= 0 and not ectopic and not st["last_ectopic"]:
                rr = (b - last) / self.fs
                if RR_RANGE_S[0] <= rr <= RR_RANGE_S[1]:
                    st["rr"] = (st["rr"] + [rr])[-WINDOW_BEATS:]
            st["ectopic"] = (st["ectopic"] + [ectopic])[-WINDOW_BEATS:]
            st["recent"] = (st["recent"] + [b])[-(self.back + 1):]
            st["last_beat"], st["last_ectopic"] = b, ectopic
            f = (rr_features(st["rr"], sum(st["ectopic"]) / len(st["ectopic"])) if len(st["rr"]) >= MIN_RR
                 else None)
            # one row at a time: a batched matrix product may round differently with the batch's
            # size, and the probability must not depend on how the stream was chunked
            p = float(self.weights.prob(f)[0]) if self.weights is not None and f is not None else float("nan")
            out.append((b, f, p))
            if self.weights is not None:
                self._step(st, b, p, thr, st["recent"][0], events)
        return out, events, _pack(st)

    def _step(self, st: dict, b: int, p: float, thr: float, first_recent: int, events: list[AfEvent]) -> None:
        """Advance the episode rule with the beat at ``b``, its probability ``p`` and the beat
        ``back_beats`` before it (``first_recent``)."""
        w = self.weights
        onset = st["onset"]
        if p >= thr:
            st["below"] = -1
            if st["above"] < 0:
                st["above"], st["above_onset"] = b, first_recent
            if onset < 0 and b - st["above"] >= w.on_s * self.fs:
                st["onset"] = st["above_onset"]
                events.append(AfEvent(st["above_onset"], b))
            return
        st["above"] = -1
        if onset < 0:
            return
        if st["below"] < 0:
            st["below"], st["below_end"] = b, max(onset + 1, first_recent)
        if b - st["below"] >= w.off_s * self.fs:
            events.append(AfEvent(onset, onset, st["below_end"]))
            st["onset"], st["below"] = -1, -1

    def _end(self, st: dict, last: int, events: list[AfEvent]) -> None:
        """End a running episode at a gap (after the last beat ``last``) and reset the rule."""
        onset = st["onset"]
        if onset >= 0:
            events.append(AfEvent(onset, onset, st["below_end"] if st["below"] >= 0 else last + 1))
        for k in RULE_KEYS:
            st[k] = -1


RULE_KEYS = ("onset", "above", "above_onset", "below", "below_end")


def _unpack(state: dict[str, np.ndarray]) -> dict:
    """The state as Python values (lists and scalars) to work on."""
    st = {k: int(state[k]) for k in ("last_beat", *RULE_KEYS)}
    st["last_ectopic"] = bool(state["last_ectopic"])
    st["rr"] = np.asarray(state["rr"], np.float64).tolist()
    st["ectopic"] = np.asarray(state["ectopic"], bool).tolist()
    st["recent"] = np.asarray(state["recent"], np.int64).tolist()
    return st


def _pack(st: dict) -> dict[str, np.ndarray]:
    """The state as a dict of numpy arrays (:meth:`AfDetector.initial_state`'s layout)."""
    out = {k: np.asarray(st[k], np.int64) for k in ("last_beat", *RULE_KEYS)}
    out["last_ectopic"] = np.asarray(st["last_ectopic"])
    out["rr"] = np.asarray(st["rr"], np.float64)
    out["ectopic"] = np.asarray(st["ectopic"], bool)
    out["recent"] = np.asarray(st["recent"], np.int64)
    return out
