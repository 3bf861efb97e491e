"""The state pool: many sessions stepped in one call give what each gives alone."""

import numpy as np
import pytest
import torch
from synthetic import synthetic_signal

from models.config import ecg_config
from models.network import Network
from models.preprocess import Preprocessor
from models.state import StatePool
from models.sqi import fuse, quality_head_for
from models.stream import SessionStream


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return Network(ecg_config()).eval()


def test_sixty_four_sessions_pooled_equal_alone(network):
    """Acceptance 3: different rates, chunk sizes and start times; slots freed and reused."""
    rng = np.random.default_rng(64)
    sessions = []
    for i in range(64):
        fs = float(rng.choice([250.0, 360.0, 500.0, 128.0]))
        sessions.append(dict(fs=fs, x=synthetic_signal(rng.uniform(20, 40), fs, 2, seed=i),
                             start=int(rng.integers(0, 30)), chunk_s=rng.uniform(0.02, 1.5), pos=0))
    pool = StatePool(network, n_channels=2, capacity=8)  # grows while sessions join
    pooled = {i: [] for i in range(64)}
    tick = 0
    while any(s["pos"] < len(s["x"]) for s in sessions):
        slots, xs, masks, who = [], [], [], []
        for i, s in enumerate(sessions):
            if tick < s["start"] or s["pos"] >= len(s["x"]):
                continue
            if "slot" not in s:
                s["slot"], s["pre"] = pool.alloc(), Preprocessor(network.config, s["fs"], 2)
                s["pre_state"] = s["pre"].init_state()
                s["sqi"] = quality_head_for(network.config, 2)   # as the engine fuses it
                s["sqi_state"] = s["sqi"].initial_state() if s["sqi"] is not None else None
            n = max(1, int(s["chunk_s"] * s["fs"] * rng.uniform(0.5, 1.5)))
            y, m, s["pre_state"] = s["pre"].process(s["x"][s["pos"]: s["pos"] + n], s["pre_state"])
            s["pos"] += n
            slots.append(s["slot"]), xs.append(y), masks.append(m), who.append(i)
        for i, y, m, out in zip(who, xs, masks, pool.step(slots, xs, masks)):
            s = sessions[i]
            if s["sqi"] is not None:
                q, s["sqi_state"] = s["sqi"].process(y, m, s["sqi_state"])
                out.probs = fuse(out.probs, q, network.config)
            pooled[i].append(out.probs)
        for i in who:
            if sessions[i]["pos"] >= len(sessions[i]["x"]):
                pool.free(sessions[i]["slot"])  # a later session reuses the slot from a fresh state
        tick += 1
    assert pool.capacity >= 16 and pool.in_use == 0
    worst = 0.0
    for i, s in enumerate(sessions):
        alone = SessionStream(network, s["fs"], 2).push(s["x"]).probs
        got = np.concatenate(pooled[i])
        assert got.shape == alone.shape
        worst = max(worst, float(np.abs(got - alone).max()))
    assert worst <= 1e-5, worst


def test_pool_slot_bytes_round_trip(network):
    pool = StatePool(network, n_channels=2, capacity=2)
    a = pool.alloc()
    pool.step([a], [np.random.default_rng(0).standard_normal((700, 2)).astype(np.float32) * 100],
              [np.zeros((700, 2), bool)])
    data = pool.to_bytes(a)
    b = pool.alloc()
    pool.load_bytes(b, data)
    assert all(torch.equal(pool.state[k][a], pool.state[k][b]) for k in pool.state)


def test_freeing_an_unallocated_slot_is_an_error(network):
    pool = StatePool(network, n_channels=1, capacity=2)
    with pytest.raises(ValueError, match="Invalid slot"):
        pool.free(1)
