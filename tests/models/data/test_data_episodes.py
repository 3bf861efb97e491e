"""Reference episode definitions on hand-made annotations (answers worked out by hand)."""

from __future__ import annotations

import math

import pytest

from models.data.episodes import (
    af_episodes,
    episode_stats,
    merge_intervals,
    short_vt_runs,
    subtract_intervals,
    szcore_events,
    szcore_score,
    ventricular_runs,
    vt_episodes,
)

FS = 100.0  # Hz, keeps the arithmetic readable: 1 s = 100 samples


def s(seconds: float) -> int:
    return round(seconds * FS)


# --- interval helpers ----------------------------------------------------------------------

def test_merge_intervals_gap_is_strict():
    assert merge_intervals([(0, 10), (19, 30)], max_gap=10) == [(0, 30)]
    assert merge_intervals([(0, 10), (20, 30)], max_gap=10) == [(0, 10), (20, 30)]
    assert merge_intervals([(20, 30), (0, 10), (10, 12)]) == [(0, 12), (20, 30)]


def test_subtract_intervals():
    assert subtract_intervals([(0, 100)], [(10, 20), (50, 200)]) == [(0, 10), (20, 50)]
    assert subtract_intervals([(0, 10)], []) == [(0, 10)]


# --- AF ------------------------------------------------------------------------------------

def test_af_join_below_10_s_and_not_at_10_s():
    # learning_s=0 to look at joining alone. Gaps 9.99 s (joined) and 10 s (not joined).
    rhythms = [
        ("(AFIB", s(0), s(20)), ("(N", s(20), s(29.99)), ("(AFIB", s(29.99), s(50)),
        ("(N", s(50), s(60)), ("(AFIB", s(60), s(100)),
    ]
    ref = af_episodes(rhythms, FS, s(100), learning_s=0)
    assert ref.episodes == [(s(0), s(50)), (s(60), s(100))]


def test_af_minimum_30_s_after_joining():
    # 15 s + 5 s gap + 15 s = 35 s once joined: kept. A lone 29.99 s episode: dropped.
    rhythms = [
        ("(AFIB", s(0), s(15)), ("(N", s(15), s(20)), ("(AFIB", s(20), s(35)),
        ("(N", s(35), s(100)), ("(AFIB", s(100), s(129.99)), ("(N", s(129.99), s(200)),
        ("(AFIB", s(200), s(230)),
    ]
    ref = af_episodes(rhythms, FS, s(230), learning_s=0)
    assert ref.episodes == [(s(0), s(35)), (s(200), s(230))]  # exactly 30 s is kept


def test_af_learning_period_clips_then_applies_minimum():
    # (AFIB 200-320 s -> 300-320 s after the 5-min learning period: 20 s, dropped.
    # (AFIB 250-400 s -> 300-400 s: 100 s, kept and clipped.
    rhythms = [("(AFIB", s(200), s(320)), ("(N", s(320), s(1000))]
    assert af_episodes(rhythms, FS, s(1000)).episodes == []
    rhythms = [("(AFIB", s(250), s(400)), ("(N", s(400), s(1000))]
    assert af_episodes(rhythms, FS, s(1000)).episodes == [(s(300), s(400))]


def test_afl_is_neither_and_not_af():
    rhythms = [
        ("(N", s(0), s(400)), ("(AFL", s(400), s(500)), ("(N", s(500), s(600)),
        ("(AFIB", s(600), s(700)), ("(AFL", s(700), s(705)), ("(AFIB", s(705), s(800)),
    ]
    ref = af_episodes(rhythms, FS, s(800))
    # The 5-s flutter between two AFIB stretches is bridged by the < 10 s join: it is AF.
    assert ref.episodes == [(s(600), s(800))]
    assert ref.neither == [(s(400), s(500))]


def test_af_on_a_record_ending_in_af():
    rhythms = [("(N", 0, s(400)), ("(AFIB", s(400), s(600))]
    assert af_episodes(rhythms, FS).episodes == [(s(400), s(600))]


# --- VT ------------------------------------------------------------------------------------

def _beats(pattern: str, rr_s: float, start: float = 10.0):
    """Beat samples and symbols, one beat every rr_s seconds."""
    return [s(start + k * rr_s) for k in range(len(pattern))], list(pattern)


def test_vt_five_beats_fast_is_an_episode_four_is_a_short_run():
    # RR 0.5 s = 120 bpm.
    samples, symbols = _beats("NNVVVVVNNVVVVNN", 0.5)
    assert vt_episodes(samples, symbols, FS) == [(samples[2], samples[6] + 1)]
    assert short_vt_runs(samples, symbols, FS) == [(samples[9], samples[12] + 1)]


def test_vt_rate_must_exceed_100_bpm():
    samples, symbols = _beats("NVVVVVN", 0.6)  # exactly 100 bpm: not VT
    assert vt_episodes(samples, symbols, FS) == []
    samples, symbols = _beats("NVVVVVN", 0.59)  # 101.7 bpm
    assert len(vt_episodes(samples, symbols, FS)) == 1


