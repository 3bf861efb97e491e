"""EEG signal-quality head (models.eeg_sqi): streaming contract, behaviour on real excerpts with
inserted artifacts, the shipped weights and a short fit (models.eeg_sqi_fit)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from synthetic import random_bounds

from models.augment import make_artifact
from models.config import eeg_config
from models.data import eeg as eeg_data
from models.data.excerpts import excerpt_path
from models.data.paths import datasets_dir
from models.eeg_sqi import FEATURES, WARMUP_TOKENS, EegQuality, EegQualityWeights, load_weights
from models.eeg_sqi_fit import (Run, fit, head_features, insert_artifact, inside_tokens, preprocess, split_metrics,
                                token_probs)

CFG = eeg_config()
P = CFG.patch_len


def shipped() -> EegQualityWeights:
    w = load_weights()
    assert w is not None, "models/checkpoints/vigil-eeg-sqi.json is missing"
    return w


def bonn_z001() -> tuple[np.ndarray, float]:
    """(t, 1) µV of the shipped Bonn Z001 excerpt (healthy surface EEG) and its rate."""
    rec = eeg_data.read_bonn(excerpt_path("bonn_Z001"))
    return rec.signal, rec.sample_rate


def chb_preictal() -> tuple[np.ndarray, float]:
    """(t, 23) µV of the shipped CHB-MIT chb01_03 pre-ictal excerpt (10 s) and its rate."""
    rec = eeg_data.read_chbmit_npy(excerpt_path("chbmit_chb01_03_preictal"))
    return rec.signal, rec.sample_rate


def stream(head: EegQuality, y: np.ndarray, mask: np.ndarray, bounds, roundtrip: bool = False) -> np.ndarray:
    """q of ``y`` cut at ``bounds``; with ``roundtrip`` the state goes through np.savez between chunks."""
    state, out = head.initial_state(), []
    edges = [0, *bounds, len(y)]
    for a, b in zip(edges[:-1], edges[1:]):
        q, state = head.process(y[a:b], mask[a:b], state)
        assert q.dtype == np.float64 and q.ndim == 1
        out.append(q)
        if roundtrip:
            buf = io.BytesIO()
            np.savez(buf, **state)
            buf.seek(0)
            with np.load(buf, allow_pickle=False) as z:
                state = {k: z[k] for k in z.files}
    return np.concatenate(out)


@pytest.mark.parametrize("roundtrip", [False, True])
def test_any_chunking_gives_the_same_q(roundtrip):
    x, fs = chb_preictal()
    y, mask = preprocess(CFG, x, fs)
    mask = mask.copy()
    mask[700:760, 4] = True                                   # a short loss on one channel
    head = EegQuality(CFG, y.shape[1], shipped())
    whole = stream(head, y, mask, [])
    rng = np.random.default_rng(3)
    chunked = stream(head, y, mask, random_bounds(len(y), CFG.sample_rate, rng, max_s=1.5), roundtrip=roundtrip)
    assert len(whole) == len(y) // P
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-9)


def test_one_value_per_completed_token():
    x, fs = bonn_z001()
    y, mask = preprocess(CFG, x, fs)
    head = EegQuality(CFG, 1, shipped())
    state, seen = head.initial_state(), 0
    rng = np.random.default_rng(0)
    for size in [0, 1, 31, 1, 0, 32, 33, 95, 7, 256, 0, 300, 5, *rng.integers(0, 200, 20)]:
        chunk = y[seen:seen + size]
        q, state = head.process(chunk, mask[seen:seen + size], state)
        assert len(q) == (seen + len(chunk)) // P - seen // P
        assert np.all((q >= 0) & (q <= 1))
        seen += len(chunk)


def test_first_seconds_and_clean_signal_read_low():
    x, fs = bonn_z001()
    q = _q(x, fs)
    assert np.all(q[:WARMUP_TOKENS] == 0.0)
    assert q.max() < 0.5 and np.median(q) < 0.1


def _with_artifacts(x: np.ndarray, fs: float, chans: list[int]) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """A flat stretch (6-9 s) and a large EMG burst (8 x the channel's SD, 13-16 s) on ``chans``,
    at the raw input."""
    rng = np.random.default_rng(7)
    y = x.copy()
    spans = [("flat", int(6 * fs), int(9 * fs)), ("emg", int(13 * fs), int(16 * fs))]
    for kind, a, b in spans:
        for ch in chans:
            if kind == "flat":
                y[a:b, ch] = x[:, ch].mean()
            else:
                y[a:b, ch] += (make_artifact("emg", b - a, fs, rng) * x[:, ch].std() * 8.0).astype(np.float32)
    return y, spans


def _q(x: np.ndarray, fs: float) -> np.ndarray:
    """The shipped head's q of a raw recording (t, c) µV, in one chunk."""
    y, mask = preprocess(CFG, x, fs)
    head = EegQuality(CFG, x.shape[1], shipped())
    return head.process(y, mask, head.initial_state())[0]


def test_flat_and_emg_raise_q_on_one_channel_of_bonn():
    x, fs = bonn_z001()
    y, spans = _with_artifacts(x, fs, [0])
    q = _q(y, fs)
    for _, a, b in spans:
        inside = inside_tokens(len(q), CFG, fs, a, b)
        assert np.mean(q[inside] >= 0.5) >= 0.7
    clean = inside_tokens(len(q), CFG, fs, int(2.5 * fs), int(5.5 * fs))
    assert q[clean].max() < 0.3


def test_flat_and_emg_on_a_few_of_23_channels():
    x, fs = chb_preictal()
    x = np.concatenate([x, x])                                # 20 s: the spans fit
    y, spans = _with_artifacts(x, fs, [2, 9, 17])
    q = _q(y, fs)
    clean = q[inside_tokens(len(q), CFG, fs, int(2.5 * fs), int(5.5 * fs))].max()
    assert clean < 0.1
    for _, a, b in spans:                      # more channels, a stricter head: high, not always >= 0.5
        inside = q[inside_tokens(len(q), CFG, fs, a, b)]
        assert np.median(inside) >= 0.4 and np.median(inside) > 5 * clean


def test_masked_channels_do_not_count():
    x, fs = chb_preictal()
    y, mask = preprocess(CFG, x, fs)
    head = EegQuality(CFG, y.shape[1], shipped())
    gone = mask.copy()
    gone[:, 5] = True
    y_gone = y.copy()
    y_gone[:, 5] = 0.0                                        # a lost channel, held at a constant
    q_gone = head.process(y_gone, gone, head.initial_state())[0]
    assert q_gone.max() < 0.5
    q_all = head.process(y, np.ones_like(mask), head.initial_state())[0]
    assert len(q_all) == len(y) // P and np.all(q_all == 0.0)


def test_shipped_weights_round_trip_and_reject_other_features(tmp_path):
    w = shipped()
    assert w.hold_tokens >= 1 and set(w.meta) >= {"data", "split", "command", "validation"}
    d = json.loads(json.dumps(w.to_json()))
    again = EegQualityWeights.from_json(d)
    f = np.random.default_rng(0).normal(size=(5, len(FEATURES)))
    np.testing.assert_allclose(again.logit(f), w.logit(f))
    path = tmp_path / "w.json"
    path.write_text(json.dumps(d))
    assert load_weights(path) is not None and load_weights(tmp_path / "absent.json") is None
    with pytest.raises(ValueError):
        EegQualityWeights.from_json({**d, "tau_s": 5.0})
    with pytest.raises(ValueError):
        EegQualityWeights.from_json({**d, "features": d["features"][:-1]})


def test_a_few_steps_of_fitting_separate_artifacts():
    """models.eeg_sqi_fit.fit on runs built from the shipped excerpts (artifacts inserted as the
    evaluation does): the fitted head scores artifact spans above clean tokens."""
    rng = np.random.default_rng(11)
    runs = []
    for x, fs in (bonn_z001(), chb_preictal()):
        for kind in ("clean", "emg", "flat", "blink", "emg", "flat"):
            if kind == "clean":
                y, a, b, chans = x, 0, 0, np.zeros(0, int)
            else:
                y, a, b, chans = insert_artifact(x, fs, kind, rng)
            f, ok = head_features(CFG, y, fs)
            inside = inside_tokens(len(f), CFG, fs, a, b)
            label = np.zeros(ok.shape, bool)
            label[np.ix_(inside, chans)] = True
            runs.append(Run("train", "excerpt", kind, f, ok, label, inside, np.zeros(len(f), bool), label * 1.0))
    kw = fit(runs, epochs=60)
    assert set(kw) == {"mean", "scale", "w1", "b1", "w2", "b2", "channel_penalty"}
    w = EegQualityWeights(**kw, hold_tokens=1, meta={})
    for r in runs:
        r.score = token_probs(w, r.f, r.ok, 1)
    m = split_metrics(runs, CFG, kinds=("emg", "flat"))
    assert m["head_auroc_emg"] > 0.8 and m["head_auroc_flat"] > 0.8


def test_fit_helper_matches_the_streaming_head():
    """The validation scores of the fit (token_probs on precomputed features) are the service's."""
    x, fs = chb_preictal()
    y, a, b, _ = insert_artifact(x, fs, "emg", np.random.default_rng(2))
    w = shipped()
    f, ok = head_features(CFG, y, fs)
    np.testing.assert_allclose(token_probs(w, f, ok, w.hold_tokens), _q(y, fs), rtol=0, atol=1e-12)


@pytest.mark.datasets
def test_floor_on_bonn_validation_segments():
    """CI floor for the shipped head: EMG and flat artifacts on ten Bonn Z validation segments are
    scored above their clean tokens (token AUROC >= 0.9) and Bonn S validation segments stay low."""
    root = datasets_dir() / "bonn"
    if not root.is_dir():
        pytest.skip(f"Bonn EEG not under {datasets_dir()} (set VIGIL_DATASETS)")
    segs = eeg_data.bonn_segments(root)
    z = [p for p, s in segs if s == "Z" and 51 <= int(p.stem[1:]) <= 60]
    sz = [p for p, s in segs if s == "S" and 51 <= int(p.stem[1:]) <= 60]
    fs, rng, runs = eeg_data.BONN_SAMPLE_RATE, np.random.default_rng(0), []

    def scored(kind: str, q: np.ndarray, inside: np.ndarray) -> Run:
        n = len(q)
        return Run("val", "bonn", kind, np.zeros((n, 1, 0)), np.ones((n, 1), bool), np.zeros((n, 1), bool), inside,
                   np.full(n, kind == "seizure"), np.zeros((n, 1)), score=q)

    for p in z:
        x = eeg_data.read_bonn(p).signal
        for kind in ("clean", "emg", "flat"):
            y, a, b, _ = (x, 0, 0, None) if kind == "clean" else insert_artifact(x, fs, kind, rng)
            q = _q(y, fs)
            runs.append(scored(kind, q, inside_tokens(len(q), CFG, fs, a, b)))
    for p in sz:
        q = _q(eeg_data.read_bonn(p).signal, fs)
        runs.append(scored("seizure", q, np.zeros(len(q), bool)))
    m = split_metrics(runs, CFG, kinds=("emg", "flat"))
    assert m["head_auroc_emg"] >= 0.9 and m["head_auroc_flat"] >= 0.9
    assert m["high_share_clean"] <= 0.01 and m["high_share_seizure"] <= 0.05
