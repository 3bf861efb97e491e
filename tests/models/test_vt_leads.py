"""VT runs from both leads' QRS detectors (:mod:`models.vt_leads`): the union of two beat
classifiers' runs, the agreement guard on the second lead, and release in decision order."""

from __future__ import annotations

import numpy as np
import orjson

from models.beats import ALIKE, ALTERNATING, RunEvent
from models.vt_leads import AGREE, SILENT_PRE_S, LeadRunUnion, agreement, second_counts, union_runs
from service.alarms.sources import encode_arrays

FS = 250.0


def s(t: float) -> int:
    return int(round(t * FS))


SINUS = np.arange(s(0.5), s(60.0), s(0.8))          # a first-lead detector's beats, 75 bpm


def play(calls, union=None):
    """Union events of ``calls``: each ``(runs_a, runs_b, beats_a, beats_b, pending_a, pending_b,
    chunk_end, flush)``, the state through a JSON round trip between calls."""
    union = union or LeadRunUnion(FS)
    st, out = union.initial_state(), []
    for runs_a, runs_b, beats_a, beats_b, pend_a, pend_b, end, flush in calls:
        st = orjson.loads(orjson.dumps(st))
        out += union.update(st, (runs_a, runs_b), (beats_a, beats_b), (np.asarray(pend_a, np.int64),
                                                                          np.asarray(pend_b, np.int64)), end, flush)
    return [(e.onset_sample, e.established, e.end_sample, e.rule) for e in out]


def begin(onset, est, rule=ALIKE):
    return RunEvent(s(onset), s(est), rule=rule)


def end(t):
    return RunEvent(-1, s(t), s(t))


def test_second_lead_run_counts_when_its_detector_agrees():
    """A run only the second lead's beats show is the VT condition when that detector agreed with
    the first before it; when it double counts (a beat between every two), it is not."""
    agreeing = SINUS + 3
    got = play([([], [begin(50.0, 52.0), end(55.0)], SINUS, agreeing, [], [], s(60.0), True)])
    assert got == [(s(50.0), s(52.0), None, ALIKE), (s(50.0), s(50.0), s(55.0), "")]
    doubling = np.sort(np.concatenate([SINUS + 3, SINUS + s(0.35)]))
    assert agreement(SINUS, doubling, s(50.0), FS) < AGREE <= agreement(SINUS, agreeing, s(50.0), FS)
    assert play([([], [begin(50.0, 52.0), end(55.0)], SINUS, doubling, [], [], s(60.0), True)]) == []


def test_second_lead_run_counts_where_the_first_lead_is_silent():
    """With the first lead lost (no beat from SILENT_PRE_S before the onset to the 5th beat: NaN,
    an electrode off) the second lead's run of alike beats counts without the agreement test;
    a first-lead beat inside that span, or a non-alike run, does not."""
    lost = SINUS[SINUS < s(40.0)]                       # the first lead's beats stop at 40 s
    doubling = np.sort(np.concatenate([SINUS + 3, SINUS + s(0.35)]))
    assert agreement(lost, doubling, s(50.0), FS) < AGREE
    got = play([([], [begin(50.0, 52.0), end(55.0)], lost, doubling, [], [], s(60.0), True)])
    assert got == [(s(50.0), s(52.0), None, ALIKE), (s(50.0), s(50.0), s(55.0), "")]
    assert not second_counts(np.append(lost, s(51.0)), doubling, s(50.0), s(52.0), FS)
    assert not second_counts(np.append(lost, s(50.0 - SILENT_PRE_S)), doubling, s(50.0), s(52.0), FS)
    assert second_counts(np.append(lost, s(50.0 - SILENT_PRE_S) - 1), doubling, s(50.0), s(52.0), FS)
    got = play([([], [begin(50.0, 52.0, ALTERNATING), end(55.0)], lost, doubling, [], [], s(60.0), True)])
    assert got == []


def test_second_lead_counts_alike_runs_only():
    """Runs that waive the likeness (alternating, the confident network) count on the first lead
    only: a detector that alternates between pacing spikes and complexes looks bidirectional."""
    got = play([([], [begin(50.0, 52.0, ALTERNATING), end(55.0)], SINUS, SINUS + 3, [], [], s(60.0), True)])
    assert got == []
    got = play([([begin(50.0, 52.0, ALTERNATING), end(55.0)], [], SINUS, SINUS + 3, [], [], s(60.0), True)])
    assert got == [(s(50.0), s(52.0), None, ALTERNATING), (s(50.0), s(50.0), s(55.0), "")]


