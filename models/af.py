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

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.mlp import TanhMLP

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


def rr_features(rr: np.ndarray, ectopic_fraction: float) -> np.ndarray:
    """Irregularity features of a window of clean RR intervals.

    Parameters
    ----------
    rr : np.ndarray
        ``(k,)`` RR intervals in s, oldest first, ``k >= 3``.
    ectopic_fraction : float
        Fraction of ventricular beats among the window's beats.

    Returns
    -------
    np.ndarray
        ``(F,)`` in the order of :data:`FEATURES`.
    """
    rr = np.asarray(rr, np.float64)
    d = np.diff(rr)
    mean, med = float(rr.mean()), float(np.median(rr))
    nrmssd = float(np.sqrt(np.mean(d ** 2))) / mean
    nmad = float(np.median(np.abs(d))) / med
    turning = float(np.sum((rr[1:-1] - rr[:-2]) * (rr[1:-1] - rr[2:]) > 0)) / max(1, len(rr) - 2)
    hist, _ = np.histogram((rr - rr.min()) / (np.ptp(rr) + 1e-9), bins=ENTROPY_BINS, range=(0.0, 1.0))
    p = hist[hist > 0] / len(rr)
    entropy = float(-np.sum(p * np.log2(p))) / np.log2(ENTROPY_BINS)
    big = float(np.mean(np.abs(d) / rr[1:] > BIG_CHANGE))
    z = rr - mean
    den = float(np.dot(z, z)) + 1e-12
    ac1, ac2 = float(np.dot(z[1:], z[:-1])) / den, float(np.dot(z[2:], z[:-2])) / den
    return np.array([nrmssd, nmad, turning, entropy, big, ac1, ac2, np.log(60.0 / med), ectopic_fraction])


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

    @classmethod
    def load(cls, path: str | Path = WEIGHTS_FILE) -> "AfWeights":
        return cls.from_json(json.loads(Path(path).read_text()))


def load_weights(path: str | Path = WEIGHTS_FILE) -> AfWeights | None:
    """The shipped AF detector, or None when its file is absent."""
    p = Path(path)
    return AfWeights.load(p) if p.exists() else None


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
        st = {k: np.array(v, copy=True) for k, v in state.items()}
        thr = threshold if threshold is not None else (self.weights.threshold if self.weights else 0.5)
        out, events = [], []
        for b, pv in beats:
            b, ectopic = int(b), bool(pv >= ECTOPIC_P)
            last = int(st["last_beat"])
            if last >= 0 and b - last > RESET_GAP_S * self.fs:      # lost signal: a new window
                self._end(st, last, events)
                for k in ("rr", "ectopic", "recent"):
                    st[k] = st[k][:0]
                last = -1
            if last >= 0 and not ectopic and not bool(st["last_ectopic"]):
                rr = (b - last) / self.fs
                if RR_RANGE_S[0] <= rr <= RR_RANGE_S[1]:
                    st["rr"] = np.append(st["rr"], rr)[-WINDOW_BEATS:]
            st["ectopic"] = np.append(st["ectopic"], ectopic)[-WINDOW_BEATS:]
            st["recent"] = np.append(st["recent"], b)[-(self.back + 1):]
            st["last_beat"], st["last_ectopic"] = np.asarray(b, np.int64), np.asarray(ectopic)
            if len(st["rr"]) >= MIN_RR:
                f = rr_features(st["rr"], float(st["ectopic"].mean()))
                p = float(self.weights.prob(f)[0]) if self.weights is not None else float("nan")
            else:
                f, p = None, float("nan")
            out.append((b, f, p))
            if self.weights is not None:
                self._step(st, b, p, thr, events)
        return out, events, st

    def _step(self, st: dict, b: int, p: float, thr: float, events: list[AfEvent]) -> None:
        """Advance the episode rule with the beat at ``b`` and its probability ``p``."""
        w = self.weights
        onset = int(st["onset"])
        if p >= thr:
            st["below"] = np.asarray(-1, np.int64)
            if int(st["above"]) < 0:
                st["above"], st["above_onset"] = np.asarray(b, np.int64), np.asarray(int(st["recent"][0]), np.int64)
            if onset < 0 and b - int(st["above"]) >= w.on_s * self.fs:
                st["onset"] = st["above_onset"].copy()
                events.append(AfEvent(int(st["above_onset"]), b))
            return
        st["above"] = np.asarray(-1, np.int64)
        if onset < 0:
            return
        if int(st["below"]) < 0:
            st["below"] = np.asarray(b, np.int64)
            st["below_end"] = np.asarray(max(onset + 1, int(st["recent"][0])), np.int64)
        if b - int(st["below"]) >= w.off_s * self.fs:
            events.append(AfEvent(onset, onset, int(st["below_end"])))
            st["onset"], st["below"] = np.asarray(-1, np.int64), np.asarray(-1, np.int64)

    def _end(self, st: dict, last: int, events: list[AfEvent]) -> None:
        """End a running episode at a gap (after the last beat ``last``) and reset the rule."""
        onset = int(st["onset"])
        if onset >= 0:
            end = int(st["below_end"]) if int(st["below"]) >= 0 else last + 1
            events.append(AfEvent(onset, onset, end))
        for k in ("onset", "above", "above_onset", "below", "below_end"):
            st[k] = np.asarray(-1, np.int64)
