"""Label episodes and the lost-signal detector inside the alarm engine: ids, hysteresis, fitted
detectors, chunk invariance (the state machine itself: test_alarm_states.py)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from models.detector import EpisodeDetector, detectors_from_meta
from service.alarms.sources import LabelRule
from service.alerts import AlertContext, Alarms
from service.quality import Quality

CTX = AlertContext("bed-1", "p-9", "ecg", 360.0, ("MLII", "V1"), {"name": "vigil-ecg", "version": "t"})
LABELS = ("normal", "af", "vt", "vf", "noise")


def steps(p_af: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(p_af)
    probs = np.zeros((n, len(LABELS)), np.float32)
    probs[:, 1] = p_af
    samples = 36 * np.arange(1, n + 1) - 1
    return samples - 35, samples, probs, np.full((n, 2), 0.5)


def feed(alarms: Alarms, starts, samples, probs, attr) -> list[dict]:
    """Output steps only (no raw chunk): what the engine passes for a chunk of model outputs."""
    end = int(samples[-1]) + 1 if len(samples) else 0
    return alarms.process(int(starts[0]) if len(starts) else 0, end, [], starts, samples, probs, attr)


def test_threshold_and_min_duration():
    alarms = Alarms(CTX, LABELS, 10.0, detectors={"af": EpisodeDetector("af", 0.5, 10.0)}, rhythm=None)
    # 50 steps above 0.5 (5 s, shorter than 10 s): nothing; then 150 steps above 0.5: raised
    p = [0.9] * 50 + [0.3] + [0.75] + [0.6] * 149 + [0.2] * 3
    starts, samples, probs, attr = steps(p)
    out = feed(alarms, starts, samples, probs, attr)
    assert [(a["state"], a["seq"]) for a in out] == [("active", 1), ("cleared", 2)]
    raised, cleared = out
    assert raised["alert_id"] == f"bed-1:af:{starts[51]}" and raised["onset_sample"] == starts[51]
    assert raised["raised_sample"] == samples[51 + 99] and raised["end_sample"] is None
    assert cleared["end_sample"] == starts[201] and cleared["category"] == "physiological"
    assert raised["evidence"]["probabilities"]["af"] == 0.6 and set(raised["evidence"]["attribution"]) == {"MLII", "V1"}
    assert raised["evidence"]["threshold"] == 0.5 and raised["evidence"]["suppressed"] is False


@pytest.mark.parametrize("network_noise", [None, 0.0, 0.9])
def test_suppression_follows_the_network_quality_and_artifact_the_fused_column(network_noise):
    """The quality column (the network fused with the quality head) raises ``artifact``; what
    suppresses physiological alarms is ``suppress_q`` (the network's own output) when given."""
    alarms = Alarms(CTX, LABELS, 10.0, detectors={"af": EpisodeDetector("af", 0.5, 10.0),
                                                  "noise": EpisodeDetector("noise", 0.5, 5.0)}, rhythm=None)
    starts, samples, probs, attr = steps([0.9] * 200)
    probs[:, 4] = 0.9                                                      # fused: poor signal throughout
    q = None if network_noise is None else np.full(len(probs), network_noise, np.float32)
    out = alarms.process(0, int(samples[-1]) + 1, [], starts, samples, probs, attr, suppress_q=q)
    kinds = {a["kind"]: a for a in out}
    assert kinds["artifact"]["state"] == "active"
    suppressed = network_noise is None or network_noise >= 0.5
    assert kinds["af"]["evidence"]["suppressed"] is suppressed


def test_finish_clears_active_and_drops_pending():
    alarms = Alarms(CTX, LABELS, 10.0, detectors={"af": EpisodeDetector("af", 0.5, 10.0),
                                                  "vt": EpisodeDetector("vt", 0.5, 5.0)}, rhythm=None)
    p = np.zeros((120, len(LABELS)), np.float32)
    p[:, 1] = 0.9
    p[110:, 2] = 0.9                                 # vt for 1 s: pending at the end
    starts, samples, _, attr = steps([0.0] * 120)
    assert len(feed(alarms, starts, samples, p, attr)) == 1
    assert set(alarms.state["conds"]) == {"af", "vt"}
    out = alarms.finish(9999)
    assert [(a["kind"], a["state"], a["end_sample"]) for a in out] == [("af", "cleared", 9999)]
    assert alarms.state["conds"] == {} and alarms.state["alerts"] == {}


def test_signal_loss_is_chunk_invariant(rng):
    n = 360 * 30
    x = rng.standard_normal((n, 2)).astype(np.float32) * 100
    x[1000:1500] = np.nan                     # 1.4 s NaN: raises
    x[3000:3200, 0] = np.inf                  # one channel only: not lost
    x[5000:5100] = np.nan                     # 0.3 s: too short
    x[7000:9000] = x[7000]                    # 5.6 s flat line: raises from its start
    x[9100:9500] = np.nan                     # returns within the clear time: same condition
    q = Quality(2, 4 * 360, 20_000.0)               # a flat line is lost once it has lasted 4 s

    def run(bounds):
        alarms, state, out = Alarms(CTX, LABELS, 10.0, rhythm=None), q.init_state(), []
        edges = [0, *bounds, n]
        for a, b in zip(edges[:-1], edges[1:]):
            stretches, state = q.update(x[a:b], a, None, state)
            out += alarms.process(a, b, stretches)
        return [(al["alert_id"], al["seq"], al["raised_sample"], al["end_sample"], al["evidence"]["causes"])
                for al in out]

    whole = run([])
    assert whole == [("bed-1:signal_loss:1000", 1, 1359, None, ["missing"]),
                     ("bed-1:signal_loss:1000", 2, 1359, 1500, ["missing"]),
                     ("bed-1:signal_loss:7000", 1, 7000 + 4 * 360 - 1, None, ["flat_line"]),
                     ("bed-1:signal_loss:7000", 2, 7000 + 4 * 360 - 1, 9500, ["flat_line"])]
    for k in (1, 7, 300):
        assert run(np.sort(rng.choice(np.arange(1, n), size=n // (10 * k) or 1, replace=False)).tolist()) == whole


# ---------------------------------------------------------------- rules from fitted detectors

META = {"detectors": {
    "normal": {"label": "normal", "threshold": 0.3, "min_duration_s": 5.0, "join_gap_s": 2.0, "smooth_s": 2.0},
    "af": {"label": "af", "threshold": 0.575, "min_duration_s": 20.0, "join_gap_s": 10.0, "smooth_s": 10.0},
    "noise": {"label": "noise", "threshold": 0.8, "min_duration_s": 2.0, "join_gap_s": 1.0, "smooth_s": 1.0}}}


@pytest.mark.parametrize("modality, detectors, expected", [
    ("ecg", detectors_from_meta(META, LABELS), {   # vt, vf missing from meta: the detector defaults
        "af": LabelRule("af", 0.575, 20.0, 10.0, 10.0), "vt": LabelRule("vt", 0.5, 1.0, 1.0, 0.5),
        "vf": LabelRule("vf", 0.5, 3.0, 2.0, 2.0), "noise": LabelRule("noise", 0.8, 2.0, 1.0, 1.0)}),
    ("eeg", {"seizure": EpisodeDetector("seizure", 0.35, 3.0, 5.0, 2.0)},
     {"seizure": LabelRule("seizure", 0.35, 3.0, 5.0, 2.0), "artifact": LabelRule("artifact", 0.5, 0.25, 0.25, 0.0)}),
])
def test_rules_from_detectors(modality, detectors, expected):
    """Fitted detectors are the model-driven kinds' rules, label by label; ``normal`` raises nothing."""
    labels = LABELS if modality == "ecg" else ("seizure", "artifact")
    ctx = AlertContext("bed-1", None, modality, 256.0, ("C3",), {"name": "m", "version": "t"})
    alarms = Alarms(ctx, labels, 10.0, detectors=detectors, rhythm=None)
    assert {label: tracker.rule for label, _, tracker, _ in alarms.trackers} == expected


def run_af(det: EpisodeDetector | None, p: list[float], bounds=(), restore=False):
    """Alerts of an af-only probability track fed in chunks split at ``bounds`` (optionally with
    the state round-tripped through JSON at each boundary, as a snapshot would)."""
    starts, samples, probs, attr = steps(p)
    dets = {"af": det} if det else None
    alarms, out, state = Alarms(CTX, LABELS, 10.0, detectors=dets, rhythm=None), [], None
    edges = [0, *bounds, len(p)]
    for a, b in zip(edges[:-1], edges[1:]):
        if restore and state is not None:
            alarms = Alarms(CTX, LABELS, 10.0, state=orjson.loads(state), detectors=dets, rhythm=None)
        if b > a:
            out += feed(alarms, starts[a:b], samples[a:b], probs[a:b], attr[a:b])
        state = orjson.dumps(alarms.state)
    out += alarms.finish(int(samples[-1]) + 1)
    return out


def episodes(alerts: list[dict]) -> list[tuple[int, int]]:
    return [(a["onset_sample"], a["end_sample"]) for a in alerts if a["state"] == "cleared"]


DET = EpisodeDetector("af", 0.6, min_duration_s=2.0, join_gap_s=1.0, smooth_s=0.5)   # 20 / 10 / 5 steps


@pytest.mark.parametrize("det, p, expected", [
    # min duration: 15 steps above is too short; 30 raise, onset at the stretch start
    (EpisodeDetector("af", 0.6, 2.0), [0.1] * 10 + [0.9] * 15 + [0.1] * 10 + [0.9] * 30 + [0.1] * 5, [(35, 65)]),
    # join gap: 12 + (9 below) + 12 steps join into one 33-step episode; a 10-step gap does not join
    (EpisodeDetector("af", 0.6, 2.0, 1.0), [0.9] * 12 + [0.1] * 9 + [0.9] * 12 + [0.1] * 10 + [0.9] * 12 + [0.1] * 10,
     [(0, 33)]),
    # smoothing: alternating 1/0.4 averages 0.7 over 5 steps, above 0.6 though half the raw steps are not;
    # the average falls below 0.6 one step into the 0.5 stretch, not at its start
    (EpisodeDetector("af", 0.6, 2.0, 0.0, 0.5), [0.0] * 10 + [1.0, 0.4] * 20 + [0.5] * 20, [(14, 51)]),
    # all three: smoothed runs of 6 and 9 steps (each shorter than 20) 7 steps apart join into 23
    (DET, [0.0] * 10 + [1.0, 0.4] * 5 + [0.0] * 4 + [0.9] * 12 + [0.0] * 30, [(14, 37)]),
])
def test_fitted_detector_semantics(det, p, expected):
    """The streaming rule raises exactly the episodes :meth:`EpisodeDetector.detect` finds."""
    assert det.detect(np.array(p, np.float32), 10.0) == expected
    starts, *_ = steps(p)
    out = run_af(det, p)
    assert episodes(out) == [(int(starts[s]), int(starts[e])) for s, e in expected]
    assert all(a["alert_id"] == f"bed-1:af:{a['onset_sample']}" for a in out)


def test_fitted_detector_matches_evaluate_on_random_tracks(rng):
    p = np.repeat(rng.random(300), rng.integers(1, 25, 300)).astype(np.float32).tolist()
    starts, *_ = steps(p)
    bounds = [int(starts[k]) for k in range(len(p))] + [int(starts[-1]) + 36]
    for det in (DET, EpisodeDetector("af", 0.55, 3.0, 2.0, 1.0), EpisodeDetector("af", 0.5, 0.5)):
        want = [(bounds[s], bounds[e]) for s, e in det.detect(np.array(p), 10.0)]
        assert len(want) >= 3 and episodes(run_af(det, p)) == want


@pytest.mark.parametrize("restore", [False, True])
def test_fitted_detector_chunk_invariance_and_snapshot(rng, restore):
    """Any chunking, with or without a JSON snapshot/restore at every boundary (mid-window,
    mid-episode, mid-gap), gives the same transitions."""
    p = np.round(np.clip(np.repeat(rng.random(120), rng.integers(1, 30, 120)), 0, 1), 4).tolist()
    whole = run_af(DET, p)
    assert len(whole) >= 4
    for k in (1, 3, 40):
        bounds = np.sort(rng.choice(np.arange(1, len(p)), size=len(p) // k - 1, replace=False)).tolist()
        assert run_af(DET, p, bounds, restore) == whole