def test_overlapping_runs_are_one_condition():
    """The condition begins with the first run and ends with the last of overlapping runs."""
    runs_a = [begin(10.0, 12.0), end(20.0)]
    runs_b = [begin(15.0, 17.0), end(25.0)]
    got = play([(runs_a, runs_b, SINUS, SINUS + 3, [], [], s(60.0), True)])
    assert got == [(s(10.0), s(12.0), None, ALIKE), (s(10.0), s(10.0), s(25.0), "")]
    got = play([(runs_b, runs_a, SINUS, SINUS + 3, [], [], s(60.0), True)])   # the other lead first
    assert got == [(s(10.0), s(12.0), None, ALIKE), (s(10.0), s(10.0), s(25.0), "")]
    assert union_runs([(s(10.0), s(20.0))], [(s(15.0), s(25.0)), (s(30.0), s(31.0))]) == [
        (s(10.0), s(25.0)), (s(30.0), s(31.0))]


def test_events_wait_until_neither_classifier_can_decide_earlier():
    """A first-lead end is held while the second classifier still holds a beat before it; the
    result is that of one call with everything (the union does not depend on the chunking)."""
    whole = play([([begin(10.0, 12.0), end(20.0)], [begin(15.0, 17.0), end(25.0)], SINUS, SINUS + 3, [], [],
                   s(40.0), False)])
    union = LeadRunUnion(FS)
    st = union.initial_state()
    first = union.update(st, ([begin(10.0, 12.0), end(20.0)], []), (SINUS[SINUS < s(21.0)], SINUS[SINUS < s(14.0)] + 3),
                         (np.zeros(0, np.int64), np.array([s(14.0)])), s(21.0))
    assert [(e.onset_sample, e.end_sample) for e in first] == [(s(10.0), None)]   # the end waits
    rest = union.update(st, ([], [begin(15.0, 17.0), end(25.0)]), (SINUS[SINUS >= s(21.0)],
                        SINUS[SINUS >= s(14.0)] + 3), (np.zeros(0, np.int64), np.zeros(0, np.int64)), s(40.0))
    assert [(e.onset_sample, e.established, e.end_sample, e.rule) for e in first + rest] == whole
    assert whole == [(s(10.0), s(12.0), None, ALIKE), (s(10.0), s(10.0), s(25.0), "")]


def test_a_silent_second_lead_delays_by_at_most_the_report_lag():
    """With no beats on the second lead, a first-lead event is released once the chunk end is
    REPORT_LAG_S past it."""
    from models.qrs import REPORT_LAG_S

    union = LeadRunUnion(FS)
    st = union.initial_state()
    none = np.zeros(0, np.int64)
    est = s(12.0)
    beats = np.r_[SINUS[SINUS < s(10.0)], np.arange(s(10.0), est + 1, s(0.5))]   # the run's beats end at est
    early = union.update(st, ([begin(10.0, 12.0)], []), (beats, none), (none, none),
                         est + s(REPORT_LAG_S) - 1)
    assert early == []
    late = union.update(st, ([], []), (none, none), (none, none), est + s(REPORT_LAG_S) + 2)
    assert [(e.onset_sample, e.established) for e in late] == [(s(10.0), est)]


def _vt_events(x, fs, second: bool, bounds, roundtrip=False, kinds=("vt",), rate_lead=True):
    """VT events (``kinds``) of ``x`` through a RhythmSource (both leads' detectors, or the first
    only; the rhythm's detector on the first lead only without ``rate_lead``), chunked at
    ``bounds``, the state through JSON at every boundary when ``roundtrip``."""
    from synthetic import feed_rhythm_source

    from models.qrs import RhythmMonitor
    from service.alarms.sources import RhythmSource, beat_classifier_for

    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon))
    if not second:
        src.union = None
    if not rate_lead:
        src.rate_lead = None
    return [e for e in feed_rhythm_source(src, x, bounds, roundtrip) if e[1] in kinds]


def _v797l():
    """The shipped CinC 2015 v797l excerpt: ``(x (n, 2) float64, fs)``."""
    from models.data import ecg
    from models.data.excerpts import excerpt_path

    rec = ecg.read_wfdb(excerpt_path("cinc2015_v797l_vt"))
    return rec.signal.astype(np.float64), rec.sample_rate


def _assert_one_vt_run(x, fs, seed, **kw):
    """v797l: one run of alike beats begins at ~57.3 s, the same for a random chunking with JSON
    snapshots; ``kw`` as for :func:`_vt_events`."""
    from synthetic import random_bounds

    seconds = list(range(int(fs), len(x), int(fs)))
    events = _vt_events(x, fs, True, seconds, **kw)
    begins = [e for e in events if e[0] == "begin"]
    assert len(begins) == 1 and 56.5 * fs < begins[0][2] < 58.0 * fs and begins[0][4] == ALIKE
    assert _vt_events(x, fs, True, random_bounds(len(x), fs, np.random.default_rng(seed)), roundtrip=True,
                      **kw) == events


