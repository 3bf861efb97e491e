"""Test-wide settings and fixtures (helpers live in ``tests/synthetic.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# One intra-op thread: the tests' tensors are small, and on a busy 2-core machine a second
# OpenMP thread spins and waits, which made the model tests ten times slower.
torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
