"""Ventricular-beat classifier and VT runs (:mod:`models.beats`), through the alarm engine's
rhythm source: the shipped weights, chunk invariance with snapshots, gaps, and a floor on MIT-BIH."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from synthetic import feed_rhythm_source, random_bounds

from models.beats import (ALIKE, ALTERNATING, CONFIDENT, FEATURES, RUN_RULES, UNLIKE_REGULAR, BeatClassifier, BeatWeights,
                          load_weights)
from models.beats_fit import record_beats, score_record
from models.data import ecg
from models.data.episodes import vt_episodes
from models.data.excerpts import excerpt_path
from models.data.paths import datasets_dir
from models.qrs import RhythmMonitor
from service.alarms.sources import RhythmSource, beat_classifier_for


@pytest.fixture(scope="module")
def excerpt_203():
    """The shipped MIT-BIH 203 excerpt (150 s, 360 Hz, 2 leads) and its reference VT runs."""
    path = excerpt_path("mitdb_203_vt.hea")
    rec = ecg.read_wfdb(path)
    beats, symbols = ecg.mitdb_beats(path)
    return rec.signal.astype(np.float64), rec.sample_rate, vt_episodes(beats, symbols, rec.sample_rate)


@pytest.fixture(scope="module")
def excerpt_v831l():
    """The shipped CinC 2015 v831l excerpt (60 s, 250 Hz, II + V): ``(x (n, 2) float64, fs)``."""
    rec = ecg.read_wfdb(excerpt_path("cinc2015_v831l_vt"))
    return rec.signal.astype(np.float64), rec.sample_rate


def run_source(x, fs, bounds, roundtrip=False, steps=None):
    """VT and rate events of ``x`` cut at ``bounds`` through a fresh RhythmSource (JSON state
    round trip at every boundary when ``roundtrip``). ``steps``: ``(step_end, p_vt)``, the
    network's vt outputs, fed with the chunk that completes them as the alarm engine feeds them
    (the network gate); None: no gate."""
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon), gate=steps is not None)
    return feed_rhythm_source(src, x, bounds, roundtrip, steps)


def test_shipped_weights_load_and_describe_their_features():
    w = load_weights()
    assert w is not None, "models/checkpoints/vigil-beats.json is shipped"
    assert w.w1.shape == (len(FEATURES), len(w.b1)) and w.w2.shape == w.b1.shape
    assert 0.1 <= w.threshold <= 0.9
    assert w.meta["leave_one_record_out"]["records"] >= 20
    d = w.to_json()
    assert BeatWeights.from_json(json.loads(json.dumps(d))).prob(np.zeros(len(FEATURES))) == pytest.approx(
        w.prob(np.zeros(len(FEATURES))))
    with pytest.raises(ValueError, match="Invalid beat weights: expected features"):
        BeatWeights.from_json({**d, "features": ["rr_s"]})


def test_vt_run_in_the_203_excerpt_is_found(excerpt_203):
    x, fs, reference = excerpt_203
    assert reference, "the excerpt holds a VT run of >= 5 beats"
    events = run_source(x, fs, list(range(int(fs), len(x), int(fs))))
    vt = [e for e in events if e[1] == "vt"]
    begins = [e for e in vt if e[0] == "begin"]
    assert any(s <= onset < e for onset, (s, e) in ((b[2], r) for b in begins for r in reference))
    for _, _, onset, established, rule in begins:  # established at the 5th ventricular beat, > 100 bpm
        assert onset < established < onset + 4 * 0.6 * fs
        assert rule in RUN_RULES
    assert ALIKE in [b[4] for b in begins]           # the classifier alone: five alike beats
    ends = [e for e in vt if e[0] == "end"]
    assert len(ends) >= len(begins) - 1


def test_same_events_for_any_chunking_and_snapshots(excerpt_203):
    x, fs, _ = excerpt_203
    x = x[: int(70 * fs)].copy()
    x[int(20 * fs): int(21.5 * fs), 0] = np.nan            # a lost stretch on lead a
    whole = run_source(x, fs, [])
    assert any(e[1] == "vt" for e in whole)
    assert run_source(x, fs, list(range(37, len(x), 37))) == whole
    rng = np.random.default_rng(3)
    assert run_source(x, fs, random_bounds(len(x), fs, rng), roundtrip=True) == whole


def test_one_lead_and_missing_windows():
    """A single lead stands in for both; beats without a complete window are not classified."""
    fs = 250.0
    clf = BeatClassifier(fs, 2, load_weights())
    rng = np.random.default_rng(0)
    x = rng.standard_normal(int(10 * fs))
    beats = np.arange(int(0.5 * fs), len(x), int(0.8 * fs))
    got, events, st = clf.process(x, 0, beats, clf.initial_state(), flush=True)
    assert len(got) == len(beats) - 1 or len(got) == len(beats)   # the last may lack its window
    assert all(f.shape == (len(FEATURES),) and 0.0 <= p <= 1.0 for _, f, p, _ in got)
    x[int(3 * fs): int(4 * fs)] = np.nan
    got2, _, _ = clf.process(x, 0, beats, clf.initial_state(), flush=True)
    lost = [b for b in beats if int(3 * fs) - clf.post - clf.lag <= b <= int(4 * fs) + clf.pre + clf.lag]
    assert {s for s, *_ in got2}.isdisjoint(lost)


@pytest.mark.datasets
def test_floor_on_mitdb_205():
    """CI floor for the shipped weights: MIT-BIH 205's three VT runs found, no false run."""
    path = datasets_dir() / "mitdb" / "205"
    if not path.with_suffix(".hea").exists():
        pytest.skip(f"MIT-BIH 205 not under {datasets_dir()} (set VIGIL_DATASETS)")
    r = score_record(record_beats(path), load_weights())
    assert r["vt_ref"] == 3 and r["vt_hit"] == 3 and r["vt_false"] == 0
    assert r["v_tp"] / r["v_beats"] >= 0.9


