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

A beat is ventricular when its probability reaches the threshold (0.9), or when it leans
ventricular (p >= ``GATE_P``) and the SSM's own ``vt`` output (:mod:`models.network`) reaches
``GATE_VT`` within ``[-GATE_PRE_S, +GATE_POST_S]`` of it (:class:`VtGate`): the network, trained on
CinC 2015 ICU alarms as well as MIT-BIH, confirms a beat the classifier is unsure of; alone it
raises too many false VT runs on PVC-dense records (MIT-BIH 208), and the run rule below still
applies. A beat then waits until the network's outputs cover ``GATE_POST_S`` after it.

A VT run begins at the first beat of 5 consecutive ventricular beats whose mean rate is > 100 bpm
and that are alike (it is *established* at the 5th); or of 5 consecutive beats > 100 bpm with
p >= ``STRONG_P`` when the network's ``vt`` output reaches ``STRONG_VT`` near one of them (a
*confident network* waives the likeness: polymorphic VT, or wide complexes the QRS detector marks
at different points); or at the first beat of ``ALT_BEATS``
beats of an *alternating* (bidirectional) rhythm > 100 bpm: two morphologies taking turns, each
beat like the one two back on both leads and unlike the one before, every other beat leaning
ventricular (p >= ``ALT_P``) and the others not the patient's dominant beat on both leads (a
bidirectional VT whose every other beat resembles the dominant beat on one lead is otherwise
called ventricular only every other beat, so 5 in a row never form); or at the first of
``REGULAR_BEATS`` regular beats > 100 bpm, each unlike the patient's dominant beat, that lean
ventricular as a group (median p >= ``GATE_P``): a monomorphic VT whose beats, no longer premature
once the run is under way, the classifier leaves under the threshold. A run ends at the first
beat that is neither ventricular nor the last of such an alternating window (``end`` = that beat)
or where the signal is lost; a run also continues while the last 5 beats meet the confident-network
rule (at any rate). Each run names the rule that began it (:data:`RUN_RULES`): the alarm engine does
not let the network's poor-signal output hold back a run of alike beats.

