"""Reference episode definitions and scoring (DESIGN §7), as pure functions on annotations.

Intervals are half-open ``[start, end)``: integer sample indices for ECG episodes, float
seconds for seizure events. Nothing here reads files; feed it what
:mod:`models.data.ecg` / :mod:`models.data.eeg` return.

- AF: MIT-BIH ``(AFIB`` rhythm intervals joined when less than 10 s apart, clipped to after
  the 5-min learning period, kept when at least 30 s long; ``(AFL`` is "neither" (a detection
  overlapping it is not a false one).
- VT: runs of ≥ 5 consecutive ventricular beats (``V``, ``E``) faster than 100 bpm; the
  3–4 beat runs (most MIT-BIH ``(VT`` annotations) are reported separately.
- Seizures: SzCORE event scoring (Dan et al., Epilepsia 2025; the ``timescoring`` package's
  ``EventScoring``): events < 90 s apart merged, events > 5 min split, any overlap with the
  reference extended by 30 s before and 60 s after.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .labels import BEAT_SYMBOLS, RHYTHM_AF, RHYTHM_AFL, VENTRICULAR_BEATS

Interval = tuple[int, int]  # [start, end) samples
Event = tuple[float, float]  # [start, end) seconds

AF_JOIN_GAP_S = 10.0  # AFIB intervals closer than this are one episode
AF_MIN_DURATION_S = 30.0  # shorter episodes are dropped
LEARNING_PERIOD_S = 300.0  # the detector's learning period, not scored
VT_MIN_BEATS = 5
VT_SHORT_RUN_BEATS = (3, 4)
VT_MIN_RATE_BPM = 100.0  # strictly faster than this

SZCORE_MERGE_GAP_S = 90.0
SZCORE_MAX_EVENT_S = 300.0
SZCORE_TOLERANCE_BEFORE_S = 30.0
SZCORE_TOLERANCE_AFTER_S = 60.0


# --- interval algebra ----------------------------------------------------------------------

def merge_intervals(intervals, max_gap: float = 0) -> list:
    """Sort and join intervals that overlap, touch, or are less than ``max_gap`` apart."""
    out: list = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if out and (start - out[-1][1] < max_gap or start <= out[-1][1]):
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def clip_intervals(intervals, lo: float, hi: float) -> list:
    """Intervals cut to ``[lo, hi)``; empty ones dropped."""
    return [(max(s, lo), min(e, hi)) for s, e in intervals if min(e, hi) > max(s, lo)]


def subtract_intervals(intervals, remove) -> list:
    """Parts of ``intervals`` not covered by ``remove``."""
    remove = merge_intervals(remove)
    out = []
    for s, e in intervals:
        cur = s
        for rs, re_ in remove:
            if re_ <= cur or rs >= e:
                continue
            if rs > cur:
                out.append((cur, rs))
            cur = max(cur, re_)
        if cur < e:
            out.append((cur, e))
    return out


def total_length(intervals) -> float:
    """Summed length of the union of ``intervals``."""
    return sum(e - s for s, e in merge_intervals(intervals))


def interval_mask(intervals, n_samples: int) -> np.ndarray:
    """``(n_samples,)`` bool, True inside any interval (clipped to the record)."""
    mask = np.zeros(int(n_samples), dtype=bool)
    for s, e in clip_intervals(intervals, 0, n_samples):
        mask[int(s):int(e)] = True
    return mask


# --- AF ------------------------------------------------------------------------------------

class AfReference(NamedTuple):
    """Reference AF episodes of one record, in samples."""

    episodes: list[Interval]  # AF episodes, [start, end)
    neither: list[Interval]  # atrial flutter: neither AF nor non-AF


def af_episodes(
    rhythms: list[tuple[str, int, int]],
    sample_rate: float,
    n_samples: int | None = None,
    *,
    join_gap_s: float = AF_JOIN_GAP_S,
    min_duration_s: float = AF_MIN_DURATION_S,
    learning_s: float = LEARNING_PERIOD_S,
) -> AfReference:
    """Reference AF episodes from MIT-BIH rhythm intervals.

    Parameters
    ----------
    rhythms : list of (label, start, end)
        Rhythm intervals in samples, as :func:`models.data.ecg.mitdb_rhythms` returns.
    sample_rate : float
        Hz of the sample indices.
    n_samples : int, optional
        Record length; default the end of the last rhythm.
    join_gap_s : float
        ``(AFIB`` intervals whose gap is strictly shorter than this (s) are joined, whatever
        lies between them (in 203: 3–9 beat ``(VT`` runs, a ``(T`` stretch).
    min_duration_s : float
        Episodes shorter than this (s), measured after clipping, are dropped.
    learning_s : float
        Scoring starts here (s); episodes are clipped to ``[learning_s, n_samples)``. Use 0 on
        short excerpts.

    Returns
    -------
    AfReference
        ``episodes``: AF episodes, sorted, half-open samples. ``neither``: ``(AFL`` intervals,
        joined and clipped the same way, minus any part inside an AF episode (no minimum
        length).
    """
    end = n_samples if n_samples is not None else max((e for _, _, e in rhythms), default=0)
    lo = round(learning_s * sample_rate)
    af = [(s, e) for label, s, e in rhythms if label == RHYTHM_AF]
    af = clip_intervals(merge_intervals(af, max_gap=join_gap_s * sample_rate), lo, end)
    af = [(s, e) for s, e in af if e - s >= min_duration_s * sample_rate]
    afl = [(s, e) for label, s, e in rhythms if label == RHYTHM_AFL]
    afl = merge_intervals(afl, max_gap=join_gap_s * sample_rate)
    afl = subtract_intervals(clip_intervals(afl, lo, end), af)
    return AfReference(episodes=af, neither=afl)


# --- VT ------------------------------------------------------------------------------------

def ventricular_runs(
    samples: np.ndarray | list[int],
    symbols: list[str],
    sample_rate: float,
    *,
    min_beats: int = VT_MIN_BEATS,
    max_beats: int | None = None,
    min_rate_bpm: float = VT_MIN_RATE_BPM,
) -> list[Interval]:
    """Runs of consecutive ventricular beats (``V``, ``E``) faster than ``min_rate_bpm``.

    Parameters
    ----------
    samples, symbols
        Annotations in time order; non-beat symbols (``+``, ``~``, ``|``, ...) are skipped, any
        other beat (``N``, ``A``, ``F``, ``Q``, ...) ends a run.
    sample_rate : float
        Hz of ``samples``.
    min_beats, max_beats : int
        Keep runs of ``min_beats <= n <= max_beats`` beats (``max_beats`` None: no limit).
    min_rate_bpm : float
        The run's mean rate, ``60 (n - 1) / (t_last - t_first)`` in bpm, must exceed this.

    Returns
    -------
    list of (start, end)
        ``[first beat, last beat + 1)`` in samples.
    """
    beats = [(int(s), y) for s, y in zip(samples, symbols) if y in BEAT_SYMBOLS]
    out = []
    i = 0
    while i < len(beats):
        if beats[i][1] not in VENTRICULAR_BEATS:
            i += 1
            continue
        j = i
        while j + 1 < len(beats) and beats[j + 1][1] in VENTRICULAR_BEATS:
            j += 1
        n = j - i + 1
        first, last = beats[i][0], beats[j][0]
        if n >= min_beats and (max_beats is None or n <= max_beats) and n >= 2 and last > first:
            rate_bpm = 60.0 * (n - 1) * sample_rate / (last - first)
            if rate_bpm > min_rate_bpm:
                out.append((first, last + 1))
        i = j + 1
    return out


def vt_episodes(samples, symbols, sample_rate: float) -> list[Interval]:
    """Reference VT episodes: runs of ≥ 5 ventricular beats at > 100 bpm (samples)."""
    return ventricular_runs(samples, symbols, sample_rate, min_beats=VT_MIN_BEATS)


def short_vt_runs(samples, symbols, sample_rate: float) -> list[Interval]:
    """Runs of 3–4 ventricular beats at > 100 bpm (samples), reported apart from VT episodes."""
    lo, hi = VT_SHORT_RUN_BEATS
    return ventricular_runs(samples, symbols, sample_rate, min_beats=lo, max_beats=hi)


# --- episode scoring -----------------------------------------------------------------------

def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def episode_stats(
    reference: list[Interval],
    detected: list[Interval],
    n_samples: int,
    exclude: list[Interval] | None = None,
) -> dict:
    """Episode and duration sensitivity / positive predictivity with any-overlap matching.

    Parameters
    ----------
    reference, detected : list of (start, end)
        Half-open sample intervals (clipped to the record).
    n_samples : int
        Record length.
    exclude : list of (start, end), optional
        Neither positive nor negative (e.g. atrial flutter): a detection that overlaps only
        excluded time is not counted at all, and excluded samples count in no duration.

    Returns
    -------
    dict
        ``episode_se`` (reference episodes overlapped by a detection / reference episodes),
        ``episode_ppv`` (detections overlapping a reference episode / counted detections),
        ``duration_se`` (overlap / reference samples), ``duration_ppv`` (overlap / detected
        samples), all outside ``exclude`` and NaN when undefined; counts ``n_reference``,
        ``n_detected`` (counted), ``tp_reference``, ``tp_detected``, ``fp_detected``,
        ``ignored_detected``; sample totals ``reference_samples``, ``detected_samples``,
        ``overlap_samples``.
    """
    reference = clip_intervals(reference, 0, n_samples)
    detected = clip_intervals(detected, 0, n_samples)
    ref_mask = interval_mask(reference, n_samples)  # (t,) bool
    det_mask = interval_mask(detected, n_samples)  # (t,) bool
    keep = ~interval_mask(exclude or [], n_samples)  # (t,) bool, scored samples
    excl = ~keep

    tp_ref = sum(bool(det_mask[s:e].any()) for s, e in reference)
    tp_det = fp_det = ignored = 0
    for s, e in detected:
        if ref_mask[s:e].any():
            tp_det += 1
        elif excl[s:e].any():
            ignored += 1
        else:
            fp_det += 1
    ref_n = int((ref_mask & keep).sum())
    det_n = int((det_mask & keep).sum())
    both = int((ref_mask & det_mask & keep).sum())
    return {
        "episode_se": _ratio(tp_ref, len(reference)),
        "episode_ppv": _ratio(tp_det, tp_det + fp_det),
        "duration_se": _ratio(both, ref_n),
        "duration_ppv": _ratio(both, det_n),
        "n_reference": len(reference),
        "n_detected": tp_det + fp_det,
        "tp_reference": tp_ref,
        "tp_detected": tp_det,
        "fp_detected": fp_det,
        "ignored_detected": ignored,
        "reference_samples": ref_n,
        "detected_samples": det_n,
        "overlap_samples": both,
    }


# --- SzCORE --------------------------------------------------------------------------------

def szcore_events(
    events_s: list[Event],
    *,
    merge_gap_s: float = SZCORE_MERGE_GAP_S,
    max_duration_s: float = SZCORE_MAX_EVENT_S,
) -> list[Event]:
    """SzCORE event post-processing: merge events < 90 s apart, then split events > 5 min.

    A long event is cut into consecutive ``max_duration_s`` pieces and a shorter remainder,
    as ``timescoring``'s ``EventScoring`` does. Seconds in, seconds out.
    """
    out: list[Event] = []
    for s, e in merge_intervals([(float(s), float(e)) for s, e in events_s], max_gap=merge_gap_s):
        while e - s > max_duration_s:
            out.append((s, s + max_duration_s))
            s += max_duration_s
        out.append((s, e))
    return out


def szcore_score(
    reference_events_s: list[Event],
    detected_events_s: list[Event],
    total_s: float,
    *,
    tolerance_before_s: float = SZCORE_TOLERANCE_BEFORE_S,
    tolerance_after_s: float = SZCORE_TOLERANCE_AFTER_S,
    merge_gap_s: float = SZCORE_MERGE_GAP_S,
    max_duration_s: float = SZCORE_MAX_EVENT_S,
) -> dict:
    """SzCORE any-overlap event scoring of one recording (continuous time, seconds).

    Both event lists go through :func:`szcore_events`. A reference event is detected when a
    detection overlaps it extended by ``tolerance_before_s`` before and ``tolerance_after_s``
    after (clipped to the recording). A detection is false when any part of it lies outside
    every detected reference's extended window, so one detection may count as a hit and a
    false positive (as in ``timescoring``).

    Parameters
    ----------
    reference_events_s, detected_events_s : list of (start, end)
        Seizure events in seconds from the recording's start.
    total_s : float
        Recording length (s).

    Returns
    -------
    dict
        ``sensitivity`` (tp / n_reference), ``precision`` (tp / (tp + fp)), ``f1`` (NaN when
        either is undefined), ``tp``, ``fp``, ``n_reference``, ``hours`` (recording),
        ``background_hours`` (recording minus reference events), ``fp_per_hour`` (fp per
        background hour), ``latencies_s`` (per reference event: onset of the earliest
        matching detection minus the reference onset, may be down to ``-tolerance_before_s``;
        NaN when missed), and the processed ``reference_events`` / ``detected_events``.
    """
    ref = szcore_events(clip_intervals(reference_events_s, 0.0, total_s),
                        merge_gap_s=merge_gap_s, max_duration_s=max_duration_s)
    hyp = szcore_events(clip_intervals(detected_events_s, 0.0, total_s),
                        merge_gap_s=merge_gap_s, max_duration_s=max_duration_s)
    hit_windows: list[Event] = []
    latencies = []
    for s, e in ref:
        ws, we = max(0.0, s - tolerance_before_s), min(total_s, e + tolerance_after_s)
        onsets = [hs for hs, he in hyp if min(he, we) > max(hs, ws)]
        if onsets:
            hit_windows.append((ws, we))
            latencies.append(max(min(onsets), ws) - s)
        else:
            latencies.append(math.nan)
    tp = len(hit_windows)
    fp = sum(total_length(subtract_intervals([h], hit_windows)) > 1e-9 for h in hyp)
    sensitivity = _ratio(tp, len(ref))
    precision = _ratio(tp, tp + fp)
    if math.isnan(sensitivity) or math.isnan(precision):
        f1 = math.nan
    elif sensitivity + precision == 0:
        f1 = 0.0
    else:
        f1 = 2 * sensitivity * precision / (sensitivity + precision)
    background_h = (total_s - total_length(ref)) / 3600.0
    return {
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "n_reference": len(ref),
        "hours": total_s / 3600.0,
        "background_hours": background_h,
        "fp_per_hour": _ratio(fp, background_h),
        "latencies_s": latencies,
        "reference_events": ref,
        "detected_events": hyp,
    }
