"""Bradycardia from two leads (:mod:`models.brady_leads`): < 40 bpm on the rhythm's lead that
the second lead does not contradict."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import feed_rhythm_source, random_bounds

from models.brady_leads import BradycardiaLeads
from models.data.ecg import read_wfdb
from models.data.excerpts import excerpt_path
from models.qrs import RateEvent, RhythmMonitor
from service.alarms.sources import RhythmSource, beat_classifier_for

DROP = (60.0, 70.0)   # s: where the QRS shrinks to 1/50 (MIT-BIH 116's MLII does, for 7 s)


def _excerpt(shrink: list[int]) -> tuple[np.ndarray, float]:
    """The shipped real excerpt of MIT-BIH 201 (AF, MLII + V1), µV, with ``shrink`` leads at 1/50
    over DROP."""
    rec = read_wfdb(excerpt_path("mitdb_201_af"))
    x, fs = rec.signal.astype(np.float64), rec.sample_rate
    a, b = (int(t * fs) for t in DROP)
    x[a:b, shrink] /= 50.0
    return x, fs


def _bradycardias(x: np.ndarray, fs: float, bounds: list[int] | None = None, roundtrip: bool = False) -> list[tuple]:
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon))
    bounds = list(range(int(fs), len(x), int(fs))) if bounds is None else bounds
    return [e for e in feed_rhythm_source(src, x, bounds, roundtrip) if e[1] == "bradycardia"]


def _episodes(events: list[tuple]) -> list[tuple[int, int]]:
    """(onset, end) of begin/end pairs."""
    return [(b[2], e[2]) for b, e in zip(events[::2], events[1::2])]


def test_a_pause_on_the_first_lead_only_is_no_bradycardia():
    """The first lead's QRS shrinks for 10 s: its 5 beats around the gap read < 40 bpm; the second
    lead shows the beats there, so the two-lead session does not raise that one. The excerpt's own
    bradycardias (201: AF with long pauses, on both leads) are raised as on the first lead alone."""
    x, fs = _excerpt([0])
    one = _episodes(_bradycardias(x[:, :1], fs))
    at_drop = [e for e in one if e[0] / fs < DROP[1] and e[1] / fs > DROP[0]]
    assert len(at_drop) == 1 and len(one) >= 3
    assert _episodes(_bradycardias(x, fs)) == [e for e in one if e not in at_drop]


def test_both_leads_slow_is_the_first_leads_bradycardia_on_any_chunking():
    """Both leads shrink: the bradycardias are the first lead's, with the same onsets,
    confirmations and ends, the one over the drop included; the same on any chunking, through JSON
    snapshots."""
    x, fs = _excerpt([0, 1])
    got = _bradycardias(x, fs)
    assert got == _bradycardias(x[:, :1], fs)
    assert any(s / fs < DROP[1] and e / fs > DROP[0] for s, e in _episodes(got))
    for seed in range(3):
        assert _bradycardias(x, fs, random_bounds(len(x), fs, np.random.default_rng(seed)), roundtrip=True) == got


@pytest.mark.parametrize("loss", ["nan", "flat"])
def test_a_lost_second_lead_does_not_contradict(loss):
    """The second lead lost from 40 s (NaN, or one value held): the first lead's bradycardia, as
    in a one-lead session."""
    x, fs = _excerpt([0])
    x[int(40 * fs):, 1] = np.nan if loss == "nan" else x[int(40 * fs), 1]
    one = _bradycardias(x[:, :1], fs)
    assert one and _bradycardias(x, fs) == one


def test_a_contradicting_second_lead_ends_the_condition():
    """Slow first-lead beats every 2 s (30 bpm); the second lead at 30 bpm too, then beating every
    0.75 s (80 bpm) from 21 s: the condition begins at the 5th slow beat and ends at the first beat
    whose span the second lead contradicts; nothing is decided past ``final`` less the match window."""
    fs = 250.0
    s = lambda t: int(round(t * fs))                       # noqa: E731
    b1 = [s(t) for t in range(1, 30, 2)]                   # 1, 3, ..., 29 s
    b2 = [s(t) + 5 for t in range(1, 21, 2)] + [s(21 + 0.75 * k) for k in range(12)]
    c = BradycardiaLeads(fs)
    st = c.initial_state()
    events = [RateEvent("bradycardia", b1[0])]             # decided at the 5th beat (9 s)
    assert c.update(st, events, np.array(b1[:5]), np.array(b2[:5]), final=s(9.0)) == []
    assert c.update(st, [], np.array([], np.int64), np.array([], np.int64), final=s(9.2)) == [
        ("begin", b1[0], b1[4])]
    out = c.update(st, [], np.array(b1[5:]), np.array(b2[5:]), final=s(40.0))
    # the span of the beat at 25 s (17-25 s) holds second-lead beats 17, 19 and 21-25.5 s: >= 40 bpm
    assert out == [("end", s(25.0), s(25.0))]


@pytest.mark.datasets
def test_mitdb_116_amplitude_drops_are_no_bradycardia_with_both_leads():
    """MIT-BIH 116: the two MLII drops (V1 intact) give the first lead two bradycardias (none in
    the reference); both leads none."""
    from models.data.paths import datasets_dir
    from models.qrs_eval import BRADY_TWO_LEADS, mitdb_record

    path = datasets_dir() / "mitdb" / "116"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"MIT-BIH 116 not found under {datasets_dir()} (set VIGIL_DATASETS)")
    cond = mitdb_record(path)["conditions"]
    assert cond["bradycardia"]["ref"] == 0 and cond["bradycardia"]["det"] == 2
    assert cond[BRADY_TWO_LEADS]["det"] == 0


def test_the_second_leads_beats_kept_stay_bounded_while_the_first_lead_shows_none():
    """The first lead shows no beat for 20 min while the second beats every second: the state keeps
    about SPAN_MAX_S of the second lead's beats, not all of them."""
    from models.brady_leads import SPAN_MAX_S

    fs = 250.0
    c = BradycardiaLeads(fs)
    st = c.initial_state()
    for t in range(1, 1200):
        c.update(st, [], np.array([], np.int64), np.array([int(t * fs)]), final=int((t + 1) * fs))
    assert len(st["b2"]) <= SPAN_MAX_S + 2


