"""The stateful preprocessor: chunk-exact, correct resampling, masking, validation, bytes."""

import numpy as np
import pytest
from synthetic import random_bounds, synthetic_signal

from models.config import ecg_config, eeg_config
from models.preprocess import PreprocessState, Preprocessor
from models.state import arrays_to_bytes, bytes_to_arrays


def _run(pre, x, bounds):
    st, ys, ms = pre.init_state(), [], []
    edges = [0, *bounds, len(x)]
    for a, b in zip(edges[:-1], edges[1:]):
        y, m, st = pre.process(x[a:b], st)
        ys.append(y)
        ms.append(m)
    return np.concatenate(ys), np.concatenate(ms), st


@pytest.mark.parametrize("fs", [360.0, 250.0, 173.61, 4096.0, 50.0])
def test_any_chunking_equals_one_pass(fs, rng):
    pre = Preprocessor(ecg_config(), fs, 2)
    x = synthetic_signal(40, fs, 2, seed=int(fs))
    y1, m1, s1 = _run(pre, x, [])
    y2, m2, s2 = _run(pre, x, random_bounds(len(x), fs, rng, max_s=2.0))
    assert len(y1) == pre.model_samples_ready(len(x)) == s1.n_out
    np.testing.assert_allclose(y2, y1, atol=1e-3, rtol=1e-5)  # µV, signal ~ hundreds of µV
    assert (m1 == m2).all()


@pytest.mark.parametrize("fs_in,fs_out", [(360.0, 250.0), (173.61, 256.0), (1000.0, 256.0), (128.0, 256.0)])
def test_resampler_preserves_an_in_band_sine(fs_in, fs_out):
    """A 7 Hz sine resampled lands on the model's grid at the declared time positions."""
    cfg = eeg_config(sample_rate=fs_out, notch_hz=(), bandpass_hz=(0.1, 0.45 * fs_out))
    pre = Preprocessor(cfg, fs_in, 1)
    t_in = np.arange(int(20 * fs_in)) / fs_in
    x = np.sin(2 * np.pi * 7.0 * t_in)[:, None]
    st = pre.init_state()
    # the resampler stage alone, without the IIR filters
    y, mask, history, n_out = pre._resample(x, np.zeros_like(x, dtype=bool), st)
    j = np.arange(n_out)
    t_out = j * pre.down / pre.up / fs_in  # seconds: model sample j sits at input position j*down/up
    expect = np.sin(2 * np.pi * 7.0 * t_out)
    inner = slice(int(2 * fs_out), n_out - int(fs_out))  # away from the start transient
    assert np.abs(y[inner, 0] - expect[inner]).max() < 2e-3


def test_identity_rate_has_no_delay():
    pre = Preprocessor(ecg_config(), 250.0, 1)
    assert pre.delay_samples == 0 and pre.model_samples_ready(10) == 10
    assert int(pre.input_index(9)) == 9


def test_delay_is_declared_and_small():
    for fs in (50.0, 173.61, 360.0, 1000.0, 4096.0):
        pre = Preprocessor(ecg_config(), fs, 1)
        assert 0 < pre.delay_samples <= 0.25 * fs
        # every model sample is emitted exactly when its last needed input sample has arrived
        for n_in in range(0, 400, 7):
            ready = pre.model_samples_ready(n_in)
            if ready:
                assert pre.input_index(ready - 1) <= n_in - 1
            assert pre.input_index(ready) > n_in - 1


def test_units_are_converted_to_microvolts():
    cfg = ecg_config()
    x = synthetic_signal(10, 250.0, 1)
    y_uv, _, _ = Preprocessor(cfg, 250.0, 1, "uV").process(x, Preprocessor(cfg, 250.0, 1).init_state())
    y_mv, _, _ = Preprocessor(cfg, 250.0, 1, "mV").process(x / 1e3, Preprocessor(cfg, 250.0, 1).init_state())
    np.testing.assert_allclose(y_mv, y_uv, rtol=1e-4, atol=1e-2)


def test_nan_inf_and_saturation_are_masked_and_never_propagate():
    cfg = ecg_config()
    pre = Preprocessor(cfg, 360.0, 2)
    x = synthetic_signal(20, 360.0, 2).astype(np.float64)
    x[3600:3700, 0] = np.nan
    x[5000:5050, 1] = np.inf
    x[6000:6010, :] = 1e9  # far beyond abs_limit_uv
    y, mask, st = pre.process(x, pre.init_state())
    assert np.isfinite(y).all() and np.isfinite(st.zi).all() and np.isfinite(st.history).all()
    # the masked model samples sit where the bad input was (input position j * down / up)
    pos = np.arange(len(y)) * pre.down / pre.up
    assert mask[(pos > 3610) & (pos < 3690), 0].all() and not mask[(pos > 3610) & (pos < 3690), 1].any()
    assert mask[(pos > 5005) & (pos < 5045), 1].all()
    assert mask[(pos > 6002) & (pos < 6008)].all()
    assert not mask[pos < 3500].any()


@pytest.mark.parametrize("kwargs,message", [
    (dict(input_rate=0.0, n_channels=1), "Invalid sample_rate: expected 50–4096 Hz, got 0.0"),
    (dict(input_rate=5000.0, n_channels=1), "Invalid sample_rate"),
    (dict(input_rate=float("nan"), n_channels=1), "Invalid sample_rate"),
    (dict(input_rate=250.0, n_channels=1, units="mmHg"), "Invalid units"),
])
def test_invalid_parameters_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Preprocessor(ecg_config(), **kwargs)


def test_state_round_trips_through_bytes():
    pre = Preprocessor(ecg_config(), 360.0, 2)
    x = synthetic_signal(10, 360.0, 2)
    _, _, st = pre.process(x[:1234], pre.init_state())
    restored = PreprocessState.from_arrays(bytes_to_arrays(arrays_to_bytes(st.to_arrays())))
    y_a, m_a, _ = pre.process(x[1234:], st)
    y_b, m_b, _ = pre.process(x[1234:], restored)
    assert (y_a == y_b).all() and (m_a == m_b).all()


@pytest.mark.parametrize("fs,c", [(360.0, 2), (256.0, 19), (173.61, 1)])
def test_process_many_equals_process_per_session(fs, c, rng):
    """The batched call the engine makes gives each session exactly what its own call gives."""
    cfg = eeg_config() if c == 19 else ecg_config()
    pre = Preprocessor(cfg, fs, c)
    n = 6
    xs = [synthetic_signal(12, fs, c, seed=i).astype(np.float64) for i in range(n)]
    xs[2][100:140, 0] = np.nan
    xs[3][200:260, :] = 1e9
    one = [pre.init_state() for _ in range(n)]
    many = [pre.init_state() for _ in range(n)]
    pos = [0] * n
    for _ in range(12):
        chunks = []
        for i in range(n):
            k = int(rng.integers(0, int(0.6 * fs)))  # includes empty chunks
            chunks.append(xs[i][pos[i]:pos[i] + k])
            pos[i] += k
        outs = pre.process_many(chunks, many)
        for i, (y, m, st) in enumerate(outs):
            y1, m1, one[i] = pre.process(chunks[i], one[i])
            assert y.dtype == y1.dtype and (y == y1).all() and (m == m1).all()
            many[i] = st
            assert (st.n_in, st.n_out) == (one[i].n_in, one[i].n_out)
            assert (st.hold == one[i].hold).all() and (st.history == one[i].history).all()
            assert (st.zi is None) == (one[i].zi is None) and (st.zi is None or (st.zi == one[i].zi).all())
