"""Causal, streaming QRS detector for one ECG lead and the PhysioNet/CinC 2015 rate conditions.

Detector (Pan & Tompkins, IEEE TBME 32(3):230-236, 1985: adaptive thresholds, T-wave
discrimination and search-back; with the rectified rather than squared derivative of Hamilton &
Tompkins, IEEE TBME 33(12):1157-1165, 1986), run sample-exact on any chunking:

1. band-pass 5-15 Hz (Butterworth, ``sosfilt`` with a carried ``zi``);
2. derivative ``d[n] = y[n] - y[n-k]`` (k ~ 10 ms), rectified, moving-window integration
   over 150 ms (``lfilter`` with carried ``zi``): the feature ``m``;
3. candidates: peaks of ``m`` that are the maximum of ``m`` over ``[p - 0.2 s, p + POST_S]``;
   a candidate is decided once ``m`` is known ``POST_S`` past it (the fixed decision delay);
4. each candidate is a beat when its height exceeds ``THR1 = NPK + 0.25 (SPK - NPK)``
   (signal and noise peak levels, running averages: amplitude invariant) and it is not a
   T wave (within 360 ms of the last beat with less than half its slope); otherwise it is a
   noise peak. When no beat came for 1.66 mean RR, the largest noise peak since the last
   beat above ``THR1 / 2`` is taken as a beat (search-back: such a beat is reported later
   than the fixed delay); an empty search is repeated, a failed one is not;
5. the beat's sample is the peak of ``|band-passed|`` under the integration window, minus the
   band-pass group delay.

The rectified derivative makes the detector polarity invariant; the relative thresholds make it
gain invariant (levels are learnt over the first 2 s of valid signal; the beats of those 2 s are
reported at their end).

Missing values (NaN, Inf) and a flat line (one value held ``models.flatline.FLAT_LEAD_S``, from
then on) are "no signal": no beats; the filters restart on the first valid
value after a gap (steady state, no step transient); RR history and beat runs restart; an active
condition ends where the gap starts; asystole needs 4 s of *valid* signal without a beat.
The signal and noise levels are kept across a gap: a lead that comes back much smaller (below
about 1/8 of its QRS level) is not followed (see ``docs/qrs.md``), but an asystole that begins
during a gap is not mistaken for beats, as re-learning on noise would.

Conditions (DESIGN §3, CinC 2015), evaluated on the detected beats:

- asystole: no beat for >= 4 s. ``onset_sample`` = the last beat (or the first valid sample
  after a gap or at the start); ends at the next beat (``end_sample`` = that beat).
- extreme bradycardia: rate < 40 bpm over 5 consecutive beats (4 RR intervals, mean rate);
  ``onset_sample`` = the first beat of the 5; ends at the first beat whose 5-beat rate is
  >= 45 bpm (``RATE_HYSTERESIS_BPM`` back inside the limit, :func:`rate_condition_holds`).
- extreme tachycardia: rate > 140 bpm over 17 consecutive beats (16 RR intervals), likewise;
  ends at the first beat whose 17-beat rate is <= 135 bpm.

All state is a dict of numpy arrays (``np.savez`` without pickle); any chunking, including
empty and 1-sample chunks, gives exactly the same beats and events.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import group_delay, sos2tf

from models.filter_design import butter_sos, rest_state, writable
from models.flatline import FLAT_LEAD_S, flat_samples
from models.small_arrays import fir_filter, median_of_few, sos_filter

# --- CinC 2015 conditions (DESIGN §3) --------------------------------------------------------
ASYSTOLE_S = 4.0            # s without a QRS
BRADY_BPM, BRADY_BEATS = 40.0, 5
TACHY_BPM, TACHY_BEATS = 140.0, 17
RATE_HYSTERESIS_BPM = 5.0   # an extreme rate ends once the rate is this far back inside its limit:
                            # a rate hovering at the limit is one alert, not one per crossing

# --- detector ----------------------------------------------------------------------------------
BAND_HZ = (5.0, 15.0)       # band-pass edges, Hz
DERIV_S = 0.01              # derivative lag, s
MWI_S = 0.15                # moving-window integration, s
PRE_S = 0.2                 # a candidate is the largest m over PRE_S before it (refractory)...
POST_S = 0.15               # ...and POST_S after it: the decision delay after the m peak
LEARN_S = 2.0               # s of valid signal to learn the initial levels
T_WAVE_S = 0.36             # T-wave discrimination window after a beat, s
SEARCHBACK_RR = 1.66        # search back after this many mean RR intervals without a beat
SEARCHBACK_MAX_S = 3.0      # ... but at most this long (s), so it always precedes asystole
REPORT_LAG_S = SEARCHBACK_MAX_S + 0.5  # a beat is reported within this long after its sample (search-back
                                       # plus the decision delay), s
RR_DEFAULT_S = 0.8          # mean RR assumed before any RR is known, s
RR_KEEP = 8                 # RR intervals kept for the heart rate and the search-back
CAPACITY = 64               # pending candidates kept for the search-back / learning
TH_COEF = 0.25              # THR1 = NPK + TH_COEF (SPK - NPK)
GAP_BLOCK = 1 << 16         # a gap between chunks is filled with missing samples in blocks
MAX_ABS = 1e15              # larger finite values are treated as missing (state stays finite)

EVENT_KINDS = ("asystole", "bradycardia", "tachycardia")


@dataclass
class RateEvent:
    """A transition of a rate condition.

    Attributes
    ----------
    kind : str
        ``"asystole"``, ``"bradycardia"`` or ``"tachycardia"``.
    onset_sample : int
        Absolute sample where the condition began.
    end_sample : int or None
        None: the condition started (is now met); int: it ended (exclusive end).
    """

    kind: str
    onset_sample: int
    end_sample: int | None = None


@dataclass
class RhythmUpdate:
    """Result of one :meth:`RhythmMonitor.process` call.

    Attributes
    ----------
    beats : np.ndarray
        ``(n_beats,)`` int64 absolute sample indices of the QRS complexes decided in this call,
        increasing (a beat is usually decided ~0.3 s after its sample; search-back beats later).
    hr_bpm : float
        Latest heart rate, 60 / median of the last (up to 8) RR intervals, bpm; 0.0 while
        asystole is active; nan when no RR interval is known (start, after a gap).
    events : list of RateEvent
        Condition transitions decided in this call, in order.
    """

    beats: np.ndarray
    hr_bpm: float
    events: list[RateEvent] = field(default_factory=list)


# Scalar state, stored as 0-d arrays. Indices are absolute samples; -1 = none / disarmed.
_INT_FIELDS = (
    "origin",        # first sample of the stream (-1 before the first call)
    "end",           # next expected sample
    "h",             # decision horizon: candidates p < h have been decided
    "prev_valid",    # 1 when sample end-1 was valid
    "valid_start",   # first sample of the current valid run (-1 inside a gap)
    "learn_end",     # horizon at which the initial levels are learnt (-1 once learnt)
    "last_loc",      # last beat (sample of the QRS)
    "last_p",        # last beat (sample of its m peak)
    "sb_at",         # horizon of the next search-back
    "as_at",         # horizon at which asystole is declared
    "asys_onset",    # onset of the active asystole
    "brady_onset",   # onset of the active bradycardia
    "tachy_onset",   # onset of the active tachycardia
    "n_pend",        # pending noise candidates since the last beat
    "n_learn",       # candidates collected while learning
    "n_rr",          # RR intervals held (<= RR_KEEP)
    "n_run",         # beats held in the current run (<= TACHY_BEATS)
    "flat_run",      # samples up to end-1 that held flat_last (models/flatline.py)
)
_FLOAT_FIELDS = ("spk", "npk", "last_slope", "flat_last")


_IN_PLACE = ("pend", "learn", "rr", "run")   # the arrays the decisions change in place; the others
                                              # are replaced whole, so they are not copied


class _S:
    """Mutable view of the state dict (scalars as attributes, arrays copied where they are changed
    in place: the caller's state is not modified)."""

    def __init__(self, state: dict[str, np.ndarray]):
        for k in _INT_FIELDS:
            setattr(self, k, int(state[k]))
        for k in _FLOAT_FIELDS:
            setattr(self, k, float(state[k]))
        self.arrays = {k: np.array(v, copy=True) if k in _IN_PLACE else np.asarray(v) for k, v in state.items()
                       if k not in _INT_FIELDS and k not in _FLOAT_FIELDS}

    def to_dict(self) -> dict[str, np.ndarray]:
        out = {k: np.asarray(getattr(self, k), dtype=np.int64) for k in _INT_FIELDS}
        out.update({k: np.asarray(getattr(self, k), dtype=np.float64) for k in _FLOAT_FIELDS})
        out.update(self.arrays)
        return out


class RhythmMonitor:
    """Streaming QRS detector and asystole / bradycardia / tachycardia conditions for one lead.

    Parameters
    ----------
    fs : float
        Sample rate of the session, Hz (50-4096).
    """

    def __init__(self, fs: float):
        fs = float(fs)
        if not (np.isfinite(fs) and 50.0 <= fs <= 4096.0):
            raise ValueError(f"Invalid sample_rate: expected 50–4096 Hz, got {fs:g}")
        self.fs = fs
        self.sos = writable(butter_sos(2, BAND_HZ, "bandpass", fs))           # (2, 6)
        self.zi_unit = rest_state(2, BAND_HZ, "bandpass", fs)                  # (2, 2) per unit input
        self.k_deriv = max(1, round(DERIV_S * fs))
        self.b_deriv = np.zeros(self.k_deriv + 1)
        self.b_deriv[[0, -1]] = (1.0, -1.0)
        self.n_mwi = max(2, round(MWI_S * fs))
        self.b_mwi = np.full(self.n_mwi, 1.0 / self.n_mwi)
        self.delay_bp = _bandpass_delay(fs)                # samples, band-pass delay at 10 Hz
        self.pre = max(1, round(PRE_S * fs))
        self.post = max(1, round(POST_S * fs))
        self.look = self.n_mwi + self.k_deriv               # m peak -> QRS search window
        self.hist = self.post + max(self.pre, self.look + self.delay_bp) + 2  # samples carried
        self.asys = round(ASYSTOLE_S * fs)
        self.learn = round(LEARN_S * fs)
        self.flat_n = round(FLAT_LEAD_S * fs)
        self.t_wave = round(T_WAVE_S * fs)
        # Longest delay from a beat's sample to the call that reports it, search-back and the
        # first LEARN_S of signal aside (then it is longer): samples.
        self.max_delay_samples = self.look + self.delay_bp + self.post + 1

    # --- state -----------------------------------------------------------------------------
    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh state: a dict of numpy arrays (``np.savez``-able without pickle)."""
        st = {k: np.asarray(-1, dtype=np.int64) for k in _INT_FIELDS}
        for k in ("prev_valid", "n_pend", "n_learn", "n_rr", "n_run", "flat_run"):
            st[k] = np.asarray(0, dtype=np.int64)
        st.update({k: np.asarray(0.0) for k in _FLOAT_FIELDS})
        k = self.hist
        st["hist_m"] = np.zeros(k)                    # (k,) feature m (signal units)
        st["hist_a"] = np.zeros(k)                    # (k,) |band-passed|
        st["hist_s"] = np.zeros(k)                    # (k,) |derivative|
        st["hist_v"] = np.zeros(k, dtype=bool)        # (k,) valid sample
        st["zi_bp"] = np.zeros((self.sos.shape[0], 2))
        st["zi_d"] = np.zeros(self.k_deriv)
        st["zi_mwi"] = np.zeros(self.n_mwi - 1)
        st["pend"] = np.zeros((CAPACITY, 4))          # (CAPACITY, [p, height, loc, slope])
        st["learn"] = np.zeros((CAPACITY, 4))
        st["rr"] = np.zeros(RR_KEEP, dtype=np.int64)  # samples, oldest first
        st["run"] = np.zeros(TACHY_BEATS, dtype=np.int64)  # beat samples, oldest first
        return st

    def decided_until(self, state: dict[str, np.ndarray]) -> int:
        """The last sample at or before which this detector will report no further beat.

        A beat still to come is either a candidate peak not yet decided (its QRS is at most
        ``look + delay_bp`` samples before the decision horizon) or a pending peak that a
        search-back, still armed, or the end of learning may yet take (its own QRS sample). Lets
        a caller that merges two detectors act once both are final, whatever the chunking.
        """
        bound = int(state["h"]) - self.look - self.delay_bp - 1
        n_learn, n_pend = int(state["n_learn"]), int(state["n_pend"])
        if int(state["learn_end"]) >= 0 and n_learn:
            bound = min(bound, int(state["learn"][:n_learn, 2].min()) - 1)
        if int(state["sb_at"]) >= 0 and n_pend:
            bound = min(bound, int(state["pend"][:n_pend, 2].min()) - 1)
        return bound

    # --- features ----------------------------------------------------------------------------
    def _features(self, x: np.ndarray, valid: np.ndarray, s: _S):
        """Band-pass, derivative and integration over the valid runs of one chunk.

        Returns ``m, a, d`` each ``(n,)``: integrated |derivative|, |band-passed|,
        |derivative|; 0 on missing samples.
        """
        n = len(x)
        if n == 0:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        if valid.all():                          # the usual chunk: one valid run
            starts, stops = (0,), (n,)
        else:
            edges = (np.flatnonzero(np.diff(valid.astype(np.int8))) + 1).tolist()
            starts, stops = [0, *edges], [*edges, n]
        m, a, d = np.zeros(n), np.zeros(n), np.zeros(n)
        zi_bp, zi_d, zi_m = s.arrays["zi_bp"], s.arrays["zi_d"], s.arrays["zi_mwi"]
        for i0, i1 in zip(starts, stops):
            if not valid[i0]:
                continue
            seg = x[i0:i1]
            if i0 > 0 or not s.prev_valid:       # (re)start: steady state, no step transient
                zi_bp = self.zi_unit * seg[0]
                zi_d = np.zeros_like(zi_d)
                zi_m = np.zeros_like(zi_m)
            y, zi_bp = sos_filter(self.sos, seg, zi_bp)            # (len,) band-passed
            dy, zi_d = fir_filter(self.b_deriv, y, zi_d)           # (lfilter's arithmetic)
            ady = np.abs(dy)
            mi, zi_m = fir_filter(self.b_mwi, ady, zi_m)
            m[i0:i1], a[i0:i1], d[i0:i1] = mi, np.abs(y), ady
        s.arrays.update(zi_bp=zi_bp, zi_d=zi_d, zi_mwi=zi_m)
        return m, a, d

    # --- main entry -----------------------------------------------------------------------------
    def process(self, x: np.ndarray, first_sample: int, state: dict[str, np.ndarray]
                ) -> tuple[RhythmUpdate, dict[str, np.ndarray]]:
        """Consume one chunk of one ECG lead.

        Parameters
        ----------
        x : np.ndarray
            ``(n,)`` samples in any unit and gain; NaN/Inf = missing. ``n`` may be 0.
        first_sample : int
            Absolute index of ``x[0]``. Must follow the previous chunk; a later start is a gap
            (filled as missing).
        state : dict of np.ndarray
            From :meth:`initial_state` or a previous call; not modified.

        Returns
        -------
        update : RhythmUpdate
        state : dict of np.ndarray
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"Invalid x: expected shape (n,), got {x.shape}")
        first_sample, end = int(first_sample), int(state["end"])
        if int(state["origin"]) >= 0 and first_sample > end:   # a gap: missing samples first
            beats, events = [], []
            while end < first_sample:
                n = min(first_sample - end, GAP_BLOCK)
                upd, state = self.process(np.full(n, np.nan), end, state)
                beats.append(upd.beats)
                events += upd.events
                end += n
            upd, state = self.process(x, first_sample, state)
            return RhythmUpdate(np.concatenate([*beats, upd.beats]), upd.hr_bpm, events + upd.events), state
        if "flat_run" not in state:                      # a snapshot from before the flat-line rule
            state = {**state, "flat_run": np.asarray(0, np.int64), "flat_last": np.asarray(0.0)}
        s = _S(state)
        if s.origin < 0:
            s.origin = s.end = s.h = first_sample
        if first_sample < s.end:
            raise ValueError(f"Invalid first_sample: expected >= {s.end}, got {first_sample}")
        valid = np.isfinite(x) & (np.abs(x) < MAX_ABS)
        flat, last, run = flat_samples(np.where(valid, x, np.nan)[:, None], np.asarray([s.flat_last]),
                                       np.asarray([s.flat_run]), self.flat_n)
        s.flat_last, s.flat_run = float(last[0]), int(run[0])
        valid &= ~flat[:, 0]                             # a flat line is no signal (models/flatline.py)
        m, a, d = self._features(np.where(valid, x, 0.0), valid, s)

        # Feature buffer: carried history + this chunk, covering [bs, e) absolute.
        ar = s.arrays
        buf_m = np.concatenate((ar["hist_m"], m))
        buf_a = np.concatenate((ar["hist_a"], a))
        buf_s = np.concatenate((ar["hist_s"], d))
        buf_v = np.concatenate((ar["hist_v"], valid))
        bs, e = s.end - self.hist, s.end + len(x)
        h0, h1 = s.h, max(s.h, e - self.post)   # decide candidates p in [h0, h1)

        cands = self._candidates(buf_m, buf_a, buf_s, buf_v, bs, h0, h1)
        i0, i1 = h0 - bs, h1 - bs
        prev_v = buf_v[i0 - 1: i1 - 1]
        cur_v = buf_v[i0:i1]
        trans = np.flatnonzero(prev_v != cur_v) + h0          # valid-state changes
        trans_up = cur_v[trans - h0]                           # True: gap ends (resume)

        beats: list[int] = []
        events: list[RateEvent] = []
        self._run_events(s, cands, trans, trans_up, h1, beats, events)

        s.h, s.end = h1, e
        s.prev_valid = int(valid[-1]) if len(x) else s.prev_valid
        ar.update(hist_m=buf_m[-self.hist:], hist_a=buf_a[-self.hist:],
                  hist_s=buf_s[-self.hist:], hist_v=buf_v[-self.hist:])
        if s.asys_onset >= 0:
            hr = 0.0
        elif s.n_rr:
            hr = 60.0 * self.fs / median_of_few(ar["rr"][RR_KEEP - s.n_rr:].tolist())
        else:
            hr = float("nan")
        return RhythmUpdate(np.asarray(beats, dtype=np.int64), hr, events), s.to_dict()

    def _candidates(self, buf_m, buf_a, buf_s, buf_v, bs, h0, h1) -> np.ndarray:
        """Candidate peaks in ``[h0, h1)``: ``(c, 4)`` rows ``[p, height, loc, slope]``."""
        if h1 <= h0:
            return np.zeros((0, 4))
        w = self.pre + self.post + 1
        lo, hi = h0 - bs - self.pre, h1 - bs + self.post       # buffer slice of the windows
        seg = buf_m[lo:hi]
        trail = maximum_filter1d(seg, w, origin=(w - 1) // 2)  # trail[j] = max(seg[j-w+1 .. j])
        win_max = trail[w - 1:]                                # max over [p - pre, p + post]
        mp = buf_m[h0 - bs: h1 - bs]
        rise = mp > buf_m[h0 - bs - 1: h1 - bs - 1]
        idx = np.flatnonzero((mp == win_max) & rise & (mp > 0.0))
        out = np.zeros((len(idx), 4))
        for r, i in enumerate(idx):
            j = h0 - bs + i                                    # buffer index of p
            win = slice(j - self.look, j + 1)
            q = int(np.argmax(buf_a[win]))
            loc = j - self.look + q - self.delay_bp           # buffer index of the QRS
            lost = np.flatnonzero(~buf_v[loc:j + 1])
            if len(lost):                                      # not before the valid run
                loc += int(lost[-1]) + 1
            out[r] = (h0 + i, buf_m[j], bs + loc, buf_s[win].max())
        return out

    # --- decisions ------------------------------------------------------------------------------
    def _run_events(self, s: _S, cands, trans, trans_up, h1, beats, events) -> None:
        """Advance the decision logic over candidates, gap edges and timers below ``h1``.

        Events at the same sample run in the order: gap edge, learning end, search-back,
        asystole, candidate; a timer re-armed in the past fires at once. The order depends on
        the samples only, so any chunking gives the same sequence.
        """
        ic = it = 0
        big = int(np.iinfo(np.int64).max)   # a timer that is not armed (a Python int, as the times)
        cands, trans, trans_up = cands.tolist(), trans.tolist(), trans_up.tolist()   # (Python numbers: quicker)
        while True:
            t_tr = trans[it] if it < len(trans) else big
            t_ln = s.learn_end if s.learn_end >= 0 else big
            t_sb = s.sb_at if s.sb_at >= 0 else big
            t_as = s.as_at if s.as_at >= 0 else big
            t_c = int(cands[ic][0]) if ic < len(cands) else big
            t = min(t_tr, t_ln, t_sb, t_as, t_c)
            if t >= h1:
                return
            if t == t_tr:
                self._gap_edge(s, t, trans_up[it], events)
                it += 1
            elif t == t_ln:
                self._learnt(s, beats, events)
            elif t == t_sb:
                self._searchback(s, beats, events)
            elif t == t_as:
                s.asys_onset = max(s.last_loc, s.valid_start)
                s.as_at = -1
                events.append(RateEvent("asystole", s.asys_onset))
            else:
                self._candidate(s, cands[ic], beats, events)
                ic += 1

    def _gap_edge(self, s: _S, t: int, up: bool, events) -> None:
        """Signal resumes (``up``) or is lost at sample ``t``."""
        if up:
            s.valid_start = t
            if s.spk <= 0.0 and s.learn_end < 0:  # levels are kept across gaps
                s.learn_end = t + self.learn
            elif s.learn_end < 0:
                s.sb_at = t + self._searchback_lag(s)
            self._arm_asystole(s)
            return
        for kind in EVENT_KINDS:                 # conditions end where the signal is lost
            onset = getattr(s, _ONSET[kind])
            if onset >= 0:
                events.append(RateEvent(kind, onset, t))
                setattr(s, _ONSET[kind], -1)
        s.valid_start = s.sb_at = s.as_at = -1
        s.n_pend = s.n_rr = s.n_run = 0

    def _learnt(self, s: _S, beats, events) -> None:
        """End of the learning period: initial levels, then decide the learnt candidates."""
        if s.n_learn == 0:
            s.learn_end += self.learn
            return
        rows = s.arrays["learn"][:s.n_learn].copy()
        s.spk = float(rows[:, 1].max())
        s.npk = 0.125 * s.spk
        s.learn_end, s.n_learn = -1, 0
        for row in rows:
            self._candidate(s, row, beats, events)

    def _candidate(self, s: _S, row, beats, events) -> None:
        """Decide one candidate ``[p, height, loc, slope]``."""
        p, height, _, slope = row
        if s.learn_end >= 0:
            if s.n_learn < CAPACITY:
                s.arrays["learn"][s.n_learn] = row
                s.n_learn += 1
            return
        thr1 = s.npk + TH_COEF * (s.spk - s.npk)
        t_wave = s.last_p >= 0 and p - s.last_p < self.t_wave and slope < 0.5 * s.last_slope
        if height > thr1 and not t_wave:
            self._beat(s, row, 0.125, beats, events)
            return
        s.npk = 0.125 * height + 0.875 * s.npk
        if t_wave:
            return
        pend = s.arrays["pend"]
        if s.n_pend == CAPACITY:                 # keep the latest
            pend[:-1] = pend[1:].copy()
            s.n_pend -= 1
        pend[s.n_pend] = row
        s.n_pend += 1

    def _searchback(self, s: _S, beats, events) -> None:
        """No beat for 1.66 mean RR: take the largest pending peak above THR1 / 2.

        When no peak came since the last beat, the search is repeated one search-back interval
        later; once peaks were searched and none was high enough, it stops until the next beat
        (repeating it would take noise for beats in a true asystole).
        """
        t, s.sb_at = s.sb_at, -1
        pend = s.arrays["pend"]
        k = int(np.argmax(pend[:s.n_pend, 1])) if s.n_pend else -1
        thr2 = 0.5 * (s.npk + TH_COEF * (s.spk - s.npk))
        if k < 0:                                # (not past the asystole decision)
            s.sb_at = t + self._searchback_lag(s)
            if s.as_at > t:
                s.sb_at = min(s.sb_at, s.as_at)
            return
        if pend[k, 1] <= thr2:
            s.n_pend = 0
            return
        row = pend[k].copy()
        rest = pend[k + 1:s.n_pend].copy()
        self._beat(s, row, 0.25, beats, events)
        pend[:len(rest)] = rest                  # peaks after the found beat stay pending
        s.n_pend = len(rest)

    def _searchback_lag(self, s: _S) -> int:
        """1.66 mean RR (0.8 s before any RR is known), at most SEARCHBACK_MAX_S; samples."""
        rr = s.arrays["rr"][RR_KEEP - s.n_rr:].tolist()
        mean_rr = sum(rr) / s.n_rr if s.n_rr else RR_DEFAULT_S * self.fs   # (integers: as exact as rr.mean())
        return min(round(SEARCHBACK_RR * mean_rr), round(SEARCHBACK_MAX_S * self.fs))

    def _beat(self, s: _S, row, alpha: float, beats, events) -> None:
        """Accept a beat ``[p, height, loc, slope]``; ``alpha``: signal-level update weight."""
        p, height, loc, slope = int(row[0]), row[1], int(row[2]), row[3]
        loc = max(loc, s.last_loc + 1)
        s.spk = alpha * height + (1.0 - alpha) * s.spk
        ar = s.arrays
        if s.n_run and s.last_loc >= s.valid_start:    # same valid run: an RR interval
            rr = ar["rr"]
            rr[:-1] = rr[1:].copy()
            rr[-1] = loc - s.last_loc
            s.n_rr = min(RR_KEEP, s.n_rr + 1)
        run = ar["run"]
        run[:-1] = run[1:].copy()
        run[-1] = loc
        s.n_run = min(TACHY_BEATS, s.n_run + 1)
        if s.asys_onset >= 0:
            events.append(RateEvent("asystole", s.asys_onset, loc))
            s.asys_onset = -1
        s.last_loc, s.last_p, s.last_slope = loc, p, slope
        s.n_pend = 0
        beats.append(loc)
        self._rate_condition(s, "bradycardia", BRADY_BEATS, events)
        self._rate_condition(s, "tachycardia", TACHY_BEATS, events)
        s.sb_at = p + self._searchback_lag(s)
        self._arm_asystole(s)

    def _rate_condition(self, s: _S, kind: str, n_beats: int, events) -> None:
        """Update bradycardia / tachycardia after a beat: mean rate over the last n beats."""
        if s.n_run < n_beats:
            return
        run = s.arrays["run"]
        first, last = int(run[-n_beats]), int(run[-1])
        bpm = 60.0 * self.fs * (n_beats - 1) / (last - first)
        attr = _ONSET[kind]
        active = getattr(s, attr) >= 0
        holds = rate_condition_holds(kind, bpm, active)
        if holds and not active:
            setattr(s, attr, first)
            events.append(RateEvent(kind, first))
        elif not holds and active:
            events.append(RateEvent(kind, getattr(s, attr), last))
            setattr(s, attr, -1)

    def _arm_asystole(self, s: _S) -> None:
        """Asystole is declared once the horizon is 4 s (+ the QRS search window) past the last
        beat or the start of valid signal, whichever is later."""
        if s.valid_start < 0 or s.asys_onset >= 0:
            s.as_at = -1
            return
        s.as_at = max(s.last_loc, s.valid_start) + self.asys + self.look + self.delay_bp


_ONSET = {"asystole": "asys_onset", "bradycardia": "brady_onset", "tachycardia": "tachy_onset"}


@functools.lru_cache(maxsize=32)
def _bandpass_delay(fs: float) -> int:
    """Group delay of the :data:`BAND_HZ` band-pass at 10 Hz, whole samples at ``fs`` Hz (once
    per rate: see :mod:`models.filter_design`)."""
    b, a = sos2tf(butter_sos(2, BAND_HZ, "bandpass", fs))
    _, gd = group_delay((b, a), w=[10.0], fs=fs)
    return int(round(float(gd[0])))


def rate_condition_holds(kind: str, bpm: float, active: bool) -> bool:
    """Whether extreme bradycardia or tachycardia holds at a beat.

    Parameters
    ----------
    kind : str
        ``"bradycardia"`` or ``"tachycardia"``.
    bpm : float
        Mean rate of the last ``BRADY_BEATS`` / ``TACHY_BEATS`` beats, beats per minute.
    active : bool
        Whether the condition held at the previous beat.

    Returns
    -------
    bool
        It begins beyond the CinC 2015 limit (< ``BRADY_BPM``, > ``TACHY_BPM``) and, once active,
        lasts until the rate is ``RATE_HYSTERESIS_BPM`` back inside it (>= 45, <= 135 bpm).
    """
    margin = RATE_HYSTERESIS_BPM if active else 0.0
    if kind == "bradycardia":
        return bpm < BRADY_BPM + margin
    if kind == "tachycardia":
        return bpm > TACHY_BPM - margin
    raise ValueError(f"Invalid kind: expected bradycardia or tachycardia, got {kind!r}")