def test_second_lead_finds_the_vt_the_first_misses():
    """CinC 2015 v797l (shipped excerpt, 240-300 s): the VT of broad complexes from ~57.3 s is a
    run of alike beats on lead V's detector; lead II's alone finds none. Any chunking, with JSON
    snapshots in between, gives the same events."""
    x, fs = _v797l()
    assert _vt_events(x, fs, False, list(range(int(fs), len(x), int(fs)))) == []
    _assert_one_vt_run(x, fs, seed=3)


def _assert_found_with_the_first_lead_lost(x, fs, seed):
    """v797l with lead II lost: the VT is found by the second lead's detector (the silent-lead
    rule) and by the rhythm's detector following lead V (models/rate_lead.py), each without the
    other; with neither, none."""
    seconds = list(range(int(fs), len(x), int(fs)))
    assert _vt_events(x, fs, False, seconds, rate_lead=False) == []
    _assert_one_vt_run(x, fs, seed, rate_lead=False)
    assert [e[0] for e in _vt_events(x, fs, False, seconds)][:1] == ["begin"]
    _assert_one_vt_run(x, fs, seed + 1)


def test_vt_is_found_on_the_second_lead_when_the_first_is_lost():
    """v797l with lead II lost (NaN) from 30 s: lead V shows the VT; before the silent-lead rule
    and the rate lead it was found by neither detector (no first-lead beats to agree with).
    Chunk-exact."""
    x, fs = _v797l()
    x[int(30 * fs):, 0] = np.nan
    _assert_found_with_the_first_lead_lost(x, fs, seed=5)


def test_a_flat_first_lead_is_a_lost_lead_not_an_asystole():
    """v797l with lead II held at one value from 30 s (a monitor's lead-off output): a flat line
    is no signal (models/flatline.py), so it raises no asystole and lead V shows the VT, as with
    NaN. Before the flat-line rule the first lead's detector declared asystole 4 s in and the beat
    classifier took the flat line for lead a: no VT."""
    x, fs = _v797l()
    x[int(30 * fs):, 0] = x[int(30 * fs), 0]
    seconds = list(range(int(fs), len(x), int(fs)))
    assert _vt_events(x, fs, True, seconds, kinds=("asystole",)) == []
    _assert_found_with_the_first_lead_lost(x, fs, seed=7)


def _exported(src, st) -> bytes:
    return orjson.dumps(src.export(st), option=orjson.OPT_SERIALIZE_NUMPY)


def _assert_same_state(a: dict, b: dict) -> None:
    """Two beat-classifier states, bit for bit and in the same key order."""
    assert list(a) == list(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k


def test_the_second_classifiers_filter_state_is_written_once_and_restored_exactly():
    """Both leads' classifiers filter the same two leads: a snapshot writes that state (the 4-s
    filtered buffer and the filter's memory) once, and a restore gives the second its exact
    copy. Where they differ (a second classifier begun later, as after a snapshot from before
    it existed) it is written in full."""
    from models.qrs import RhythmMonitor
    from models.beats import SIGNAL_STATE
    from service.alarms.sources import RhythmSource, beat_classifier_for

    x, fs = _v797l()
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon))
    st = src.initial_state()
    n = int(20 * fs)
    src.update(st, x[:n], 0)
    full = {**src.export(st), "b2": encode_arrays(st["b2"])}        # as written before: whole
    del full["b2_shares"]
    data = orjson.loads(_exported(src, st))
    assert data["b2_shares"] == list(SIGNAL_STATE) and "buf" not in data["b2"]
    assert len(_exported(src, st)) < 0.85 * len(orjson.dumps(full, option=orjson.OPT_SERIALIZE_NUMPY))
    back = src.load(data)
    _assert_same_state(back["b2"], st["b2"])
    assert "b2_shares" not in back
    _assert_same_state(src.load(orjson.loads(orjson.dumps(full, option=orjson.OPT_SERIALIZE_NUMPY)))["b2"], st["b2"])

    # a second classifier begun at 10 s has its own filter state: nothing is shared but "end"
    late = src.initial_state()
    src.update(late, x[:int(10 * fs)], 0)
    late["b2"] = src.beats.initial_state()
    src.update(late, x[int(10 * fs):n], int(10 * fs))
    data = orjson.loads(_exported(src, late))
    assert "buf" in data["b2"] and "zi" not in data["b2_shares"]
    _assert_same_state(src.load(data)["b2"], late["b2"])
    # and both restore to the same events from there on
    assert (src.update(src.load(orjson.loads(_exported(src, st))), x[n:], n, flush=True)
            == src.update(st, x[n:], n, flush=True))