def test_a_run_that_ends_and_begins_again_at_one_beat_is_kept():
    """The detector may end its bradycardia and begin the next (with an earlier onset, the first of
    the new 5 beats) at the same beat, as on CinC 2015 v448s: the condition ends there and begins
    again at once, with the second lead silent."""
    fs = 250.0
    s = lambda t: int(round(t * fs))                       # noqa: E731
    b1 = [s(t) for t in range(1, 14, 2)]                   # 1, 3, ..., 13 s
    c = BradycardiaLeads(fs)
    events = [RateEvent("bradycardia", s(1)), RateEvent("bradycardia", s(1), s(11)), RateEvent("bradycardia", s(3))]
    got = c.update(c.initial_state(), events, np.array(b1), np.array([], np.int64), final=0, flush=True)
    assert got == [("begin", s(1), s(9)), ("end", s(11), s(11)), ("begin", s(3), s(11))]


def _second_lead(b1: list[int], fs: float, extra) -> list[int]:
    """The first lead's beats plus one beat 1 s after beat i wherever ``extra(i, seconds)``."""
    return sorted(b1 + [b + int(fs) for i, b in enumerate(b1[:-1]) if extra(i, b / fs)])


def test_the_second_lead_ends_the_condition_only_once_back_5_bpm_inside_the_limit():
    """First-lead beats every 2 s (30 bpm). The second lead shows them, then from 17 s one beat
    more in every other interval (7 beats in each 5-beat span: 43 bpm), then from 29 s in three of
    four (8 beats: 51 bpm). Inside the 5-bpm band (40-45) the second lead neither ends the running
    condition nor (test below) lets one begin; at 51 bpm it ends it."""
    fs = 250.0
    b1 = [int(t * fs) for t in range(1, 40, 2)]           # 1, 3, ..., 39 s
    b2 = _second_lead(b1, fs, lambda i, t: (17 <= t < 29 and i % 2) or (t >= 29 and i % 4))
    c = BradycardiaLeads(fs)
    out = c.update(c.initial_state(), [RateEvent("bradycardia", b1[0])], np.array(b1), np.array(b2), final=0,
                   flush=True)
    assert out[0] == ("begin", b1[0], b1[4]) and len(out) == 2
    assert out[1][0] == "end" and 31 * fs <= out[1][1] <= 37 * fs


def test_a_second_lead_inside_the_band_does_not_let_a_bradycardia_begin():
    """The same first lead; the second lead at 43 bpm throughout (>= 40): no bradycardia."""
    fs = 250.0
    b1 = [int(t * fs) for t in range(1, 40, 2)]
    b2 = _second_lead(b1, fs, lambda i, t: i % 2)
    c = BradycardiaLeads(fs)
    assert c.update(c.initial_state(), [RateEvent("bradycardia", b1[0])], np.array(b1), np.array(b2), final=0,
                    flush=True) == []