def test_vt_escape_beats_count_other_beats_break_non_beats_do_not():
    samples, symbols = _beats("NVVEVVN", 0.5)  # E is ventricular: one 5-beat run
    assert len(vt_episodes(samples, symbols, FS)) == 1
    samples, symbols = _beats("NVVFVVN", 0.5)  # a fusion beat splits it: two 2-beat runs
    assert vt_episodes(samples, symbols, FS) == []
    assert ventricular_runs(samples, symbols, FS, min_beats=2) != []
    samples, symbols = _beats("NVV+VVVN", 0.4)  # a rhythm annotation is not a beat
    assert vt_episodes(samples, symbols, FS) == [(samples[1], samples[6] + 1)]


# --- episode_stats -------------------------------------------------------------------------

def test_episode_stats_any_overlap_and_durations():
    ref = [(100, 200), (300, 400), (600, 700)]
    det = [(150, 250), (500, 550), (650, 660)]
    st = episode_stats(ref, det, 1000)
    assert st["tp_reference"] == 2 and st["n_reference"] == 3
    assert st["episode_se"] == pytest.approx(2 / 3)
    assert st["tp_detected"] == 2 and st["fp_detected"] == 1
    assert st["episode_ppv"] == pytest.approx(2 / 3)
    assert st["overlap_samples"] == 50 + 10
    assert st["duration_se"] == pytest.approx(60 / 300)
    assert st["duration_ppv"] == pytest.approx(60 / 160)


def test_episode_stats_excluded_time_is_not_false():
    ref = [(100, 200)]
    det = [(120, 130), (500, 520), (800, 850)]
    st = episode_stats(ref, det, 1000, exclude=[(490, 600)])
    assert st["ignored_detected"] == 1 and st["fp_detected"] == 1 and st["tp_detected"] == 1
    assert st["episode_ppv"] == pytest.approx(1 / 2)
    assert st["detected_samples"] == 10 + 50  # the 20 excluded samples do not count
    assert st["duration_ppv"] == pytest.approx(10 / 60)


def test_episode_stats_empty_is_nan():
    st = episode_stats([], [], 100)
    assert math.isnan(st["episode_se"]) and math.isnan(st["episode_ppv"])


# --- SzCORE --------------------------------------------------------------------------------

def test_szcore_merge_below_90_s_and_split_above_5_min():
    assert szcore_events([(0, 10), (99.9, 110)]) == [(0, 110)]  # gap 89.9 s
    assert szcore_events([(0, 10), (100, 110)]) == [(0, 10), (100, 110)]  # gap 90 s
    assert szcore_events([(0, 700)]) == [(0, 300), (300, 600), (600, 700)]
    assert szcore_events([(0, 300)]) == [(0, 300)]


def test_szcore_tolerance_30_s_before_60_s_after():
    ref = [(1000, 1100)]
    total = 3600.0
    # Detection starting 29 s before onset: inside the 30-s tolerance -> hit, no FP.
    sc = szcore_score(ref, [(971, 975)], total)
    assert (sc["tp"], sc["fp"]) == (1, 0)
    assert sc["latencies_s"] == [-29.0]
    # Starting 40 s before: still a hit (it overlaps the window) but also a false positive,
    # and its latency is clipped to the window start.
    sc = szcore_score(ref, [(960, 975)], total)
    assert (sc["tp"], sc["fp"]) == (1, 1)
    assert sc["latencies_s"] == [-30.0]
    # Ending 31 s before onset: no overlap with the window -> miss and FP.
    assert szcore_score(ref, [(960, 969)], total)["tp"] == 0
    # Detection starting 59 s after the end: hit; starting 61 s after: miss + FP.
    assert szcore_score(ref, [(1159, 1165)], total)["tp"] == 1
    sc = szcore_score(ref, [(1161, 1165)], total)
    assert (sc["tp"], sc["fp"], sc["sensitivity"], sc["precision"]) == (0, 1, 0.0, 0.0)
    assert sc["f1"] == 0.0


def test_szcore_detection_spilling_out_of_the_window_is_also_false():
    sc = szcore_score([(1000, 1100)], [(1050, 1200)], 3600.0)  # window ends at 1160
    assert (sc["tp"], sc["fp"]) == (1, 1)
    assert sc["latencies_s"] == [50.0]


def test_szcore_counts_and_rates():
    ref = [(600, 660), (700, 720), (5000, 5100)]  # first two merge (gap 40 s): 2 events
    det = [(610, 620), (8000, 8010), (9000, 9010)]
    sc = szcore_score(ref, det, 7200.0 + 3600.0)
    assert sc["n_reference"] == 2 and sc["tp"] == 1 and sc["fp"] == 2
    assert sc["sensitivity"] == 0.5 and sc["precision"] == pytest.approx(1 / 3)
    assert sc["f1"] == pytest.approx(2 * 0.5 / 3 / (0.5 + 1 / 3))
    assert sc["hours"] == 3.0
    assert sc["background_hours"] == pytest.approx((10800 - 120 - 100) / 3600)
    assert sc["fp_per_hour"] == pytest.approx(2 / sc["background_hours"])
    assert sc["latencies_s"][0] == 10.0 and math.isnan(sc["latencies_s"][1])


def test_szcore_no_reference_no_detection():
    sc = szcore_score([], [], 3600.0)
    assert math.isnan(sc["sensitivity"]) and math.isnan(sc["precision"]) and math.isnan(sc["f1"])
    assert sc["fp"] == 0 and sc["fp_per_hour"] == 0.0
