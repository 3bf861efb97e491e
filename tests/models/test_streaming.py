"""Streaming equals offline; the state really carries history; bad input never poisons it."""

import numpy as np
import pytest
import torch
from synthetic import random_bounds, synthetic_signal

from models.config import ecg_config, eeg_config
from models.network import Network
from models.stream import SessionStream, run_chunked, run_offline


def _network(config, seed=0):
    torch.manual_seed(seed)
    return Network(config).eval()


@pytest.mark.slow
@pytest.mark.parametrize("config,fs,n_channels", [(ecg_config(), 360.0, 2), (eeg_config(), 500.0, 19)],
                         ids=["ecg-360-into-250", "eeg-500-into-256"])
def test_twenty_random_chunkings_equal_one_offline_pass(config, fs, n_channels):
    """Acceptance 1: 10 minutes, 20 chunkings of 0-5 s chunks with runs of 1-sample chunks."""
    network = _network(config)
    x = synthetic_signal(600, fs, n_channels, seed=7)
    offline = run_offline(network, x, fs)
    assert len(offline.step) == int(network.config.output_rate * 600) - 1  # the resampler's delay holds back one
    rng = np.random.default_rng(2026)
    for _ in range(20):
        streamed = run_chunked(network, x, fs, random_bounds(len(x), fs, rng))
        assert (streamed.step == offline.step).all() and (streamed.sample == offline.sample).all()
        np.testing.assert_allclose(streamed.probs, offline.probs, atol=1e-4, rtol=0)
        np.testing.assert_allclose(streamed.attribution, offline.attribution, atol=1e-4, rtol=0)


@pytest.mark.parametrize("t", [0, 1, 2, 24, 25, 26])
def test_forward_takes_any_chunk_length(t):
    network = _network(ecg_config())
    state = network.init_state(2, 2)
    out, new = network(torch.randn(2, t, 2) * 100, state)
    n = (t // 25)
    assert out.logits.shape == (2, n, len(network.config.labels))
    assert (new["patch_fill"] == t % 25).all()
    assert set(new) == set(state) and all(new[k].shape == state[k].shape for k in state)


def _probe_output(network, x, fs, reset_every=None):
    """Probability at the last step, streaming in 1-s chunks, optionally resetting state each chunk."""
    s = SessionStream(network, fs, x.shape[1])
    last = None
    for a in range(0, len(x), int(fs)):
        if reset_every:
            s = SessionStream(network, fs, x.shape[1])
        out = s.push(x[a:a + int(fs)])
        if len(out.step):
            last = out.probs[-1]
    return last


@pytest.mark.parametrize("config,fs,n_channels", [(ecg_config(), 360.0, 2), (eeg_config(), 256.0, 19)],
                         ids=["ecg", "eeg"])
def test_state_carries_history_beyond_thirty_seconds(config, fs, n_channels):
    """Acceptance 2: changing the input 30-40 s before a point changes the output at that point;
    a model whose state is reset every chunk does not see the change."""
    network = _network(config, seed=1)
    x = synthetic_signal(60, fs, n_channels, seed=3)
    changed = x.copy()
    changed[int(10 * fs): int(20 * fs)] *= 3.0           # 40-30 s before the last output
    changed[int(10 * fs): int(20 * fs)] += 300.0 * np.sin(np.arange(int(10 * fs)) / fs * 2 * np.pi * 5)[:, None]
    carried = np.abs(_probe_output(network, x, fs) - _probe_output(network, changed, fs)).max()
    reset = np.abs(_probe_output(network, x, fs, True) - _probe_output(network, changed, fs, True)).max()
    assert carried > 1e-4, "the state does not carry 30 s of history"
    assert reset == 0.0, "a model reset every chunk must not see the change"


@pytest.mark.parametrize("config,fs,n_channels", [(ecg_config(), 360.0, 2), (eeg_config(), 256.0, 23)],
                         ids=["ecg", "eeg"])
def test_nan_inf_bursts_keep_state_finite_and_later_outputs_defined(config, fs, n_channels):
    """Acceptance 5: NaN, Inf and absurd amplitudes are masked; state and outputs stay finite."""
    network = _network(config)
    x = synthetic_signal(60, fs, n_channels, seed=5).astype(np.float64)
    x[int(10 * fs): int(12 * fs)] = np.nan                       # all channels
    x[int(20 * fs): int(21 * fs), 0] = np.inf                    # one channel
    x[int(25 * fs): int(25.5 * fs)] = -np.inf
    x[int(30 * fs): int(30.2 * fs)] = 1e30                       # absurd amplitude
    x[int(40 * fs): int(40.1 * fs), -1] = np.nan
    s = SessionStream(network, fs, n_channels)
    outs = []
    for a in range(0, len(x), int(fs / 4)):
        outs.append(s.push(x[a:a + int(fs / 4)]))
        assert all(torch.isfinite(v.float()).all() for v in s.state.values())
        assert np.isfinite(s.pre_state.zi).all()
    out = type(outs[0]).concat(outs)
    assert np.isfinite(out.probs).all() and np.isfinite(out.attribution).all()
    t_step = out.sample / fs
    assert (out.masked[(t_step > 10.3) & (t_step < 11.9)] > 0.9).all()   # the NaN burst is flagged
    assert (out.masked[(t_step > 45)] == 0).all()                        # and clean signal is not
    # the output after the bursts depends only on the state: the same as a stream without bursts
    # would not hold exactly, but it must be a proper probability
    assert ((out.probs >= 0) & (out.probs <= 1)).all()


def test_all_channels_masked_freezes_the_ssm_state():
    network = _network(ecg_config())
    s = SessionStream(network, 250.0, 2)
    s.push(synthetic_signal(10, 250.0, 2))
    before = {k: v.clone() for k, v in s.state.items() if k.startswith("h.")}
    s.push(np.full((250 * 5, 2), np.nan))
    assert all(torch.equal(before[k], s.state[k]) for k in before)
