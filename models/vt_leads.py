"""VT runs from both leads' QRS detectors: one VT condition from two beat classifiers.

The QRS detector (:mod:`models.qrs`) follows one lead, with thresholds learnt on the patient's
usual, narrow complexes. When a VT starts, its broad complexes carry little energy in the
detector's band on some leads, and the detector misses every other one there: in the CinC 2015
true VT alarms v797l and v329l the first lead shows 2-3 of the 5-6 complexes of the VT before
the alarm, the second lead all of them. So the service runs a second detector on the second
lead and a second :class:`models.beats.BeatClassifier` on its beats (features from the same two
leads, aligned at those beats; the same weights and network gate). A VT run of either is the VT
condition; it lasts while either lasts.

**Guards.** A detector on a lead with tall T waves or pacing spikes may count them as beats, or
mark its beats far from the first lead's, and its classifier then finds runs in them (MIT-BIH
101, lead V1: 3162 detections against 1868; 7 false runs in 30 min). So a run of the second
lead's beats counts only when it was begun on 5 *alike* beats (:data:`models.beats.ALIKE`: beats
that take turns, as a detector alternating between spikes and complexes makes, look like
bidirectional VT) and when, over ``AGREE_S`` before its onset, at least ``AGREE`` of that
detector's beats lay within ``MATCH_S`` of a first-lead beat. The window ends
``REPORT_LAG_S`` before the onset (the detectors report a beat up to that late), so the
guard sees final beats only. Where the first lead shows no beat at all from ``SILENT_PRE_S``
before the run's onset to its 5th beat (the lead is lost: an electrode off, NaN),
there is nothing to agree with, and the run counts: the second lead is then the session's only
lead, as in a one-lead session. On the MIT-BIH records and the CinC 2015 training half, the
second-lead runs of such detectors agreed 0.28-0.63, those of sound ones 0.82-1.0; ``AGREE`` is
the middle of that gap (docs/beats.md, "Both leads", which also says what of the test half was
seen while choosing).

**Order.** The two classifiers decide at different times (each waits for its own beats), so the
union waits too: an event is released, in the order of the sample where it was decided (the
run's 5th beat for a begin, the beat that ended it for an end), once neither classifier can still
decide anything at or before that sample. The union is therefore a function of the signal alone,
never of the chunking, at the cost of about one beat of extra latency (at most ``REPORT_LAG_S``).

All state is JSON-able (lists and ints).
"""

from __future__ import annotations

import math

import numpy as np

from models.beats import ALIKE, RunEvent
from models.qrs import REPORT_LAG_S

AGREE = 0.7        # share of the second detector's beats within MATCH_S of a first-lead beat
AGREE_S = 30.0     # ... over this long before the run's onset (s)
MATCH_S = 0.15     # two detections of one beat (s)
SILENT_PRE_S = 1.0  # the first lead silent from this long before a second-lead run's onset (s)
KEEP_MARGIN_S = 15.0  # detector beats kept beyond AGREE_S + lag, for runs still to be decided (s)


def final_sample(pending: np.ndarray, last_beat: int, chunk_end: int, lag: int) -> int:
    """The sample at or before which a beat classifier decides nothing more.

    Parameters
    ----------
    pending : np.ndarray
        ``(k,)`` beats the classifier holds, waiting for their window or the network.
    last_beat : int
        The last beat its detector has reported (-1: none); the detector reports later beats only.
    chunk_end : int
        The first sample not yet given to the detector.
    lag : int
        Samples a detector may report a beat late (search-back, :data:`models.qrs.REPORT_LAG_S`).
    """
    reported = max(int(last_beat), chunk_end - lag - 1)        # later beats are after this
    return min(reported, int(np.min(pending)) - 1) if len(pending) else reported


