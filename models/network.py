"""The causal network: samples at the model's rate in, per-token multi-label logits out.

Signal path of one chunk (any length, including 0 and 1 samples)::

    x (b, t, c) µV at config.sample_rate, mask (b, t, c) True where a sample is invalid
      -> patcher: prepend the carried partial patch, cut whole patches of P samples
         tokens (b, l, P, c), leftover carried to the next call
      -> normaliser: per channel, a causal EMA of the patch mean square (time constant
         norm_tau_s); each patch divided by its running RMS, clipped to ±clip
      -> channel encoder: the same MLP for every channel, (P,) -> (d_model,)
      -> channel pooling: softmax attention over the valid channels -> (b, l, d_model)
      -> n_layers x [x + MambaBlock(RMSNorm(x))]
      -> RMSNorm -> label heads (b, l, n_labels) and numeric heads (b, l, n_numerics)

Why a shared per-channel encoder with attention pooling (EEG takes 1, 19-23 or 64 channels):
the same weights serve any channel count and order, so one checkpoint handles Bonn's single
channel, a 10-20 scalp montage and a 64-channel cap; a channel that is off or masked simply
drops out of the softmax; and the pooling weights are a per-channel attribution for alert
evidence. The SSM runs once per session on the pooled tokens, so its cost and state are
independent of the channel count. Cost per channel per token: P*d_model + d_model**2 + d_model
multiply-adds (2,576 + 4,096 + 64 for the EEG model, about 7 k), against about 140 k for the
SSM stack per token; state per channel: the partial patch (P floats) and the normaliser's two
floats. What it gives up: interactions between channels are seen only after pooling (for
spatial patterns a channel-mixing layer would be the next step).

State (all parts with a leading batch axis, so a pool can gather and scatter them):
``patch`` (b, P, c) and ``patch_mask`` (b, P, c) the partial patch; ``patch_fill`` (b,) its
length; ``norm`` (b, c, 2) the normaliser's EMA of the mean square and of the weight;
``conv.i`` and ``h.i`` of every block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.config import ModelConfig
from models.scan import linear_scan
from models.ssm import MambaBlock

State = dict[str, torch.Tensor]


@dataclass
class NetworkOutput:
    """Outputs of one chunk, on the token grid.

    Attributes
    ----------
    logits : (b, l, n_labels) calibrated logits (divided by the label temperatures).
    numerics : (b, l, n_numerics) regression outputs in their units.
    valid : (b, l) bool, True for tokens that exist (row i has ``lengths[i]`` of them).
    masked : (b, l) fraction of the token's samples that were masked (NaN, Inf, saturation, gap).
    attribution : (b, l, c) channel pooling weights (0 for masked channels).
    """

    logits: torch.Tensor
    numerics: torch.Tensor
    valid: torch.Tensor
    masked: torch.Tensor
    attribution: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


class Network(nn.Module):
    """Patching stem, stack of residual Mamba blocks, per-token heads (see module docstring)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        P, d = config.patch_len, config.d_model
        self.encoder = nn.Sequential(nn.Linear(P, d), nn.GELU(), nn.Linear(d, d))
        self.pool_score = nn.Linear(d, 1)
        self.norms = nn.ModuleList(nn.RMSNorm(d) for _ in range(config.n_layers))
        self.blocks = nn.ModuleList(
            MambaBlock(d, config.d_state, config.d_conv, config.expand) for _ in range(config.n_layers))
        self.norm_out = nn.RMSNorm(d)
        self.head = nn.Linear(d, len(config.labels))
        self.numeric_head = nn.Linear(d, len(config.numerics)) if config.numerics else None
        # Post-hoc calibration: logits are divided by these (temperature scaling), 1 = uncalibrated.
        self.register_buffer("temperature", torch.ones(len(config.labels)))

    # ------------------------------------------------------------------ state

    def init_state(self, batch: int, n_channels: int) -> State:
        """Zero state for ``batch`` sessions of ``n_channels`` channels each."""
        P = self.config.patch_len
        state: State = {
            "patch": torch.zeros(batch, P, n_channels),
            "patch_mask": torch.zeros(batch, P, n_channels),
            "patch_fill": torch.zeros(batch, dtype=torch.int64),
            "norm": torch.zeros(batch, n_channels, 2),
        }
        for i, block in enumerate(self.blocks):
            for k, v in block.init_state(batch).items():
                state[f"{k}.{i}"] = v
        return state

    # ------------------------------------------------------------------ stem

    def _patch(self, x, mask, lengths, state):
        """Cut whole patches out of (carried partial patch + new samples), per row.

        Returns tokens (b, l, P, c), token masks (b, l, P, c) float, tokens per row (b,), and
        the new partial patch.
        """
        b, t, c = x.shape
        P = self.config.patch_len
        fill = state["patch_fill"]
        total = fill + lengths                                           # (b,)
        n_tok = torch.div(total, P, rounding_mode="floor")               # (b,)
        l = int(n_tok.max()) if b else 0
        # Row i of `buf`: the carried fill_i samples, then its new samples, then zeros.
        pos = (fill.view(-1, 1) + torch.arange(t).view(1, -1)).unsqueeze(-1).expand(-1, -1, c)
        buf = torch.cat([state["patch"], x.new_zeros(b, t + P, c)], dim=1)
        buf = buf.scatter(1, pos, x)
        buf_m = torch.cat([state["patch_mask"], x.new_zeros(b, t + P, c)], dim=1)
        buf_m = buf_m.scatter(1, pos, mask.to(x.dtype))
        tokens = buf[:, : l * P].reshape(b, l, P, c)
        token_mask = buf_m[:, : l * P].reshape(b, l, P, c)
        rest = (n_tok * P).view(-1, 1, 1) + torch.arange(P).view(1, -1, 1)  # (b, P, 1)
        rest = rest.expand(-1, -1, c)
        new_state = {"patch": torch.gather(buf, 1, rest), "patch_mask": torch.gather(buf_m, 1, rest),
                     "patch_fill": total - n_tok * P}
        return tokens, token_mask, n_tok, new_state

    def _normalise(self, tokens, token_mask, valid, norm_state):
        """Divide each channel's patch by its causal running RMS (EMA over valid patches)."""
        cfg = self.config
        P = cfg.patch_len
        ok = 1.0 - token_mask                                            # (b, l, P, c)
        n_ok = ok.sum(2)                                                 # (b, l, c)
        chan_valid = (n_ok >= P / 2) & valid.unsqueeze(-1)               # (b, l, c) bool
        cv = chan_valid.to(tokens.dtype)
        mean_sq = (tokens.square() * ok).sum(2) / n_ok.clamp_min(1.0)    # (b, l, c) µV²
        beta = math.exp(-P / (cfg.sample_rate * cfg.norm_tau_s))
        decay = torch.where(chan_valid, beta, 1.0).unsqueeze(-1).expand(-1, -1, -1, 2)
        inputs = torch.stack([(1 - beta) * mean_sq * cv, (1 - beta) * cv], dim=-1)  # (b, l, c, 2)
        hist = linear_scan(decay, inputs, norm_state)                    # (b, l, c, 2)
        rms = (hist[..., 0] / hist[..., 1].clamp_min(1e-12)).sqrt()      # (b, l, c) µV
        scale = rms.clamp_min(cfg.norm_floor_uv).unsqueeze(2)            # (b, l, 1, c)
        xn = (tokens / scale).clamp(-cfg.clip, cfg.clip) * ok
        new_norm = hist[torch.arange(hist.shape[0]), (valid.sum(1) - 1).clamp_min(0)] if hist.shape[1] else norm_state
        new_norm = torch.where(valid.any(1).view(-1, 1, 1), new_norm, norm_state)
        return xn, chan_valid, new_norm

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, state: State, mask: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> tuple[NetworkOutput, State]:
        """Advance every row over its chunk of samples.

        Parameters
        ----------
        x : torch.Tensor
            (b, t, c) float32, µV at ``config.sample_rate``, preprocessed; t may be 0.
        state : dict
            From :meth:`init_state` or a previous call.
        mask : torch.Tensor, optional
            (b, t, c) bool, True where a sample is invalid (NaN, Inf, saturation, gap). Masked
            samples never reach the state: their values are zeroed, they are left out of the
            normaliser, and a token with no valid channel does not update the SSM state.
        lengths : torch.Tensor, optional
            (b,) int64 real samples per row, for right-padded batches of unequal chunks;
            default all t.

        Returns
        -------
        out : NetworkOutput
            On the token grid; the tokens of row i are ``out.valid[i]``.
        state : dict
            The state after each row's last real sample.
        """
        b, t, c = x.shape
        if mask is None:
            mask = torch.zeros(x.shape, dtype=torch.bool)
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.int64)
        x = torch.where(mask, 0.0, x)
        tokens, token_mask, n_tok, new_state = self._patch(x, mask, lengths, state)
        l = tokens.shape[1]
        if l == 0:  # no token completed: only the partial patch moved
            empty = x.new_zeros(b, 0)
            out = NetworkOutput(logits=x.new_zeros(b, 0, len(self.config.labels)),
                                numerics=x.new_zeros(b, 0, len(self.config.numerics)),
                                valid=empty.bool(), masked=empty, attribution=x.new_zeros(b, 0, c))
            return out, {**state, **new_state}
        valid = torch.arange(l).view(1, -1) < n_tok.view(-1, 1)          # (b, l)
        xn, chan_valid, new_state["norm"] = self._normalise(tokens, token_mask, valid, state["norm"])
        e = self.encoder(xn.permute(0, 1, 3, 2))                         # (b, l, c, d)
        score = self.pool_score(e).squeeze(-1).masked_fill(~chan_valid, -1e9)  # (b, l, c)
        weights = F.softmax(score, dim=-1) * chan_valid                  # (b, l, c)
        h = (weights.unsqueeze(-1) * e).sum(2)                           # (b, l, d)
        keep = chan_valid.any(-1).to(x.dtype)                            # (b, l) 0: pad or no signal
        for i, (norm, block) in enumerate(zip(self.norms, self.blocks)):
            y, s = block(norm(h), {"conv": state[f"conv.{i}"], "h": state[f"h.{i}"]}, keep, n_tok)
            h = h + y
            new_state[f"conv.{i}"], new_state[f"h.{i}"] = s["conv"], s["h"]
        h = self.norm_out(h)
        numerics = self.numeric_head(h) if self.numeric_head is not None else h.new_zeros(b, l, 0)
        out = NetworkOutput(logits=self.head(h) / self.temperature, numerics=numerics,
                            valid=valid, masked=token_mask.mean((2, 3)), attribution=weights)
        return out, new_state
