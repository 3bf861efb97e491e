"""Extreme bradycardia from two leads: < 40 bpm on the rhythm's lead, not contradicted by the other.

The rhythm's QRS detector (:mod:`models.qrs`) calls a bradycardia when its last 5 beats are
slower than 40 bpm on average. A first lead whose QRS shrinks for a few seconds (a loose
electrode) loses its beats there, so 5 beats span the gap and read as < 40 bpm while the second
lead shows the heart beating at its usual rate: MIT-BIH 116 and 208 (MLII drops to ~1/50 for
4-9 s, V1 intact) raise such false bradycardias with their false asystoles
(:mod:`models.asystole_leads`). So, with two leads, the service's bradycardia is the rhythm
detector's bradycardia at those of its beats where the second lead's detector does *not* show a
rate of 40 bpm or more over the same 5-beat span (give or take ``MATCH_S``): it begins at the
first such beat (onset: the first of its 5 beats, as the detector's) and ends where the detector's
ends or at a beat where the second lead contradicts it by ``RATE_HYSTERESIS_BPM`` more (>= 45 bpm),
as the detector's own bradycardia ends (:func:`models.qrs.rate_condition_holds`).

A second lead with fewer than 2 beats in the span (lost: NaN, leads off, flat; or silent) does
not contradict: the first lead decides, as in a one-lead session. Noise that the second lead's
detector takes for beats can hold back a true bradycardia, as it can an asystole (docs/qrs.md).

Each beat waits until both detectors are final to ``MATCH_S`` after it
(:meth:`models.qrs.RhythmMonitor.decided_until`), so the events are a function of the signal
alone, never of the chunking. The state is JSON-able (lists and ints).
"""

from __future__ import annotations

import math

import numpy as np

from models.qrs import BRADY_BEATS, rate_condition_holds

MATCH_S = 0.15   # a second-lead beat this close to the span's ends still counts (s)
SPAN_MAX_S = 60.0  # the second lead's rate is measured over at most this much of a span's end (s):
                   # 5 beats at 5 bpm; it bounds the beats kept while the first lead shows none

# Queue rows [sample, order, value]: at the same sample the detector's end comes first (the beat
# that ends it is no longer slow), then its begin (decided at that beat), then the beat itself.
_END1, _BEGIN1, _BEAT1 = 0, 1, 2


class BradycardiaLeads:
    """The bradycardia condition of two leads' detectors (see the module).

    Parameters
    ----------
    fs : float
        Session sample rate, Hz.
    """

    def __init__(self, fs: float):
        self.fs = float(fs)
        self.tol = round(MATCH_S * self.fs)
        self.span_max = round(SPAN_MAX_S * self.fs)

    @staticmethod
    def initial_state() -> dict:
        """Queued inputs ``[sample, order, value]``, the rhythm detector's last beats (``b1``) and the
        second lead's recent beats (``b2``), whether the detector's bradycardia is active (``a1``)
        and the condition's onset (``on``, -1: off)."""
        return {"q": [], "b1": [], "b2": [], "a1": 0, "on": -1}

    def update(self, st: dict, events1: list, beats1: np.ndarray, beats2: np.ndarray, final: int,
               flush: bool = False) -> list[tuple[str, int, int]]:
        """Condition transitions released by this call.

        Parameters
        ----------
        st : dict
            From :meth:`initial_state`; updated in place.
        events1 : list of models.qrs.RateEvent
            This call's events of the rhythm detector; only bradycardia ones are used.
        beats1, beats2 : np.ndarray
            ``(k,)`` this call's beats of the rhythm detector and of the second lead's, samples.
        final : int
            Both detectors are final up to this sample (the smaller of their
            :meth:`models.qrs.RhythmMonitor.decided_until`).
        flush : bool
            The stream ended: every queued input is processed.

        Returns
        -------
        list of (str, int, int)
            ``("begin", onset, established)`` (onset: the first of the 5 slow beats; established:
            the beat that completes them) and ``("end", end, end)``, in order.
        """
        q = st["q"]
        beats1 = [int(b) for b in np.asarray(beats1).tolist()]
        q += [[b, _BEAT1, b] for b in beats1]
        known = sorted({int(r[2]) for r in q if r[1] == _BEAT1} | set(st["b1"]))
        for e in events1:
            if e.kind != "bradycardia":
                continue
            if e.end_sample is None:    # decided at the 5th slow beat, where it is queued: the detector
                                        # may end one run and begin the next (an earlier onset) at one beat
                i = int(np.searchsorted(known, int(e.onset_sample)))
                at = known[min(i + BRADY_BEATS - 1, len(known) - 1)]
                q.append([at, _BEGIN1, int(e.onset_sample)])
            else:
                q.append([int(e.end_sample), _END1, int(e.end_sample)])
        st["b2"] += [int(b) for b in np.asarray(beats2).tolist()]
        q.sort()
        limit = math.inf if flush else int(final) - self.tol
        out: list[tuple[str, int, int]] = []
        while q and q[0][0] <= limit:
            sample, order, _ = q.pop(0)
            if order == _END1:
                st["a1"] = 0
                if st["on"] >= 0:
                    out.append(("end", sample, sample))
                    st["on"] = -1
                continue
            if order == _BEGIN1:
                st["a1"] = 1
                continue
            st["b1"] = (st["b1"] + [sample])[-BRADY_BEATS:]
            if not st["a1"] or len(st["b1"]) < BRADY_BEATS:
                continue
            first, active = st["b1"][0], st["on"] >= 0
            # begins where the first lead's 5 beats are slow by the onset rule (the detector's own
            # condition may be active by its hysteresis only) and the second lead's are too; the
            # second lead ends it by the detector's own end rule
            bpm1 = 60.0 * self.fs * (BRADY_BEATS - 1) / max(1, sample - first)
            bpm2 = self._bpm2(st["b2"], max(first, sample - self.span_max), sample)
            slow = ((active or rate_condition_holds("bradycardia", bpm1, False))
                    and rate_condition_holds("bradycardia", bpm2, active))
            if slow and not active:
                st["on"] = first
                out.append(("begin", first, sample))
            elif not slow and active:
                out.append(("end", sample, sample))
                st["on"] = -1
        if math.isfinite(limit):                        # keep the second lead's beats the spans still need
            lo = max(st["b1"][:1] + [int(limit) - self.span_max]) - self.tol   # (later beats are past limit)
            st["b2"] = [b for b in st["b2"] if b >= lo]
        return out

    def _bpm2(self, beats2: list[int], first: int, last: int) -> float:
        """The second lead's mean rate over ``[first, last]`` (give or take ``tol``), bpm; 0 with
        fewer than 2 beats there (a lost or silent lead does not contradict)."""
        inside = [b for b in beats2 if first - self.tol <= b <= last + self.tol]
        if len(inside) < 2:
            return 0.0
        return 60.0 * self.fs * (len(inside) - 1) / max(1, last - first + 2 * self.tol)