def _alternating_events(p_other, dominant_other, sim2_b=0.98, n=14, rr_s=0.55, fs=360.0):
    """Run events of ``n`` beats in which a ventricular-leaning beat (p 0.6, under the 0.9 threshold)
    alternates with another (``p_other``; matching the dominant template on lead b when
    ``dominant_other``), each like the beat two back (lead a 0.98, lead b ``sim2_b``) and unlike the
    one before on lead b (0.3)."""
    clf = BeatClassifier(fs, 2, None)
    st, events = clf.initial_state(), []
    beats = (np.arange(n) * rr_s * fs).astype(int) + 100
    for i, b in enumerate(beats):
        other = i % 2 == 1
        info = np.array([0.9, 0.3, 0.98, sim2_b, 1.0, float(dominant_other) if other else 0.0, 0.95])
        clf.run_step(st, int(b), p_other if other else 0.6, info, events, 0.9)
    return beats, events


def test_alternating_run_rule():
    """A bidirectional-looking run (every other beat near the dominant beat on lead a only) is a
    VT run although no 5 beats in a row reach the threshold; sinus beats between the ventricular
    ones (dominant on both leads), a slow rate or unalike beats two apart are not."""
    beats, events = _alternating_events(0.01, False)
    assert len(events) == 1 and events[0].end_sample is None
    assert events[0].onset_sample == beats[0] and events[0].established == beats[5]
    assert events[0].rule == ALTERNATING
    assert _alternating_events(0.01, True)[1] == []              # bigeminy with the patient's own beats
    assert _alternating_events(0.01, False, rr_s=0.7)[1] == []   # <= 100 bpm
    assert _alternating_events(0.01, False, sim2_b=0.5)[1] == []  # lead b not alike two beats apart
    clf = BeatClassifier(360.0, 2, None)                          # the run ends at a beat that breaks it
    st, ev = clf.initial_state(), []
    for i, b in enumerate(beats):
        info = np.array([0.9, 0.3, 0.98, 0.98, 1.0, 0.0, 0.95])
        clf.run_step(st, int(b), 0.01 if i % 2 else 0.6, info, ev, 0.9)
    clf.run_step(st, int(beats[-1] + 200), 0.01, np.array([0.99, 0.99, 0.5, 0.5, 1.0, 1.0, 0.99]), ev, 0.9)
    assert [e.end_sample for e in ev] == [None, int(beats[-1] + 200)]


