"""Asystole from two leads: no QRS on either lead for 4 s.

The rhythm's QRS detector (:mod:`models.qrs`) follows one lead (the first, or the second while
the first is lost, :mod:`models.rate_lead`). A first lead whose QRS shrinks to a fraction of its
usual size for a few seconds (a loose electrode, a change of axis) reads as asystole there while
the second lead shows every beat: MIT-BIH 116 and 208 (MLII drops to ~1/50 for 4-9 s, V1 intact)
and the CinC 2015 records v233l, v204s and v200s raise such false asystoles. Multi-lead monitors
call asystole only when no lead shows a QRS. So, with two leads, the service's asystole is the
first detector's asystole while the second lead's detector (the one :mod:`models.vt_leads` runs
for VT) also finds no beat: it begins ``ASYSTOLE_S`` after the last beat on *either* lead, and
ends at the next beat on either lead.

A second lead that is lost (NaN, leads off, flat: :mod:`models.flatline`) has no beats, so it
holds nothing back: the first lead alone decides, as in a one-lead session. Noise that the
second lead's detector takes for beats can hold back a true asystole on the first; the
detector's thresholds are learnt on the patient's QRS complexes, and search-back needs half of
that level, so low-level noise does not pass (docs/qrs.md, "Asystole from two leads").

**Order.** Each decision waits until both detectors are final up to its sample
(:meth:`models.qrs.RhythmMonitor.decided_until`), so the events are a function of the signal
alone, never of the chunking. The first detector declares an asystole once it is final to the
asystole's 4-s mark; the second is then final there too unless it holds a peak a search-back
may still take (at most ``REPORT_LAG_S`` later). The state is JSON-able (lists and ints).
"""

from __future__ import annotations

import math

import numpy as np

from models.qrs import ASYSTOLE_S

# Queue rows [sample, order, value]: at the same sample a second-lead beat comes first (it ends
# a condition), then the first detector's end, then its begin.
_BEAT2, _END1, _BEGIN1 = 0, 1, 2


class AsystoleLeads:
    """The asystole condition of two leads' detectors (see the module).

    Parameters
    ----------
    fs : float
        Session sample rate, Hz.
    """

    def __init__(self, fs: float):
        self.fs = float(fs)
        self.asys = round(ASYSTOLE_S * self.fs)

    @staticmethod
    def initial_state() -> dict:
        """Queued inputs ``[sample, order, value]``, the first detector's active asystole onset
        (``a1``, -1: none), the last second-lead beat processed (``last2``), the condition's onset
        (``on``, -1: off)."""
        return {"q": [], "a1": -1, "last2": -1, "on": -1}

    def update(self, st: dict, events1: list, beats2: np.ndarray, final: int,
               flush: bool = False) -> list[tuple[str, int, int]]:
        """Condition transitions released by this call.

        Parameters
        ----------
        st : dict
            From :meth:`initial_state`; updated in place.
        events1 : list of models.qrs.RateEvent
            This call's events of the first (rhythm) detector; only asystole ones are used.
        beats2 : np.ndarray
            ``(k,)`` this call's beats of the second lead's detector, samples.
        final : int
            Both detectors are final up to this sample (the smaller of their
            :meth:`models.qrs.RhythmMonitor.decided_until`).
        flush : bool
            The stream ended: every queued input is processed.

        Returns
        -------
        list of (str, int, int)
            ``("begin", onset, established)`` (onset: the last beat on either lead, or where the
            first lead's signal began; established: 4 s later) and ``("end", end, end)`` (the next
            beat on either lead, or where the first detector's asystole ended), in order.
        """
        q = st["q"]
        for e in events1:
            if e.kind != "asystole":
                continue
            if e.end_sample is None:      # the first detector's asystole is met 4 s after its onset
                q.append([int(e.onset_sample) + self.asys, _BEGIN1, int(e.onset_sample)])
            else:
                q.append([int(e.end_sample), _END1, int(e.end_sample)])
        q += [[int(b), _BEAT2, int(b)] for b in np.asarray(beats2).tolist()]
        q.sort()
        limit = math.inf if flush else int(final)
        out: list[tuple[str, int, int]] = []
        while True:
            timer = (max(st["a1"], st["last2"]) + self.asys) if st["a1"] >= 0 and st["on"] < 0 else math.inf
            nxt = q[0][0] if q else math.inf
            if timer <= limit and timer < nxt:          # 4 s without a beat on either lead
                st["on"] = max(st["a1"], st["last2"])
                out.append(("begin", st["on"], int(timer)))
                continue
            if not q or nxt > limit:
                return out
            sample, order, value = q.pop(0)
            if order == _BEAT2:
                st["last2"] = value
            elif order == _BEGIN1:
                st["a1"] = value
                continue
            else:
                st["a1"] = -1
            if st["on"] >= 0:                            # a beat on either lead ends it
                out.append(("end", sample, sample))
                st["on"] = -1
