"""Selective scans: the reference recurrence and a fast chunked scan that must agree with it.

Both compute, for every channel ``d`` and state index ``n`` of a diagonal selective SSM
(Mamba, Gu & Dao 2023, Algorithm 2), the discretised recurrence

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t        (zero-order hold on A, Euler on B)
    y_t = <h_t, C_t> + D * u_t

Glossary
--------
b        batch (sessions)
l        sequence length in tokens
d        SSM channels (``d_inner`` of the block)
n        state size per channel (``d_state``)
u        input sequence, (b, l, d)
dt       step sizes Δ after softplus, (b, l, d); dt = 0 leaves h unchanged (used for masked and
         padded tokens)
A        continuous-time diagonal state matrix, (d, n), negative real
B, C     input-dependent input and output projections, (b, l, n)
D        skip connection, (d,)
h        hidden state, (b, d, n)

The fast path multiplies decays in (0, 1] only, so it never exponentiates a positive number
and stays finite for any length; it is tested against the reference in ``tests/models``.
On a CPU it pays off for long sequences of one or two sessions (offline evaluation: about 3x
the reference at 4096 tokens); for batches of 8 or more the reference, vectorised across the
batch, is faster, so :func:`selective_scan` dispatches by size.
"""

from __future__ import annotations

import torch

# Tokens per chunk of the fast scan: log2(CHUNK) doubling steps inside a chunk, one sequential
# carry per chunk across chunks.
CHUNK = 64
# Sequences up to this many tokens take the reference path (streaming steps carry 1-3 tokens).
SHORT = 8
# The chunked scan is used when one token's state (b * d * n elements) is at most this large.
FAST_MAX_ELEMENTS = 8192


def selective_scan_ref(u, dt, A, B, C, D, h):
    """Readable reference recurrence, one token at a time.

    Parameters
    ----------
    u, dt : torch.Tensor
        (b, l, d) input and step sizes.
    A : torch.Tensor
        (d, n) negative real state matrix (fp32).
    B, C : torch.Tensor
        (b, l, n) input and output projections.
    D : torch.Tensor
        (d,) skip connection.
    h : torch.Tensor
        (b, d, n) state before the first token.

    Returns
    -------
    y : torch.Tensor
        (b, l, d) outputs.
    h : torch.Tensor
        (b, d, n) state after the last token.
    """
    ys = []
    for t in range(u.shape[1]):
        dA = torch.exp(dt[:, t, :, None] * A)                            # (b, d, n)
        dBu = dt[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]    # (b, d, n)
        h = dA * h + dBu
        ys.append((h * C[:, t, None, :]).sum(-1))                        # (b, d)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(u.shape)
    return y + u * D, h


def selective_scan_steps(u, dt, A, B, C, D, h):
    """The reference recurrence for a few tokens of many sessions (streaming steps), with the
    per-token work cut to one multiply-add: the decays and inputs of all tokens are computed in
    one vectorised call each, and the outputs in one contraction. Same arguments and results as
    :func:`selective_scan_ref` (to float rounding)."""
    l = u.shape[1]
    if l == 0:
        return u.new_zeros(u.shape) + u * D, h
    dA = torch.exp(dt.unsqueeze(-1) * A)                                 # (b, l, d, n)
    dBu = (dt.unsqueeze(-1) * B.unsqueeze(2)) * u.unsqueeze(-1)          # (b, l, d, n)
    hs = []
    for t in range(l):
        h = dA[:, t] * h + dBu[:, t]                                     # (b, d, n)
        hs.append(h)
    y = torch.matmul(torch.stack(hs, dim=1), C.unsqueeze(-1)).squeeze(-1)  # (b, l, d)
    return y + u * D, h


def scan_chunk(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """All states of ``h_t = a_t * h_{t-1} + x_t`` over one short chunk (dim 1), from ``h0``.

    A Hillis-Steele doubling scan composes the affine maps
    ``(a1, x1) then (a2, x2) = (a1 * a2, a2 * x1 + x2)`` in ceil(log2(l)) vectorised steps.
    """
    step = 1
    while step < a.shape[1]:  # afterwards: a = product of decays, x = state from zero
        x_next, a_next = x.clone(), a.clone()
        x_next[:, step:] += a[:, step:] * x[:, :-step]
        a_next[:, step:] *= a[:, :-step]
        x, a = x_next, a_next
        step *= 2
    return a * h0.unsqueeze(1) + x


def linear_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """All states of ``h_t = a_t * h_{t-1} + x_t`` along dim 1: doubling scans inside chunks,
    chained sequentially through the carried state.

    Parameters
    ----------
    a, x : torch.Tensor
        (b, l, ...) decays and inputs; trailing shapes equal.
    h0 : torch.Tensor
        (b, ...) state before the first step.
    chunk : int
        Steps per chunk.

    Returns
    -------
    torch.Tensor
        (b, l, ...) the state after every step.
    """
    states, h = [], h0
    for s in range(0, a.shape[1], chunk):
        hs = scan_chunk(a[:, s:s + chunk], x[:, s:s + chunk], h)
        states.append(hs)
        h = hs[:, -1]
    return torch.cat(states, dim=1) if states else x


def selective_scan_chunked(u, dt, A, B, C, D, h, chunk: int = CHUNK):
    """Fast selective scan for long sequences; same signature and results as the reference.

    Works chunk by chunk, so that the (b, chunk, d, n) decays and states of one chunk stay in
    cache; inside a chunk all tokens are scanned at once (:func:`scan_chunk`).
    """
    ys = []
    for s in range(0, u.shape[1], chunk):
        dt_c, u_c = dt[:, s:s + chunk], u[:, s:s + chunk]                # (b, L, d)
        dA = torch.exp(dt_c.unsqueeze(-1) * A)                           # (b, L, d, n)
        dBu = (dt_c * u_c).unsqueeze(-1) * B[:, s:s + chunk].unsqueeze(2)  # (b, L, d, n)
        hs = scan_chunk(dA, dBu, h)                                      # (b, L, d, n)
        ys.append(torch.einsum("bldn,bln->bld", hs, C[:, s:s + chunk]))
        h = hs[:, -1]
    y = torch.cat(ys, dim=1) if ys else torch.zeros_like(u)
    return y + u * D, h


def selective_scan(u, dt, A, B, C, D, h):
    """Dispatch between the two paths by where the time goes on a CPU.

    A streaming step (a few tokens) or a batch (the per-token recurrence is already vectorised
    over b * d * n elements that stay in cache) runs the reference; a long sequence of one or
    two sessions, where per-token dispatch dominates (offline evaluation), runs the chunked scan.
    ``bench/model_bench.py`` measures both. On a GPU (training with ``--device cuda``) a long
    sequence always takes the chunked scan: per-token kernel launches dominate there.
    """
    if u.shape[1] > SHORT and (u.is_cuda or u.shape[0] * u.shape[2] * A.shape[1] <= FAST_MAX_ELEMENTS):
        return selective_scan_chunked(u, dt, A, B, C, D, h)
    if u.shape[1] <= SHORT:
        return selective_scan_steps(u, dt, A, B, C, D, h)
    return selective_scan_ref(u, dt, A, B, C, D, h)
