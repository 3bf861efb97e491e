"""A Mamba-style selective state-space block in plain PyTorch, with explicit streaming state.

Follows Mamba (Gu & Dao 2023) and its minimal readable implementations: an input projection
into ``x`` and a gate ``z``; a causal depthwise convolution over ``x``; input-dependent ``dt``,
``B`` and ``C``; a diagonal, log-parameterised ``A`` kept in fp32; a skip ``D``; the gated
output ``y * silu(z)`` projected back to ``d_model``.

Glossary
--------
d_model   width of the residual stream
d_inner   expand * d_model, channels of the SSM
d_state   n, state size per SSM channel
d_conv    kernel size of the causal depthwise convolution
dt_rank   rank of the low-rank projection that produces dt
A_log     log(-A), (d_inner, d_state); A = -exp(A_log), initialised S4D-real: A[:, i] = -(i + 1)
dt        step size Δ = softplus(dt_proj(.)), (b, l, d_inner), initialised in [1e-3, 1e-1]

Layers hold no session state. The state of one block is a pair of tensors:
``conv`` (b, d_inner, d_conv - 1), the last inputs of the convolution, and ``h``
(b, d_inner, d_state), the SSM state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.scan import SHORT, selective_scan


class MambaBlock(nn.Module):
    """Selective SSM mixer (no norm, no residual: the network adds those).

    Parameters
    ----------
    d_model, d_state, d_conv, expand : int
        Sizes, as in the glossary.
    dt_min, dt_max : float
        Range of the initial step sizes, in tokens.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():  # bias = softplus^-1(dt), so that softplus(bias) starts at dt
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))                          # (d_inner, d_state)
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def init_state(self, batch: int) -> dict[str, torch.Tensor]:
        """Zero state for ``batch`` sequences: conv history and SSM state."""
        return {"conv": torch.zeros(batch, self.d_inner, self.d_conv - 1),
                "h": torch.zeros(batch, self.d_inner, self.d_state)}

    def _conv(self, xc: torch.Tensor) -> torch.Tensor:
        """The causal depthwise convolution over (b, d_inner, k - 1 + l) -> (b, d_inner, l).

        A streaming step (a few tokens) takes it as one small matmul over sliding windows: oneDNN's
        depthwise ``conv1d`` costs a few hundred µs a call whatever the size, the largest single
        op of a pooled step; long sequences (training, offline) keep ``conv1d``.
        """
        k = self.d_conv
        if xc.shape[2] - (k - 1) > SHORT:
            return F.conv1d(xc, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)
        w = self.conv1d.weight.view(1, self.d_inner, k, 1)                # (1, d_inner, k, 1)
        return torch.matmul(xc.unfold(2, k, 1), w).squeeze(-1) + self.conv1d.bias.view(1, -1, 1)

    def forward(self, x: torch.Tensor, state: dict[str, torch.Tensor], keep: torch.Tensor,
                lengths: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Advance the block over a chunk of tokens.

        Parameters
        ----------
        x : torch.Tensor
            (b, l, d_model) tokens; row i holds ``lengths[i]`` real tokens then padding.
        state : dict
            ``conv`` (b, d_inner, d_conv - 1) and ``h`` (b, d_inner, d_state).
        keep : torch.Tensor
            (b, l) float, 1 where a token may update the SSM state; 0 for padding and masked
            tokens (their dt becomes 0, so h passes through unchanged).
        lengths : torch.Tensor
            (b,) int64, real tokens per row.

        Returns
        -------
        y : torch.Tensor
            (b, l, d_model).
        state : dict
            The state after each row's last real token.
        """
        x, z = self.in_proj(x).chunk(2, dim=-1)                          # (b, l, d_inner) each
        xc = torch.cat([state["conv"], x.transpose(1, 2)], dim=2)        # (b, d_inner, k-1+l)
        x = F.silu(self._conv(xc))
        x = x.transpose(1, 2)                                            # (b, l, d_inner)
        # conv history after each row's last real token: xc[:, :, lengths : lengths + k - 1]
        idx = lengths.view(-1, 1, 1) + torch.arange(self.d_conv - 1).view(1, 1, -1)
        conv = torch.gather(xc, 2, idx.expand(-1, self.d_inner, -1))
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt)) * keep.unsqueeze(-1)           # (b, l, d_inner)
        A = -torch.exp(self.A_log.float())                               # (d_inner, d_state)
        y, h = selective_scan(x, dt, A, B, C, self.D, state["h"])
        y = y * F.silu(z)
        return self.out_proj(y), {"conv": conv, "h": h}