def test_network_gate_makes_unsure_beats_ventricular():
    """Five fast, alike beats with p 0.5 form a run only with the network's vt output near them;
    p below GATE_P never does."""
    from models.beats import GATE_P, GATE_VT, VtGate

    fs = 250.0
    clf = BeatClassifier(fs, 2, load_weights())
    beats = np.arange(5) * int(0.5 * fs) + 1000          # 120 bpm
    info = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.8])  # alike, not the dominant beat

    def runs(p, gated):
        st = clf.initial_state()
        events = []
        for b in beats:
            clf.run_step(st, int(b), p, info, events, None, vt=GATE_VT if gated else 0.0)
        return events

    assert runs(0.5, False) == []
    assert [(e.onset_sample, e.established, e.rule) for e in runs(0.5, True)] == [
        (int(beats[0]), int(beats[-1]), ALIKE)]
    assert runs(GATE_P - 0.05, True) == []
    gate = VtGate(np.array([100, 200, 300]), np.array([0.0, GATE_VT, 0.0]), horizon=300)
    assert gate.value(250, 60, 10) == GATE_VT and gate.value(400, 60, 10) == 0.0
    assert gate.ready(np.array([250, 295]), 10).tolist() == [True, False]


def _unalike_events(p, vt, rr_s=0.5, n=8, fs=250.0):
    """Run events of ``n`` fast beats with probability ``p`` whose shapes differ from beat to beat
    (correlation 0.2 with the one before), the network's vt output ``vt`` near the third."""
    clf = BeatClassifier(fs, 2, load_weights())
    st, events = clf.initial_state(), []
    beats = (np.arange(n) * rr_s * fs).astype(int) + 1000
    info = np.array([0.2, 0.2, 0.2, 0.2, 0.0, 0.0, 0.8])
    for i, b in enumerate(beats):
        clf.run_step(st, int(b), p, info, events, None, vt=vt if i == 2 else 0.0)
    clf.run_step(st, int(beats[-1] + rr_s * fs), 0.01, info, events, None)
    return beats, events


def test_confident_network_waives_likeness():
    """Unalike fast beats (polymorphic VT) with p >= STRONG_P form a run only when the network's vt
    output reaches STRONG_VT near one of them; the run then lasts while its beats stay ventricular
    (p >= 0.9 here), and a slow rate, a lower p or a weaker network make none."""
    from models.beats import GATE_VT, STRONG_P, STRONG_VT

    beats, events = _unalike_events(0.95, STRONG_VT)
    assert [(e.onset_sample, e.established, e.end_sample, e.rule) for e in events] == [
        (int(beats[0]), int(beats[4]), None, CONFIDENT), (int(beats[0]), int(beats[0]), int(beats[-1] + 125), "")]
    beats, events = _unalike_events(0.8, STRONG_VT)               # under the threshold: the run lasts
    assert [e.end_sample for e in events] == [None, int(beats[7])]  # while the network's vt is near
    assert _unalike_events(0.95, STRONG_VT - 0.01)[1] == []     # p >= 0.9 alone: not alike
    assert _unalike_events(STRONG_P - 0.05, 1.0)[1] == []
    assert _unalike_events(0.95, 1.0, rr_s=0.7)[1] == []        # <= 100 bpm
    assert _unalike_events(0.95, GATE_VT)[1] == []


def _regular_events(n=9, rr_s=0.43, p=0.5, corr_dominant=0.5, jitter=0.0, fs=250.0):
    """Run events of ``n`` beats (RR ``rr_s``, every other one longer by ``jitter`` s) with
    probability ``p`` (under the 0.9 threshold, no network), unalike each other (0.2), their
    correlation with the dominant template on lead a ``corr_dominant``; then a dominant beat."""
    clf = BeatClassifier(fs, 2, load_weights())
    st, events = clf.initial_state(), []
    rr = np.array([rr_s + (jitter if i % 2 else 0.0) for i in range(n)])
    beats = (np.cumsum(rr) * fs).astype(int) + 1000
    for b in beats:
        clf.run_step(st, int(b), p, np.array([0.2, 0.2, 0.2, 0.2, 0.0, 0.0, corr_dominant]), events, None)
    clf.run_step(st, int(beats[-1] + 0.8 * fs), 0.01, np.array([0.99, 0.99, 0.9, 0.9, 1.0, 1.0, 0.99]), events, None)
    return beats, events