class LeadRunUnion:
    """The VT condition as the union of the runs of two beat classifiers (see the module).

    Parameters
    ----------
    fs : float
        Session sample rate, Hz.
    """

    def __init__(self, fs: float):
        self.fs, self.lag = float(fs), math.ceil(REPORT_LAG_S * float(fs))
        self.keep_n = round((AGREE_S + KEEP_MARGIN_S) * self.fs) + self.lag

    @staticmethod
    def initial_state() -> dict:
        """Queued events ``[decided, stream, onset, established, end (-1: a begin), rule]``, each
        stream's run state (0 off, 1 on, -1 on but not counted), the union's onset (-1: off), the
        last union end, both detectors' recent beats and last reported beat."""
        return {"q": [], "runs": [0, 0], "onset": -1, "last_end": -1, "beats": [[], []], "last": [-1, -1]}

    def update(self, st: dict, runs: tuple[list[RunEvent], list[RunEvent]], beats: tuple[np.ndarray, np.ndarray],
               pending: tuple[np.ndarray, np.ndarray], chunk_end: int, flush: bool = False) -> list[RunEvent]:
        """Union events released by this call.

        Parameters
        ----------
        st : dict
            From :meth:`initial_state`; updated in place.
        runs : (list of RunEvent, list of RunEvent)
            This call's run events of the first-lead and the second-lead classifier.
        beats : (np.ndarray, np.ndarray)
            This call's beats of the first-lead and the second-lead detector.
        pending : (np.ndarray, np.ndarray)
            The beats each classifier still holds after this call.
        chunk_end : int
            The first sample not yet given to the detectors.
        flush : bool
            The stream ended: every queued event is released.

        Returns
        -------
        list of RunEvent
            Begins (onset, established, rule) and ends (end_sample) of the VT condition, in order.
        """
        for s, b in enumerate(beats):
            b = [int(v) for v in np.asarray(b).tolist()]
            st["beats"][s] += b
            if b:
                st["last"][s] = b[-1]
        for s, events in enumerate(runs):
            for e in events:
                if e.end_sample is None:
                    st["q"].append([int(e.established), s, int(e.onset_sample), int(e.established), -1, e.rule])
                else:
                    st["q"].append([int(e.end_sample), s, int(e.onset_sample), int(e.end_sample), int(e.end_sample), ""])
        final = math.inf if flush else min(final_sample(pending[s], st["last"][s], chunk_end, self.lag) for s in (0, 1))
        st["q"].sort(key=lambda r: (r[0], r[1]))
        out = []
        while st["q"] and st["q"][0][0] <= final:
            self._apply(st, st["q"].pop(0), out)
        if math.isfinite(final):
            lo = final - self.keep_n
            for s in (0, 1):
                st["beats"][s] = [b for b in st["beats"][s] if b >= lo]
        return out

    def _apply(self, st: dict, row: list, out: list[RunEvent]) -> None:
        _, s, onset, established, end, rule = row
        runs, (first, second) = st["runs"], st["beats"]
        if end < 0:                                          # a stream's run began
            counted = s == 0 or (rule == ALIKE and second_counts(first, second, onset, established, self.fs))
            runs[s] = 1 if counted else -1
            if counted and st["onset"] < 0:
                st["onset"] = max(onset, int(st["last_end"]))
                out.append(RunEvent(st["onset"], established, rule=rule))
            return
        was = runs[s]
        runs[s] = 0
        if was == 1 and st["onset"] >= 0 and runs[1 - s] != 1:   # the last counted run ended
            out.append(RunEvent(st["onset"], st["onset"], end))
            st["onset"], st["last_end"] = -1, end


def second_counts(first: list | np.ndarray, second: list | np.ndarray, onset: int, established: int,
                  fs: float) -> bool:
    """Whether a second-lead run of alike beats (``onset`` to its 5th beat, ``established``)
    counts: its detector agreed with the first lead's before it (:func:`agreement`), or the first
    lead's detector reported no beat from ``SILENT_PRE_S`` before the onset to ``established``
    (the first lead is lost). ``first``, ``second``: increasing beat samples."""
    a = np.asarray(first, np.int64)
    lo = onset - round(SILENT_PRE_S * fs)
    silent = not ((a >= lo) & (a <= established)).any()
    return silent or agreement(first, second, onset, fs) >= AGREE


def agreement(first: list | np.ndarray, second: list | np.ndarray, onset: int, fs: float) -> float:
    """Share of the second detector's beats in ``AGREE_S`` before ``onset`` (the window ending
    ``REPORT_LAG_S`` before it) that lie within ``MATCH_S`` of one of the first detector's beats
    (0 with fewer than 5 beats there). ``first``, ``second``: increasing beat samples."""
    hi = onset - math.ceil(REPORT_LAG_S * fs)
    a = np.asarray(first, np.int64)
    b = np.asarray(second, np.int64)
    b = b[(b >= hi - round(AGREE_S * fs)) & (b < hi)]
    if len(b) < 5 or not len(a):
        return 0.0
    j = np.searchsorted(a, b)
    left, right = a[np.clip(j - 1, 0, len(a) - 1)], a[np.clip(j, 0, len(a) - 1)]
    return float((np.minimum(np.abs(b - left), np.abs(right - b)) <= round(MATCH_S * fs)).mean())


def union_runs(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs ``[onset, end)`` of either list, overlapping ones joined (the offline union)."""
    out: list[list[int]] = []
    for s, e in sorted(first + second):
        if out and s < out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]
