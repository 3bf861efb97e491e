"""Asystole from two leads (:mod:`models.asystole_leads`): no QRS on either lead for 4 s."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import feed_rhythm_source, random_bounds

from models.asystole_leads import AsystoleLeads
from models.data.ecg import read_wfdb
from models.data.excerpts import excerpt_path
from models.qrs import ASYSTOLE_S, RateEvent, RhythmMonitor
from service.alarms.sources import RhythmSource, beat_classifier_for

DROP = (60.0, 70.0)   # s: where the QRS shrinks to 1/50 (MIT-BIH 116's MLII does, for 7 s)


def _excerpt() -> tuple[np.ndarray, float]:
    """The shipped real excerpt of MIT-BIH 201 (AF, MLII + V1), µV, and its rate."""
    rec = read_wfdb(excerpt_path("mitdb_201_af"))
    return rec.signal.astype(np.float64), rec.sample_rate


def _shrink(x: np.ndarray, fs: float, leads: list[int]) -> np.ndarray:
    x = x.copy()
    a, b = (int(t * fs) for t in DROP)
    x[a:b, leads] /= 50.0
    return x


def _asystoles(x: np.ndarray, fs: float, bounds: list[int], roundtrip: bool = False) -> list[tuple]:
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon))
    return [e for e in feed_rhythm_source(src, x, bounds, roundtrip) if e[1] == "asystole"]


def _seconds(x: np.ndarray, fs: float) -> list[int]:
    return list(range(int(fs), len(x), int(fs)))


def test_a_shrunken_first_lead_is_no_asystole_while_the_second_shows_beats():
    """The first lead's QRS shrinks to 1/50 for 10 s (a loose electrode): alone it reads as
    asystole; with the second lead showing the beats there is none."""
    x, fs = _excerpt()
    x = _shrink(x, fs, [0])
    one = _asystoles(x[:, :1], fs, _seconds(x, fs))
    assert [e[0] for e in one] == ["begin", "end"] and DROP[0] - 2 < one[0][2] / fs < DROP[0]
    assert _asystoles(x, fs, _seconds(x, fs)) == []


def test_both_leads_silent_is_an_asystole_from_the_last_beat_on_either_lead():
    """Both leads shrink: the asystole begins at the later of the two leads' last beats, is met
    4 s after it and ends at the next beat; the same on any chunking, through JSON snapshots."""
    x, fs = _excerpt()
    x = _shrink(x, fs, [0, 1])
    got = _asystoles(x, fs, _seconds(x, fs))
    one = _asystoles(x[:, :1], fs, _seconds(x, fs))
    assert [e[0] for e in got] == ["begin", "end"]
    (_, _, onset, established, _), (_, _, end, _, _) = got
    assert onset >= one[0][2] and (onset - one[0][2]) / fs < 0.2       # lead 2's last beat may be later
    assert established == onset + round(ASYSTOLE_S * fs)
    assert DROP[1] <= end / fs < DROP[1] + 1.5
    for seed in range(3):
        assert _asystoles(x, fs, random_bounds(len(x), fs, np.random.default_rng(seed)), roundtrip=True) == got


@pytest.mark.parametrize("loss", ["nan", "flat"])
def test_a_lost_second_lead_holds_nothing_back(loss):
    """The second lead lost (NaN, or one value held) from 40 s, the first silent over DROP: the
    asystole is the first lead's, exactly as in a one-lead session."""
    x, fs = _excerpt()
    x = _shrink(x, fs, [0])
    x[int(40 * fs):, 1] = np.nan if loss == "nan" else x[int(40 * fs), 1]
    one = _asystoles(x[:, :1], fs, _seconds(x, fs))
    assert one and _asystoles(x, fs, _seconds(x, fs)) == one


def test_the_detector_reports_no_beat_at_or_before_a_sample_it_called_final():
    """``RhythmMonitor.decided_until`` on the real excerpt in random chunks: no beat reported later
    lies at or before it, and it trails the signal by under 0.6 s at the median."""
    x, fs = _excerpt()
    mon = RhythmMonitor(fs)
    st, final, lags = mon.initial_state(), -1, []
    cuts = [0, *random_bounds(len(x), fs, np.random.default_rng(0)), len(x)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        upd, st = mon.process(x[a:b, 1], a, st)
        assert not len(upd.beats) or upd.beats.min() > final
        final = max(final, mon.decided_until(st))
        lags.append((b - final) / fs)
    assert np.median(lags[len(lags) // 4:]) < 0.6


def test_the_condition_waits_for_the_later_beat_on_either_lead():
    """The first detector's asystole from sample 1000; a second-lead beat at 1500 moves the onset
    there; the next second-lead beat ends it; nothing is decided past ``final``."""
    fs = 250.0
    n = round(ASYSTOLE_S * fs)
    a = AsystoleLeads(fs)
    st = a.initial_state()
    assert a.update(st, [RateEvent("asystole", 1000)], np.array([1500]), final=1500 + n - 1) == []
    assert a.update(st, [], np.array([], np.int64), final=1500 + n) == [("begin", 1500, 1500 + n)]
    assert a.update(st, [], np.array([1500 + n + 10]), final=1500 + n + 5) == []
    assert a.update(st, [], np.array([], np.int64), final=1500 + n + 10) == [("end", 1500 + n + 10, 1500 + n + 10)]
    assert a.update(st, [RateEvent("asystole", 1000, 9000)], np.array([], np.int64), final=9000 + n, flush=True) == [
        ("begin", 1500 + n + 10, 1500 + 2 * n + 10), ("end", 9000, 9000)]


@pytest.mark.datasets
def test_mitdb_116_amplitude_drops_are_no_asystole_with_both_leads():
    """MIT-BIH 116: MLII drops to ~1/50 twice for 6-9 s while V1 shows the beats; the first lead
    alone raises two asystoles there (none in the reference), both leads none."""
    from models.data.paths import datasets_dir
    from models.qrs_eval import TWO_LEADS, mitdb_record

    path = datasets_dir() / "mitdb" / "116"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"MIT-BIH 116 not found under {datasets_dir()} (set VIGIL_DATASETS)")
    cond = mitdb_record(path)["conditions"]
    assert cond["asystole"]["ref"] == 0 and cond["asystole"]["det"] == 2
    assert cond[TWO_LEADS]["det"] == 0


def test_the_two_lead_asystole_is_decided_when_the_first_leads_would_be():
    """Both leads silent, streamed in 0.25-s chunks: the two-lead asystole is released in the
    same chunk as the first detector's own asystole (waiting for the second lead's detector to be
    final costs no latency here)."""
    x, fs = _excerpt()
    x = _shrink(x, fs, [0, 1])
    mon, combiner = RhythmMonitor(fs), AsystoleLeads(fs)
    s1, s2, sa = mon.initial_state(), mon.initial_state(), combiner.initial_state()
    first, both = [], []
    step = int(fs / 4)
    for a in range(0, len(x), step):
        u1, s1 = mon.process(x[a:a + step, 0], a, s1)
        u2, s2 = mon.process(x[a:a + step, 1], a, s2)
        final = min(mon.decided_until(s1), mon.decided_until(s2))
        first += [a for e in u1.events if e.kind == "asystole" and e.end_sample is None]
        both += [a for kind, _, _ in combiner.update(sa, u1.events, u2.beats, final) if kind == "begin"]
    assert len(first) == 1 and both == first