def test_regular_run_of_unlike_beats():
    """Seven regular fast beats unlike the patient's dominant beat, leaning ventricular as a group
    (median p >= GATE_P), are a VT run without the network and without likeness; it lasts while the
    rule holds and ends at the dominant beat. An irregular rhythm, beats near the dominant one, a
    low p, a slow rate or fewer than REGULAR_BEATS beats are not."""
    from models.beats import ALT_REGULARITY, ALT_UNLIKE, GATE_P, REGULAR_BEATS

    beats, events = _regular_events()
    assert [(e.onset_sample, e.established, e.end_sample, e.rule) for e in events] == [
        (int(beats[0]), int(beats[REGULAR_BEATS - 1]), None, UNLIKE_REGULAR),
        (int(beats[0]), int(beats[0]), int(beats[-1] + 0.8 * 250), "")]
    assert _regular_events(jitter=0.43 * (ALT_REGULARITY - 1) + 0.02)[1] == []     # irregular
    assert len(_regular_events(jitter=0.43 * (ALT_REGULARITY - 1) - 0.02)[1]) == 2
    assert _regular_events(corr_dominant=ALT_UNLIKE + 0.01)[1] == []               # near the dominant beat
    assert _regular_events(p=GATE_P - 0.01)[1] == []
    assert _regular_events(rr_s=0.62)[1] == []                                      # <= 100 bpm
    assert _regular_events(n=REGULAR_BEATS - 1)[1] == []


def test_regular_unlike_run_in_the_v831l_excerpt(excerpt_v831l):
    """CinC 2015 v831l (shipped excerpt, 240-300 s, a true VT alarm): 9 broad complexes at about
    140 bpm from ~49.9 s. The classifier gives them p 0.3-0.9, so no 5 in a row reach the threshold,
    and the network gate is off here; the regular-unlike rule finds the run, and nothing else in the
    minute raises VT. Any chunking, with JSON snapshots, gives the same events."""
    x, fs = excerpt_v831l
    seconds = list(range(int(fs), len(x), int(fs)))
    events = [e for e in run_source(x, fs, seconds) if e[1] == "vt"]
    begins = [e for e in events if e[0] == "begin"]
    assert len(begins) == 1 and 49.5 * fs < begins[0][2] < 50.5 * fs and begins[0][4] == UNLIKE_REGULAR
    assert begins[0][3] < 53.5 * fs                                   # established inside the run
    ends = [e for e in events if e[0] == "end"]
    assert len(ends) == 1 and 53.0 * fs < ends[0][2] < 55.0 * fs      # ends with the sinus beats
    mon = RhythmMonitor(fs)
    beats = mon.process(x[:, 0], 0, mon.initial_state())[0].beats
    clf = BeatClassifier(fs, 2, load_weights())
    got, _, _ = clf.process(x, 0, beats, clf.initial_state(), flush=True)
    p_run = [p for b, _, p, _ in got if 49.5 * fs < b < 53.6 * fs]
    assert len(p_run) >= 8 and max(p_run) < 0.9                       # the threshold alone: no run
    events_chunked = [e for e in run_source(x, fs, random_bounds(len(x), fs, np.random.default_rng(11)),
                                            roundtrip=True) if e[1] == "vt"]
    assert events_chunked == events


def test_state_from_before_the_regular_rule_resumes(excerpt_v831l):
    """A rhythm state saved before the regular-unlike rule (no ``regular`` key in either beat
    classifier's state) loads and goes on: the v831l run, 20 s after the snapshot, is found as in
    the stream without one."""
    x, fs = excerpt_v831l
    cut = int(30 * fs)
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon))
    st = src.initial_state()
    before = src.update(st, x[:cut], 0)
    old = src.export(st)
    for key in ("b", "b2"):
        assert "regular" in old[key]
        old[key] = {k: v for k, v in old[key].items() if k != "regular"}
    st = src.load(orjson.loads(orjson.dumps(old, option=orjson.OPT_SERIALIZE_NUMPY)))
    after = src.update(st, x[cut:], cut, flush=True)
    whole = run_source(x, fs, [cut])
    assert before + after == whole
    assert [e[4] for e in whole if e[1] == "vt" and e[0] == "begin"] == [UNLIKE_REGULAR]


