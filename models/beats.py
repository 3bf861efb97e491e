"""Causal, streaming ventricular-beat classifier and VT-run detector.

The QRS detector (:mod:`models.qrs`) finds the beats; this module looks at each beat's shape and
timing, on up to two leads, and decides whether it is ventricular; five or more ventricular beats
in a row faster than 100 bpm are a VT run (the MIT-BIH / PhysioNet-CinC 2015 definition, DESIGN
§3 and §7). It is how bedside monitors find VT (beat classification, then run rules), and it
works on morphology the SSM never saw, since it compares each beat with the patient's own beats.

Per lead:

1. band-pass 1-30 Hz (Butterworth, ``sosfilt`` with a carried ``zi``); the last
   ``BUFFER_S`` seconds are kept;
2. a beat's window is ``[-PRE_S, +POST_S]`` around its sample, aligned within ``+-LAG_S``
   (steps of 2 samples) to the best-matching template, its median removed;
3. up to ``N_TEMPLATES`` templates with decayed counts: a beat that correlates >= ``MATCH`` with
   one updates it (running mean), any other starts a new one (replacing the least used). The
   *dominant* template (largest count) stands for the patient's usual beat.

Features per beat (:data:`FEATURES`): per lead the correlation with the dominant template, the
log peak-to-peak ratio to it, the QRS width (where the slope exceeds a quarter of its maximum,
s), its excess over the dominant template's width, whether the beat matched the dominant
template; and the RR interval (s) with its ratio to the median of the last 8. A small MLP
(weights fitted by :mod:`models.beats_fit` on MIT-BIH, stored as JSON) gives the probability
that the beat is ventricular.

A VT run begins at the first beat of 5 consecutive ventricular beats whose mean rate is > 100 bpm
(it is *established* at the 5th) and ends at the first beat that is not ventricular (``end`` =
that beat) or where the signal is lost.

All state is a dict of numpy arrays; any chunking gives the same classes and runs (a beat is
classified once its window has arrived, so it may wait one call).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

BAND_HZ = (1.0, 30.0)      # morphology band, Hz
PRE_S, POST_S = 0.10, 0.16  # beat window around the beat's sample, s
LAG_S = 0.03                # alignment search, s
BUFFER_S = 4.0              # filtered signal kept, s (search-back beats arrive up to ~3.4 s late)
N_TEMPLATES = 8
MATCH = 0.9                 # correlation that makes a beat one of a template's
DECAY = 0.995               # template counts decay per beat
TEMPLATE_RATE = 0.1         # running-mean weight of a matched beat
RR_KEEP = 8
VT_BEATS, VT_BPM = 5, 100.0  # a VT run: >= 5 ventricular beats, mean rate > 100 bpm ...
RUN_SIMILARITY = 0.85  # ... alike: median correlation of consecutive beats (lead a) >= this
WEIGHTS_FILE = Path(__file__).resolve().parent / "checkpoints" / "vigil-beats.json"

LEAD_FEATURES = ("corr_dominant", "log_amplitude_ratio", "width_s", "width_excess_s", "is_dominant")
FEATURES = tuple(f"{f}_{lead}" for lead in ("a", "b") for f in LEAD_FEATURES) + ("rr_s", "rr_ratio")


@dataclass
class BeatWeights:
    """The beat classifier: standardisation and a 1-hidden-layer MLP (tanh), as fitted.

    Attributes
    ----------
    mean, scale : np.ndarray
        ``(F,)`` feature standardisation.
    w1 : np.ndarray
        ``(F, H)``; ``b1`` ``(H,)``; ``w2`` ``(H,)``; ``b2`` float.
    threshold : float
        Probability at or above which a beat is ventricular.
    meta : dict
        Provenance (data, split, metrics) written by :mod:`models.beats_fit`.
    """

    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float
    threshold: float
    meta: dict

    def prob(self, f: np.ndarray) -> np.ndarray:
        """(n,) probability of ventricular from (n, F) features (nan features count as 0 after scaling)."""
        z = np.nan_to_num((np.atleast_2d(f) - self.mean) / self.scale)
        h = np.tanh(z @ self.w1 + self.b1)
        return 1.0 / (1.0 + np.exp(-(h @ self.w2 + self.b2)))

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "w1": self.w1.tolist(), "b1": self.b1.tolist(), "w2": self.w2.tolist(), "b2": float(self.b2),
                "threshold": float(self.threshold), "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "BeatWeights":
        if list(d["features"]) != list(FEATURES):
            raise ValueError(f"Invalid beat weights: expected features {list(FEATURES)}, got {d['features']}")
        a = {k: np.asarray(d[k], np.float64) for k in ("mean", "scale", "w1", "b1", "w2")}
        return cls(**a, b2=float(d["b2"]), threshold=float(d["threshold"]), meta=d.get("meta", {}))

    @classmethod
    def load(cls, path: str | Path = WEIGHTS_FILE) -> "BeatWeights":
        return cls.from_json(json.loads(Path(path).read_text()))


@dataclass
class RunEvent:
    """A VT-run transition: ``end_sample`` None when it began (``established`` = its 5th beat)."""

    onset_sample: int
    established: int
    end_sample: int | None = None


class BeatClassifier:
    """Streaming per-beat features, ventricular classes and VT runs for one session.

    Parameters
    ----------
    fs : float
        Session sample rate, Hz.
    n_leads : int
        Leads given to :meth:`process` (1 or 2; a single lead stands in for both).
    weights : BeatWeights, optional
        The fitted classifier; without it :meth:`process` still returns features (for fitting).
    """

    def __init__(self, fs: float, n_leads: int = 2, weights: BeatWeights | None = None):
        self.fs, self.n_leads, self.weights = float(fs), min(2, max(1, int(n_leads))), weights
        self.sos = butter(2, BAND_HZ, btype="bandpass", fs=self.fs, output="sos")
        self.zi_unit = sosfilt_zi(self.sos)
        self.pre, self.post = round(PRE_S * self.fs), round(POST_S * self.fs)
        self.lag = max(1, round(LAG_S * self.fs))
        self.lags = np.arange(-self.lag, self.lag + 1, 2)
        self.width = self.pre + self.post + 1
        self.window_index = self.lags[:, None] + self.lag + np.arange(self.width)[None]  # (lags, W) into a window
        self.keep = round(BUFFER_S * self.fs) + self.pre + self.lag

    # ------------------------------------------------------------------ state
    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh state (dict of numpy arrays)."""
        L, W = self.n_leads, self.width
        return {
            "end": np.asarray(-1, np.int64),              # next sample expected (-1: none yet)
            "buf": np.zeros((0, L)),                       # (k, L) filtered signal, nan = missing
            "zi": np.zeros((L, self.sos.shape[0], 2)),
            "prev_valid": np.zeros(L, bool),
            "templates": np.zeros((L, N_TEMPLATES, W)),
            "counts": np.zeros((L, N_TEMPLATES)),
            "widths": np.zeros((L, N_TEMPLATES)),
            "pending": np.zeros(0, np.int64),              # beats waiting for their window
            "last_beat": np.asarray(-1, np.int64),
            "rr": np.zeros(0),                              # (<= RR_KEEP,) s
            "run": np.zeros(0, np.int64),                   # current run of ventricular beats (samples)
            "vt_onset": np.asarray(-1, np.int64),
            "prev_seg": np.zeros(W),                       # the last beat's aligned window, lead a
            "similarity": np.asarray(np.nan),              # its correlation with the one before
            "run_sim": np.zeros(0),                         # similarities within the current run
        }

    # ------------------------------------------------------------------ main entry
    def process(self, x: np.ndarray, first_sample: int, beats: np.ndarray, state: dict[str, np.ndarray],
                flush: bool = False, threshold: float | None = None
                ) -> tuple[list[tuple[int, np.ndarray, float]], list[RunEvent], dict]:
        """Consume a chunk and the beats the QRS detector decided in it.

        Parameters
        ----------
        x : np.ndarray
            ``(n, c)`` raw samples (any unit; nan = missing); lead ``a`` is column 0, lead ``b``
            column 1 when ``n_leads`` is 2 (column 0 again when ``c`` is 1).
        first_sample : int
            Absolute index of ``x[0]`` (a later start than expected is a gap).
        beats : np.ndarray
            ``(m,)`` absolute beat samples, increasing, all after earlier calls' beats.
        state : dict
            From :meth:`initial_state` or a previous call; not modified.
        flush : bool
            End of the stream: beats whose window is incomplete are dropped.
        threshold : float, optional
            Probability at or above which a beat is ventricular (default: the weights').

        Returns
        -------
        classified : list of (sample, features (F,), p_ventricular, similarity to the previous beat)
        events : list of RunEvent
        state : dict
        """
        st = {k: np.array(v, copy=True) for k, v in state.items()}
        x = np.asarray(x, np.float64)
        if x.ndim == 1:
            x = x[:, None]
        cols = [0, 1 if x.shape[1] > 1 else 0][: self.n_leads]
        x = x[:, cols]
        end = int(st["end"])
        if end >= 0 and first_sample > end:              # a gap: missing samples
            x = np.concatenate([np.full((first_sample - end, x.shape[1]), np.nan), x])
            first_sample = end
        elif end < 0:
            end = first_sample
        y = self._filter(x, st)
        buf = np.concatenate([st["buf"], y]) if len(y) else st["buf"]   # the whole chunk, for its beats
        new_end = first_sample + len(x)
        st["buf"], st["end"] = buf[-self.keep:], np.asarray(new_end, np.int64)
        buf_start = new_end - len(buf)
        todo = np.concatenate([st["pending"], np.asarray(beats, np.int64)])
        ready = todo + self.post + self.lag < new_end
        out, events = [], []
        for b in todo[ready].tolist():
            f = self._features(int(b), buf, buf_start, st)
            p = float(self.weights.prob(f)[0]) if self.weights is not None and f is not None else float("nan")
            sim = float(st["similarity"]) if f is not None else float("nan")
            if f is not None:
                out.append((int(b), f, p, sim))
            self._run(st, int(b), p, sim, events, threshold)
        st["pending"] = np.zeros(0, np.int64) if flush else todo[~ready]
        return out, events, st

    # ------------------------------------------------------------------ parts
    def _filter(self, x: np.ndarray, st: dict) -> np.ndarray:
        """Band-pass each lead over its valid runs; nan where missing. ``(n, L)``."""
        y = np.full(x.shape, np.nan)
        for j in range(x.shape[1]):
            v = np.isfinite(x[:, j]) & (np.abs(x[:, j]) < 1e15)
            if not v.any():
                st["prev_valid"][j] = False
                continue
            edges = np.flatnonzero(np.diff(v.astype(np.int8))) + 1
            starts, stops = np.concatenate(([0], edges)), np.concatenate((edges, [len(v)]))
            zi = st["zi"][j]
            for i0, i1 in zip(starts, stops):
                if not v[i0]:
                    continue
                seg = x[i0:i1, j]
                if i0 > 0 or not st["prev_valid"][j]:
                    zi = self.zi_unit * seg[0]
                y[i0:i1, j], zi = sosfilt(self.sos, seg, zi=zi)
            st["zi"][j] = zi
            st["prev_valid"][j] = bool(v[-1])
        return y

    def _features(self, b: int, buf: np.ndarray, buf_start: int, st: dict) -> np.ndarray | None:
        """Features (F,) of the beat at ``b`` (updating the templates and RR), None without a window."""
        lo = b - self.pre - self.lag - buf_start
        hi = b + self.post + self.lag + 1 - buf_start
        if lo < 0 or hi > len(buf) or not np.isfinite(buf[lo:hi]).all():
            st["last_beat"], st["rr"] = np.asarray(-1, np.int64), np.zeros(0)
            return None
        feats = []
        for j in range(buf.shape[1]):
            segs = buf[lo:hi, j][self.window_index]
            segs = segs - np.median(segs, axis=1, keepdims=True)
            lead, seg = self._lead(segs, st, j)
            feats.append(lead)
            if j == 0:
                prev = st["prev_seg"]
                st["similarity"] = np.asarray(
                    float(np.dot(seg, prev) / (np.linalg.norm(seg) * np.linalg.norm(prev) + 1e-12)) if prev.any()
                    else np.nan)
                st["prev_seg"] = seg
        if len(feats) == 1:
            feats.append(feats[0])
        last = int(st["last_beat"])
        rr_hist = st["rr"]
        if last >= 0:
            rr = (b - last) / self.fs
            ratio = rr / float(np.median(rr_hist)) if len(rr_hist) else 1.0
            st["rr"] = np.concatenate([rr_hist, [rr]])[-RR_KEEP:]
        else:
            rr, ratio = np.nan, np.nan
        st["last_beat"] = np.asarray(b, np.int64)
        return np.asarray(feats[0] + feats[1] + [rr, ratio], np.float64)

    def _lead(self, segs: np.ndarray, st: dict, j: int) -> tuple[list[float], np.ndarray]:
        """One lead's features from the beat's windows ``segs`` (lags, W), and the best-aligned
        window (W,); updates the templates."""
        T, cnt, wid = st["templates"][j], st["counts"][j], st["widths"][j]
        nrm = np.linalg.norm(segs, axis=1) + 1e-12
        used = int((cnt > 0).sum())
        if used:
            C = (segs @ T[:used].T) / (nrm[:, None] * (np.linalg.norm(T[:used], axis=1)[None] + 1e-12))
            li, ti = np.unravel_index(int(np.argmax(C)), C.shape)
            best = float(C[li, ti])
        else:
            li, ti, best = len(self.lags) // 2, -1, -1.0
        seg = segs[li]
        slope = np.abs(np.diff(seg))
        above = np.flatnonzero(slope > 0.25 * slope.max()) if slope.max() > 0 else np.zeros(0, int)
        w = (above[-1] - above[0]) / self.fs if len(above) else 0.0
        cnt *= DECAY
        if best >= MATCH:
            T[ti] = (1 - TEMPLATE_RATE) * T[ti] + TEMPLATE_RATE * seg
            wid[ti] = (1 - TEMPLATE_RATE) * wid[ti] + TEMPLATE_RATE * w
            cnt[ti] += 1.0
            m = ti
        else:
            m = used if used < N_TEMPLATES else int(np.argmin(cnt))
            T[m], wid[m], cnt[m] = seg, w, 1.0
        dom = int(np.argmax(cnt))
        cd = float(np.max((segs @ T[dom]) / (nrm * (np.linalg.norm(T[dom]) + 1e-12))))
        amp = float(np.log((np.ptp(seg) + 1e-12) / (np.ptp(T[dom]) + 1e-12)))
        return [cd, amp, w, w - float(wid[dom]), float(m == dom)], seg

    def _run(self, st: dict, b: int, p: float, sim: float, events: list[RunEvent], threshold: float | None) -> None:
        """Advance the VT-run rule with the beat at ``b`` (``p``: its probability, nan: unknown;
        ``sim``: its correlation with the previous beat on lead a)."""
        thr = threshold if threshold is not None else (self.weights.threshold if self.weights is not None else 0.5)
        onset = int(st["vt_onset"])
        if not (p >= thr):                                # not ventricular (or no window): the run ends
            if onset >= 0:
                events.append(RunEvent(onset, onset, b))
            st["run"], st["vt_onset"] = np.zeros(0, np.int64), np.asarray(-1, np.int64)
            st["run_sim"] = np.zeros(0)
            return
        run = np.concatenate([st["run"], [b]])
        run_sim = st["run_sim"] = np.concatenate([st["run_sim"], [sim]])[-(VT_BEATS - 1):] if len(st["run"]) else np.zeros(0)
        if onset < 0 and len(run) >= VT_BEATS:
            k = run[-VT_BEATS:]
            bpm = 60.0 * self.fs * (VT_BEATS - 1) / max(1, int(k[-1] - k[0]))
            similar = float(np.median(np.nan_to_num(run_sim, nan=-1.0))) >= RUN_SIMILARITY
            if bpm > VT_BPM and similar:
                st["vt_onset"] = np.asarray(int(k[0]), np.int64)
                events.append(RunEvent(int(k[0]), b))
        st["run"] = run[-VT_BEATS:]


def load_weights(path: str | Path = WEIGHTS_FILE) -> BeatWeights | None:
    """The shipped beat classifier, or None when its file is absent."""
    p = Path(path)
    return BeatWeights.load(p) if p.exists() else None
