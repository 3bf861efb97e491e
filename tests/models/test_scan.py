"""The fast chunked scan equals the reference recurrence, for any length and initial state."""

import pytest
import torch

from models.scan import linear_scan, selective_scan_chunked, selective_scan_ref, selective_scan_steps


def _inputs(b, l, d, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, l, d, generator=g)
    dt = torch.rand(b, l, d, generator=g) * 0.2
    A = -torch.rand(d, n, generator=g) * 8 - 0.1
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    D, h = torch.randn(d, generator=g), torch.randn(b, d, n, generator=g)
    return u, dt, A, B, C, D, h


@pytest.mark.parametrize("l", [0, 1, 7, 8, 9, 31, 32, 33, 100, 257])
def test_chunked_scan_equals_reference(l):
    args = _inputs(3, l, 16, 8, seed=l)
    y_ref, h_ref = selective_scan_ref(*args)
    y_fast, h_fast = selective_scan_chunked(*args)
    assert y_fast.shape == y_ref.shape == (3, l, 16)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_fast, h_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("l", [0, 1, 2, 3, 8])
def test_streaming_steps_equal_reference(l):
    """The short-sequence path of pooled streaming steps (many sessions, a few tokens)."""
    args = _inputs(40, l, 16, 8, seed=100 + l)
    y_ref, h_ref = selective_scan_ref(*args)
    y_fast, h_fast = selective_scan_steps(*args)
    assert y_fast.shape == y_ref.shape == (40, l, 16)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_fast, h_ref, rtol=1e-5, atol=1e-5)


def test_scan_splits_compose():
    """Scanning [0, 40) then [40, 100) from the carried state equals one pass."""
    u, dt, A, B, C, D, h = _inputs(2, 100, 8, 4)
    y, h_end = selective_scan_chunked(u, dt, A, B, C, D, h)
    y1, h1 = selective_scan_chunked(u[:, :40], dt[:, :40], A, B[:, :40], C[:, :40], D, h)
    y2, h2 = selective_scan_ref(u[:, 40:], dt[:, 40:], A, B[:, 40:], C[:, 40:], D, h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h2, h_end, rtol=1e-5, atol=1e-5)


def test_zero_dt_leaves_state_unchanged():
    u, dt, A, B, C, D, h = _inputs(2, 50, 8, 4)
    _, h_after = selective_scan_chunked(u, torch.zeros_like(dt), A, B, C, D, h)
    torch.testing.assert_close(h_after, h)


def test_long_sequence_stays_finite():
    """Products of decays only: no overflow however long the sequence or large dt * |A|."""
    u, dt, A, B, C, D, h = _inputs(1, 5000, 4, 4)
    y, h_end = selective_scan_chunked(u, dt * 50, A * 10, B, C, D, h)
    assert torch.isfinite(y).all() and torch.isfinite(h_end).all()


def test_linear_scan_generic_trailing_shape():
    g = torch.Generator().manual_seed(3)
    a, x, h0 = torch.rand(2, 70, 3, 2, generator=g), torch.randn(2, 70, 3, 2, generator=g), torch.randn(2, 3, 2, generator=g)
    h, expected = h0, []
    for t in range(70):
        h = a[:, t] * h + x[:, t]
        expected.append(h)
    torch.testing.assert_close(linear_scan(a, x, h0), torch.stack(expected, 1), rtol=1e-5, atol=1e-5)


def test_gradients_of_both_paths_agree():
    """Training backpropagates through the fast path: its gradients equal the reference's."""
    grads = []
    for scan in (selective_scan_ref, selective_scan_chunked):
        u, dt, A, B, C, D, h = _inputs(2, 70, 8, 4, seed=9)
        u.requires_grad_(True)
        dt.requires_grad_(True)
        y, h_end = scan(u, dt, A, B, C, D, h)
        (y.square().mean() + h_end.sum()).backward()
        grads.append((u.grad, dt.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-4)