def test_gate_same_events_for_any_chunking_and_snapshots(excerpt_203):
    """With the gate, beats wait for the network's outputs: any chunking and snapshot round trip
    still give the same events; a silent network changes nothing."""
    x, fs, _ = excerpt_203
    x = x[: int(70 * fs)].copy()
    step_end = np.arange(int(0.1 * fs) - 1, len(x), int(0.1 * fs))
    none = run_source(x, fs, [], steps=(step_end, np.zeros(len(step_end))))
    assert none == run_source(x, fs, [])
    p_vt = np.repeat(np.random.default_rng(4).random(len(step_end) // 20 + 1), 20)[: len(step_end)]
    whole = run_source(x, fs, [], steps=(step_end, p_vt))
    assert any(e[1] == "vt" for e in whole)
    assert run_source(x, fs, list(range(37, len(x), 37)), steps=(step_end, p_vt)) == whole
    rng = np.random.default_rng(5)
    assert run_source(x, fs, random_bounds(len(x), fs, rng), roundtrip=True, steps=(step_end, p_vt)) == whole


def test_beats_wait_for_the_network_outputs(excerpt_203):
    """A beat is classified only once the network's outputs cover GATE_POST_S after it, or once
    GATE_MAX_WAIT_S has passed (a caller that gives no outputs)."""
    from models.beats import GATE_POST_S

    x, fs, _ = excerpt_203
    n = int(20 * fs)
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon), gate=True)
    st = src.initial_state()
    src.add_steps(st, np.array([int(10 * fs)]), np.array([0.0]))   # outputs up to 10 s only
    src.update(st, x[:n], 0)
    pending = st["b"]["pending"]
    horizon = max(10 * fs, n - 1 - src.gate_wait_n)
    assert len(pending) and (pending + round(GATE_POST_S * fs) > horizon).all()
    ungated = RhythmSource(mon, beat_classifier_for(mon))
    st2 = ungated.initial_state()
    ungated.update(st2, x[:n], 0)
    assert len(st2["b"]["pending"]) < len(pending)


def test_state_from_before_the_gate_resumes(excerpt_203):
    """A rhythm state saved before the gate existed (no ``vt`` key) loads and goes on, as the same
    stream with a network that said nothing before the snapshot."""
    x, fs, _ = excerpt_203
    x = x[: int(40 * fs)]
    cut = int(20 * fs)
    step_end = np.arange(int(0.1 * fs) - 1, len(x), int(0.1 * fs))
    p_vt = np.where(step_end >= cut, 1.0, 0.0)
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon), gate=True)
    st = src.initial_state()
    before = src.update(st, x[:cut], 0)
    old = src.export(st)
    old.pop("vt")                                            # as a snapshot from before the gate
    st = src.load(orjson.loads(orjson.dumps(old, option=orjson.OPT_SERIALIZE_NUMPY)))
    sel = step_end >= cut
    src.add_steps(st, step_end[sel], p_vt[sel])
    after = src.update(st, x[cut:], cut, flush=True)
    whole = run_source(x, fs, [cut], steps=(step_end, p_vt))
    assert before + after == whole


def test_a_lost_second_lead_leaves_the_first_standing_in():
    """With the second lead lost (NaN throughout: an electrode off, which raises no signal_loss
    while the first lead is good), the beats are classified from the first lead alone, exactly
    as in a one-lead session, and the rhythm source's events are those of that session."""
    path = excerpt_path("mitdb_201_af.hea")
    rec = ecg.read_wfdb(path)
    fs, x = rec.sample_rate, rec.signal.astype(np.float64)
    lost = x.copy()
    lost[:, 1] = np.nan
    mon = RhythmMonitor(fs)
    beats = mon.process(x[:, 0], 0, mon.initial_state())[0].beats
    clf = BeatClassifier(fs, 2, load_weights())
    got_lost, _, _ = clf.process(lost, 0, beats, clf.initial_state(), flush=True)
    got_one, _, _ = clf.process(x[:, :1], 0, beats, clf.initial_state(), flush=True)
    assert len(got_lost) >= len(beats) - 5
    assert [(s, p) for s, _, p, _ in got_lost] == [(s, p) for s, _, p, _ in got_one]
    seconds = list(range(int(fs), len(x), int(fs)))
    assert run_source(lost, fs, seconds) == run_source(x[:, :1], fs, seconds)
    from service.alarms.sources import af_detector_for

    src = RhythmSource(mon, beat_classifier_for(mon), af_detector_for(mon, beat_classifier_for(mon)))
    events = feed_rhythm_source(src, lost, seconds)
    assert [e for e in events if e[1] == "af" and e[0] == "begin"]   # the AF episode is still found
