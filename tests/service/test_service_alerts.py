"""The first alert rule and the lost-signal detector: ids, hysteresis, chunk invariance."""

from __future__ import annotations

import numpy as np

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


def test_threshold_hysteresis_and_min_duration():
    alarms = Alarms(CTX, LABELS, 10.0)
    # 50 steps above 0.7 (5 s, shorter than af's 10 s): nothing; then 150 steps above 0.5: raised
    p = [0.9] * 50 + [0.3] + [0.75] + [0.6] * 149 + [0.2] * 3
    starts, samples, probs, attr = steps(p)
    out = alarms.on_steps(starts, samples, probs, attr)
    assert [(a["state"], a["seq"]) for a in out] == [("active", 1), ("cleared", 2)]
    raised, cleared = out
    assert raised["alert_id"] == f"bed-1:af:{starts[51]}" and raised["onset_sample"] == starts[51]
    assert raised["raised_sample"] == samples[51 + 99] and raised["end_sample"] is None
    assert cleared["end_sample"] == starts[201] and cleared["category"] == "physiological"
    assert raised["evidence"]["probabilities"]["af"] == 0.6 and set(raised["evidence"]["attribution"]) == {"MLII", "V1"}


def test_finish_clears_active_and_drops_pending():
    alarms = Alarms(CTX, LABELS, 10.0)
    starts, samples, probs, attr = steps([0.9] * 120)
    assert len(alarms.on_steps(starts, samples, probs, attr)) == 1
    alarms.state["kinds"]["vt"] = {"onset": 5, "steps": 1, "alert": None}
    out = alarms.finish(9999)
    assert [(a["kind"], a["state"], a["end_sample"]) for a in out] == [("af", "cleared", 9999)]
    assert alarms.state == {"kinds": {}, "loss": None}


def test_signal_loss_is_chunk_invariant(rng):
    n = 360 * 30
    x = rng.standard_normal((n, 2)).astype(np.float32) * 100
    x[1000:1500] = np.nan                     # 1.4 s NaN: raises
    x[3000:3200, 0] = np.inf                  # one channel only: not lost
    x[5000:5100] = np.nan                     # 0.3 s: too short
    x[7000:9000] = x[7000]                    # 5.6 s flat line: raises from its start
    x[9100:9500] = np.nan                     # returns within the clear time: same condition
    q = Quality(2, 360, 20_000.0)

    def run(bounds):
        alarms, state, out = Alarms(CTX, LABELS, 10.0), q.init_state(), []
        edges = [0, *bounds, n]
        for a, b in zip(edges[:-1], edges[1:]):
            stretches, state = q.update(x[a:b], a, None, state)
            out += alarms.on_loss(stretches, b)
        return [(al["alert_id"], al["seq"], al["raised_sample"], al["end_sample"]) for al in out]

    whole = run([])
    assert whole == [("bed-1:signal_loss:1000", 1, 1359, None), ("bed-1:signal_loss:1000", 2, 1359, 1500),
                     ("bed-1:signal_loss:7000", 1, 7359, None), ("bed-1:signal_loss:7000", 2, 7359, 9500)]
    for k in (1, 7, 300):
        assert run(np.sort(rng.choice(np.arange(1, n), size=n // (10 * k) or 1, replace=False)).tolist()) == whole