All state is a dict of numpy arrays; any chunking gives the same classes and runs (a beat is
classified once its window has arrived, so it may wait one call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.filter_design import butter_sos, rest_state, writable
from models.flatline import FLAT_LEAD_S, flat_samples
from models.mlp import TanhMLP, load_weights_file
from models.small_arrays import finite_columns, median_of_few, norm, row_medians, row_norms, sos_filter

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
# Alternating (bidirectional) runs: ALT_BEATS beats > VT_BPM, regular in pairs, every beat like the
# one two back on both leads (median >= ALT_SIMILARITY) and unlike the one before on a lead (median
# of the smaller of its two correlations <= ALT_UNLIKE), every other beat p >= ALT_P and the others
# not the dominant beat on both leads. Chosen on a plateau of the leave-one-record-out sweep over
# all 22 MIT-BIH records; ALT_SIMILARITY 0.9 rather than 0.85 (equal there) for NSTDB 118e00
# (docs/beats.md).
ALT_BEATS = 6
ALT_P = 0.5
ALT_SIMILARITY = 0.9
ALT_UNLIKE = 0.7
ALT_REGULARITY = 1.2        # largest / smallest two-beat interval in the window
# The network gate (VtGate): a beat with p >= GATE_P is ventricular when the network's vt
# probability reaches GATE_VT within [-GATE_PRE_S, +GATE_POST_S] of it. GATE_P: chosen on the
# CinC 2015 training half (models/splits.py) with the MIT-BIH false runs as the constraint (the
# training half's score is the same for GATE_P 0-0.3 and GATE_VT 0.02-0.1). GATE_VT: first the
# middle of that plateau (0.05); now its sensitive end, 0.02, chosen by the 5-fold cross-validation
# of models/vt_cv.py (networks retrained per fold), where 0.02 scores highest of {0.02, 0.03, 0.05,
# 0.1} and adds no MIT-BIH or NSTDB false run (0.01 adds one on MIT-BIH 207); docs/beats.md,
# "Network gate" and "The gate's level", with the figure for the level chosen inside the CV.
GATE_P = 0.3
GATE_VT = 0.02
GATE_PRE_S, GATE_POST_S = 1.0, 0.5
# A confident network waives the likeness: 5 beats in a row with p >= STRONG_P, > VT_BPM, and the
# network's vt probability >= STRONG_VT near one of them (the same window as the gate) are a VT run
# whatever their shapes (polymorphic VT; wide complexes the QRS detector marks at different points).
# Chosen on the CinC 2015 training half with the MIT-BIH and NSTDB false runs as the constraint: the
# training half's score is the same for STRONG_P 0.5-0.8 with STRONG_VT 0.15-0.3 (below 0.3 a false
# run on MIT-BIH 203, at 0.4 a true alarm is lost); STRONG_P in the middle, STRONG_VT where no false
# run is added (docs/beats.md, "Confident network").
STRONG_P = 0.7
STRONG_VT = 0.3
# A regular tachycardia of beats unlike the patient's own (the textbook monomorphic VT, whose beats
# the classifier leaves under the threshold once the run is no longer premature): REGULAR_BEATS
# beats in a row > VT_BPM, each unlike the dominant template on lead a (correlation <= ALT_UNLIKE),
# regular (largest / smallest RR <= ALT_REGULARITY), their median p >= GATE_P (or the threshold,
# if lower). No network. REGULAR_BEATS: the middle of 6-8, the beat counts for which a sweep over
# MIT-BIH (leave-one-record-out) and NSTDB 118e00/e12/e24 alone found settings with no NSTDB run and
# at most one MIT-BIH false run (5 has none; docs/beats.md, "Regular unlike beats"); the other
# constants are the module's own, inside the 7-beat plateau.
REGULAR_BEATS = 7
# Which rule began a VT run (RunEvent.rule): 5 alike ventricular beats, the confident network, an
# alternating (bidirectional) rhythm, or a regular run of beats unlike the dominant one. A run of
# alike beats is not held back by the network's noise output (service/alarms/machine.py: five
# complexes of one shape are not noise).
ALIKE, CONFIDENT, ALTERNATING, UNLIKE_REGULAR = "alike", "confident_network", "alternating", "unlike_regular"
RUN_RULES = (ALIKE, CONFIDENT, ALTERNATING, UNLIKE_REGULAR)
WEIGHTS_FILE = Path(__file__).resolve().parent / "checkpoints" / "vigil-beats.json"

LEAD_FEATURES = ("corr_dominant", "log_amplitude_ratio", "width_s", "width_excess_s", "is_dominant")
FEATURES = tuple(f"{f}_{lead}" for lead in ("a", "b") for f in LEAD_FEATURES) + ("rr_s", "rr_ratio")
_DOMINANT = [FEATURES.index("is_dominant_a"), FEATURES.index("is_dominant_b")]   # (run_inputs)
_CORR_DOMINANT_A = FEATURES.index("corr_dominant_a")                              # (run_inputs)
RUN_INPUTS = 7   # length of run_inputs()
# State arrays process() changes in place, so it copies them (the caller's state is not modified);
# it replaces the others whole.
_IN_PLACE = ("zi", "prev_valid", "templates", "counts", "widths", "hist_seg")
_FILTER_STATE = ("zi", "prev_valid", "flat_last", "flat_run")   # what _filter reads and updates
# The state that depends only on the signal filtered: the same for two classifiers of one session's
# two leads that started together (service/alarms/sources.py writes it once in a snapshot).
SIGNAL_STATE = ("end", "buf", *_FILTER_STATE)


@dataclass
class BeatWeights(TanhMLP):
    """The beat classifier: a :class:`models.mlp.TanhMLP` on :data:`FEATURES`, as fitted.

    Attributes
    ----------
    threshold : float
        Probability at or above which a beat is ventricular.
    meta : dict
        Provenance (data, split, metrics) written by :mod:`models.beats_fit`.
    """

    threshold: float
    meta: dict

    def to_json(self) -> dict:
        return {"features": list(FEATURES), **self.params_json(), "threshold": float(self.threshold),
                "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "BeatWeights":
        if list(d["features"]) != list(FEATURES):
            raise ValueError(f"Invalid beat weights: expected features {list(FEATURES)}, got {d['features']}")
        return cls(**TanhMLP.params_from_json(d), threshold=float(d["threshold"]), meta=d.get("meta", {}))


@dataclass(frozen=True)
class VtGate:
    """The network's ``vt`` probabilities near the beats (see :data:`GATE_VT`).

    Attributes
    ----------
    samples : np.ndarray
        ``(k,)`` int, increasing: the last input sample each output step covers.
    p_vt : np.ndarray
        ``(k,)`` the steps' ``vt`` probabilities.
    horizon : float
        The last input sample the network's outputs cover (``inf``: all of them, the stream ended);
        a beat is decided once ``horizon`` reaches ``GATE_POST_S`` after it.
    """

    samples: np.ndarray
    p_vt: np.ndarray
    horizon: float

    def ready(self, beats: np.ndarray, post_n: int) -> np.ndarray:
        """``(m,)`` bool: the outputs cover ``post_n`` samples after each beat."""
        return np.asarray(beats) + post_n <= self.horizon

    def value(self, b: int, pre_n: int, post_n: int) -> float:
        """Largest ``vt`` probability of the steps ending within ``[b - pre_n, b + post_n]`` (0: none)."""
        lo, hi = np.searchsorted(self.samples, b - pre_n), np.searchsorted(self.samples, b + post_n, side="right")
        return float(self.p_vt[lo:hi].max()) if hi > lo else 0.0


@dataclass
class RunEvent:
    """A VT-run transition: ``end_sample`` None when it began (``established`` = its 5th beat;
    ``rule``: the rule that began it, one of :data:`RUN_RULES`; empty for an end)."""

    onset_sample: int
    established: int
    end_sample: int | None = None
    rule: str = ""


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
        self.sos = writable(butter_sos(2, BAND_HZ, "bandpass", self.fs))
        self.zi_unit = rest_state(2, BAND_HZ, "bandpass", self.fs)
        self.pre, self.post = round(PRE_S * self.fs), round(POST_S * self.fs)
        self.lag = max(1, round(LAG_S * self.fs))
        self.lags = np.arange(-self.lag, self.lag + 1, 2)
        self.width = self.pre + self.post + 1
        self.window_index = self.lags[:, None] + self.lag + np.arange(self.width)[None]  # (lags, W) into a window
        self.keep = round(BUFFER_S * self.fs) + self.pre + self.lag
        self.flat_n = round(FLAT_LEAD_S * self.fs)
        self.gate_pre, self.gate_post = round(GATE_PRE_S * self.fs), round(GATE_POST_S * self.fs)
        self._state_keys = tuple(self.initial_state())
        self._last_filter = None   # (inputs, outputs) of the last _filter call, see there

    # ------------------------------------------------------------------ state
    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh state (dict of numpy arrays)."""
        L, W = self.n_leads, self.width
        return {
            "end": np.asarray(-1, np.int64),              # next sample expected (-1: none yet)
            "buf": np.zeros((0, L)),                       # (k, L) filtered signal, nan = missing
            "zi": np.zeros((L, self.sos.shape[0], 2)),
            "prev_valid": np.zeros(L, bool),
            "flat_last": np.zeros(L),                      # each lead's last value and how many samples
            "flat_run": np.zeros(L, np.int64),             # held it (models/flatline.py)
            "templates": np.zeros((L, N_TEMPLATES, W)),
            "counts": np.zeros((L, N_TEMPLATES)),
            "widths": np.zeros((L, N_TEMPLATES)),
            "pending": np.zeros(0, np.int64),              # beats waiting for their window
            "last_beat": np.asarray(-1, np.int64),
            "rr": np.zeros(0),                              # (<= RR_KEEP,) s
            "run": np.zeros(0, np.int64),                   # current run of ventricular beats (samples)
            "vt_onset": np.asarray(-1, np.int64),
            "hist_seg": np.zeros((2, L, W)),               # the last two beats' aligned windows, per lead
            "sims": np.full(4, np.nan),                    # the last beat's correlations: with the one
                                                           # before (leads a, b), two before (a, b)
            "run_sim": np.zeros(0),                         # similarities within the current run
            "alt_beats": np.zeros(0, np.int64),             # the last <= ALT_BEATS classified beats ...
            "alt_info": np.zeros((0, 6)),                   # ... (p, not dominant, sims (4,))
            "strong": np.zeros((0, 3)),                     # the last <= VT_BEATS classified beats
                                                            # (sample, p, network vt near it)
            "regular": np.zeros((0, 3)),                    # the last <= REGULAR_BEATS classified beats
                                                            # (sample, p, correlation with the dominant, lead a)
        }

    # ------------------------------------------------------------------ main entry
    def process(self, x: np.ndarray, first_sample: int, beats: np.ndarray, state: dict[str, np.ndarray],
                flush: bool = False, threshold: float | None = None, details: list | None = None,
                gate: VtGate | None = None) -> tuple[list[tuple[int, np.ndarray, float, float]], list[RunEvent], dict]:
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
        details : list, optional
            When given, ``(sample, run_inputs (RUN_INPUTS,))`` of each classified beat are appended to it:
            what the run rule uses besides ``p`` (see :meth:`run_inputs`; for fitting).
        gate : VtGate, optional
            The network's ``vt`` outputs so far: a beat waits until they cover ``GATE_POST_S``
            after it, and with p >= ``GATE_P`` it is ventricular when they reach ``GATE_VT`` near
            it; where they reach ``STRONG_VT`` a run needs no likeness (the confident network).
            None: the classifier alone.

        Returns
        -------
        classified : list of (sample, features (F,), p_ventricular, similarity to the previous beat)
        events : list of RunEvent
        state : dict
        """
        if not all(k in state for k in self._state_keys):   # keys a snapshot from before lacks keep their
            state = {**self.initial_state(), **state}        # initial values
        st = {k: np.array(state[k], copy=True) if k in _IN_PLACE else np.asarray(state[k]) for k in self._state_keys}
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
        if gate is not None and not flush:
            ready &= gate.ready(todo, self.gate_post)
        out, events = [], []
        for b in todo[ready].tolist():
            f = self._features(int(b), buf, buf_start, st)
            p = float(self.weights.prob(f)[0]) if self.weights is not None and f is not None else float("nan")
            info = self.run_inputs(f, st["sims"]) if f is not None else np.full(RUN_INPUTS, np.nan)
            if f is not None:
                out.append((int(b), f, p, float(info[0])))
                if details is not None:
                    details.append((int(b), info))
            vt = gate.value(int(b), self.gate_pre, self.gate_post) if gate is not None else 0.0
            self.run_step(st, int(b), p, info, events, threshold, vt=vt)
        st["pending"] = np.zeros(0, np.int64) if flush else todo[~ready]
        return out, events, st

    # ------------------------------------------------------------------ parts
    def _filter(self, x: np.ndarray, st: dict) -> np.ndarray:
        """Band-pass each lead over its valid runs; nan where missing or flat (a lead that holds
        one value, :mod:`models.flatline`). ``(n, L)`` (read-only).

        The last call's inputs and results are kept: a session's two classifiers (the second
        lead's, :mod:`models.vt_leads`) are given the same chunks, and their filters are in the
        same state, so the second takes the first's results instead of filtering again (the
        same inputs give the same bits; any difference, down to the bytes, filters anew)."""
        key = (x.shape, x.tobytes(), *(bytes_of(st[k]) for k in _FILTER_STATE))
        if self._last_filter is not None and self._last_filter[0] == key:
            y, after = self._last_filter[1]
            st.update({k: v.copy() for k, v in after.items()})
            return y
        y = self._filter_chunk(x, st)
        y.flags.writeable = False
        self._last_filter = (key, (y, {k: st[k].copy() for k in _FILTER_STATE}))
        return y

    def _filter_chunk(self, x: np.ndarray, st: dict) -> np.ndarray:
        """:meth:`_filter`'s computation."""
        y = np.full(x.shape, np.nan)
        finite = np.isfinite(x) & (np.abs(x) < 1e15)
        flat, st["flat_last"], st["flat_run"] = flat_samples(np.where(finite, x, np.nan), st["flat_last"],
                                                             st["flat_run"], self.flat_n)
        for j in range(x.shape[1]):
            v = finite[:, j] & ~flat[:, j]
            if not v.any():
                st["prev_valid"][j] = False
                continue
            if v.all():                                  # the usual chunk: one valid run
                starts, stops = (0,), (len(v),)
            else:
                edges = (np.flatnonzero(np.diff(v.astype(np.int8))) + 1).tolist()
                starts, stops = [0, *edges], [*edges, len(v)]
            zi = st["zi"][j]
            for i0, i1 in zip(starts, stops):
                if not v[i0]:
                    continue
                seg = x[i0:i1, j]
                if i0 > 0 or not st["prev_valid"][j]:
                    zi = self.zi_unit * seg[0]
                y[i0:i1, j], zi = sos_filter(self.sos, seg, zi)
            st["zi"][j] = zi
            st["prev_valid"][j] = bool(v[-1])
        return y

    def _features(self, b: int, buf: np.ndarray, buf_start: int, st: dict) -> np.ndarray | None:
        """Features (F,) of the beat at ``b`` (updating the templates and RR), None without a window.

        A lead whose window is not all valid (an electrode off, NaN) is left out, and the other
        stands in for it, as in a one-lead session: losing one lead must not stop VT and AF
        detection, which the alarm engine would not report (signal_loss needs every lead lost).
        The left-out lead's templates wait for it to come back."""
        lo = b - self.pre - self.lag - buf_start
        hi = b + self.post + self.lag + 1 - buf_start
        window = buf[lo:hi]
        leads = finite_columns(window) if 0 <= lo and hi <= len(buf) else []
        if not leads:
            st["last_beat"], st["rr"] = np.asarray(-1, np.int64), np.zeros(0)
            return None
        feats, sims = [], []
        hist = st["hist_seg"]
        for j in leads:
            segs = window[:, j][self.window_index]
            segs = segs - row_medians(segs)
            lead, seg = self._lead(segs, st, j)
            feats.append(lead)
            seg_norm = norm(seg)
            sims.append((_corr(seg, seg_norm, hist[0, j]), _corr(seg, seg_norm, hist[1, j])))
            hist[1, j], hist[0, j] = hist[0, j], seg
        if len(feats) == 1:
            feats.append(feats[0])
            sims.append(sims[0])
        st["sims"] = np.asarray([sims[0][0], sims[1][0], sims[0][1], sims[1][1]])
        last = int(st["last_beat"])
        rr_hist = st["rr"]
        if last >= 0:
            rr = (b - last) / self.fs
            ratio = rr / median_of_few(rr_hist.tolist()) if len(rr_hist) else 1.0
            st["rr"] = np.concatenate([rr_hist, [rr]])[-RR_KEEP:]
        else:
            rr, ratio = np.nan, np.nan
        st["last_beat"] = np.asarray(b, np.int64)
        return np.asarray(feats[0] + feats[1] + [rr, ratio], np.float64)

    def _lead(self, segs: np.ndarray, st: dict, j: int) -> tuple[list[float], np.ndarray]:
        """One lead's features from the beat's windows ``segs`` (lags, W), and the best-aligned
        window (W,); updates the templates."""
        T, cnt, wid = st["templates"][j], st["counts"][j], st["widths"][j]
        nrm = row_norms(segs) + 1e-12
        used = int((cnt > 0).sum())
        if used:
            C = (segs @ T[:used].T) / (nrm[:, None] * (row_norms(T[:used])[None] + 1e-12))
            li, ti = divmod(int(np.argmax(C)), C.shape[1])
            best = float(C[li, ti])
        else:
            li, ti, best = len(self.lags) // 2, -1, -1.0
        seg = segs[li]
        slope = np.abs(seg[1:] - seg[:-1])                # (np.diff)
        top = slope.max()
        above = np.flatnonzero(slope > 0.25 * top) if top > 0 else np.zeros(0, int)
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
        cd = float(np.max((segs @ T[dom]) / (nrm * (norm(T[dom]) + 1e-12))))
        amp = float(np.log((seg.max() - seg.min() + 1e-12) / (T[dom].max() - T[dom].min() + 1e-12)))   # (np.ptp)
        return [cd, amp, w, w - float(wid[dom]), float(m == dom)], seg

    @staticmethod
    def run_inputs(f: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """What the run rule uses of a classified beat besides its probability: its correlations
        with the beat before (leads a, b) and two before (a, b), nan when there was none, whether
        it matched the dominant template on lead a and on lead b, and its correlation with the
        dominant template on lead a. ``(RUN_INPUTS,)``."""
        return np.concatenate([sims, f[_DOMINANT], f[[_CORR_DOMINANT_A]]])

    def run_step(self, st: dict, b: int, p: float, info: np.ndarray, events: list[RunEvent],
                 threshold: float | None, vt: float = 0.0) -> None:
        """Advance the VT-run rule with the beat at ``b`` (``p``: its probability, nan: no window;
        ``info``: :meth:`run_inputs`; ``vt``: the network's largest vt probability near it, 0 without
        the network: at ``GATE_VT`` p >= ``GATE_P`` (or the threshold, if lower) makes the beat
        ventricular, at ``STRONG_VT`` the beat's run needs no likeness)."""
        thr = threshold if threshold is not None else (self.weights.threshold if self.weights is not None else 0.5)
        vt = _nan_to_zero(float(vt))
        is_v = p >= thr or (vt >= GATE_VT and p >= min(GATE_P, thr))
        if math.isfinite(p):
            row = np.concatenate([[p, float(not (info[4] == 1 and info[5] == 1))], info[:4]])
            st["alt_beats"] = np.concatenate([st["alt_beats"], [b]])[-ALT_BEATS:]
            st["alt_info"] = np.concatenate([st["alt_info"], row[None]])[-ALT_BEATS:]
            st["strong"] = np.concatenate([st["strong"], [[b, p, vt]]])[-VT_BEATS:]
            st["regular"] = np.concatenate([st["regular"], [[b, p, info[6]]]])[-REGULAR_BEATS:]
        else:                                             # no window: the alternation is broken
            st["alt_beats"], st["alt_info"] = np.zeros(0, np.int64), np.zeros((0, 6))
            st["strong"], st["regular"] = np.zeros((0, 3)), np.zeros((0, 3))
        onset = int(st["vt_onset"])
        # the rate is checked when a run begins; once begun it continues at any rate, as a run of
        # ventricular beats does
        alternating = self._alternating(st, min(ALT_P, thr), rate=onset < 0)
        confident = self._confident(st, rate=onset < 0)
        regular = self._unlike_regular(st, min(GATE_P, thr), rate=onset < 0)
        if is_v:
            run = np.concatenate([st["run"], [b]])
            st["run_sim"] = (np.concatenate([st["run_sim"], [info[0]]])[-(VT_BEATS - 1):] if len(st["run"])
                             else np.zeros(0))
            st["run"] = run[-VT_BEATS:]
        else:
            st["run"], st["run_sim"] = np.zeros(0, np.int64), np.zeros(0)
        if onset >= 0:
            if not (is_v or alternating or confident or regular):   # the run ends at this beat
                events.append(RunEvent(onset, onset, b))
                st["vt_onset"] = np.asarray(-1, np.int64)
            return
        if is_v and len(run) >= VT_BEATS:
            k = run[-VT_BEATS:]
            bpm = self._bpm(k[0], k[-1], VT_BEATS)
            similar = float(np.median(np.nan_to_num(st["run_sim"], nan=-1.0))) >= RUN_SIMILARITY
            if bpm > VT_BPM and similar:
                st["vt_onset"] = np.asarray(int(k[0]), np.int64)
                events.append(RunEvent(int(k[0]), b, rule=ALIKE))
                return
        if confident:
            k0 = int(st["strong"][0, 0])
            st["vt_onset"] = np.asarray(k0, np.int64)
            events.append(RunEvent(k0, b, rule=CONFIDENT))
            return
        if alternating:
            k0 = int(st["alt_beats"][0])
            st["vt_onset"] = np.asarray(k0, np.int64)
            events.append(RunEvent(k0, b, rule=ALTERNATING))
            return
        if regular:
            k0 = int(st["regular"][0, 0])
            st["vt_onset"] = np.asarray(k0, np.int64)
            events.append(RunEvent(k0, b, rule=UNLIKE_REGULAR))

    def _bpm(self, first: float, last: float, n: int) -> float:
        """Mean rate (bpm) of ``n`` beats from sample ``first`` to sample ``last``."""
        return 60.0 * self.fs * (n - 1) / max(1, int(last - first))

    def _confident(self, st: dict, rate: bool = True) -> bool:
        """Whether the last ``VT_BEATS`` classified beats all have p >= ``STRONG_P`` and the network's
        vt output reaches ``STRONG_VT`` near one of them (faster than ``VT_BPM`` when ``rate``)."""
        k = st["strong"]
        if len(k) < VT_BEATS or k[:, 1].min() < STRONG_P or k[:, 2].max() < STRONG_VT:
            return False
        return not rate or self._bpm(k[0, 0], k[-1, 0], VT_BEATS) > VT_BPM

    def _unlike_regular(self, st: dict, p_min: float, rate: bool = True) -> bool:
        """Whether the last ``REGULAR_BEATS`` classified beats are a regular run of beats unlike the
        dominant one on lead a (correlation <= ``ALT_UNLIKE``; RR largest / smallest <=
        ``ALT_REGULARITY``; median p >= ``p_min``), faster than ``VT_BPM`` when ``rate``."""
        k = st["regular"]
        if len(k) < REGULAR_BEATS or not (k[:, 2] <= ALT_UNLIKE).all() or np.median(k[:, 1]) < p_min:
            return False
        if not _regular(k[1:, 0] - k[:-1, 0]):
            return False
        return not rate or self._bpm(k[0, 0], k[-1, 0], REGULAR_BEATS) > VT_BPM

    def _alternating(self, st: dict, p_min: float, rate: bool = True) -> bool:
        """Whether the last ``ALT_BEATS`` classified beats are an alternating (bidirectional) run
        (faster than ``VT_BPM`` when ``rate``)."""
        beats, info = st["alt_beats"], st["alt_info"]
        if len(beats) < ALT_BEATS:
            return False
        if rate and self._bpm(beats[0], beats[-1], ALT_BEATS) <= VT_BPM:
            return False
        if not any((info[par::2, 0] >= p_min).all() and (info[1 - par::2, 1] > 0).all() for par in (0, 1)):
            return False
        if not _regular(beats[2:] - beats[:-2]):
            return False
        sims = np.nan_to_num(info[:, 2:], nan=-1.0)
        if min(np.median(sims[2:, 2]), np.median(sims[2:, 3])) < ALT_SIMILARITY:
            return False
        return float(np.median(np.minimum(sims[1:, 0], sims[1:, 1]))) <= ALT_UNLIKE


def _regular(intervals: np.ndarray) -> bool:
    """Whether the largest of ``intervals`` (samples) is at most ``ALT_REGULARITY`` times the smallest."""
    return bool(intervals.max() <= ALT_REGULARITY * max(1, intervals.min()))


def _corr(a: np.ndarray, norm_a: np.float64, b: np.ndarray) -> float:
    """Correlation (uncentred cosine) of two windows (``norm_a``: ``norm(a)``); nan when ``b`` is
    empty (no beat yet)."""
    if not b.any():
        return float("nan")
    return float(np.dot(a, b) / (norm_a * norm(b) + 1e-12))


def bytes_of(a: np.ndarray) -> tuple:
    """An array's type, shape and bytes: equal exactly when the arrays are identical bit for bit."""
    return a.dtype.str, a.shape, a.tobytes()


def _nan_to_zero(v: float) -> float:
    """``float(np.nan_to_num(v, nan=0.0))`` of a float (infinities become the largest floats)."""
    if math.isnan(v):
        return 0.0
    return v if not math.isinf(v) else math.copysign(np.finfo(np.float64).max, v)


def load_weights(path: str | Path = WEIGHTS_FILE) -> BeatWeights | None:
    """The shipped beat classifier, or None when its file is absent (shared, read-only)."""
    return load_weights_file(BeatWeights, path)
