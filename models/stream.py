"""One session's full signal path (preprocessor + network + quality head), streamed or in one
offline pass.

The quality head (:mod:`models.sqi`) runs beside the network on the same preprocessed signal; its
probability is fused into the network's ``noise`` / ``artifact`` column.

Training, evaluation and the tests use these; the service runs the same two stages, with the
network step batched across sessions by :class:`models.state.StatePool`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from models.network import Network
from models.preprocess import PreprocessState, Preprocessor
from models.sqi import fuse, network_quality, quality_head_for, restored_head
from models.state import SlotOutput, arrays_to_bytes, bytes_to_arrays, state_from_arrays, state_to_arrays


@dataclass
class StreamOutput(SlotOutput):
    """A :class:`~models.state.SlotOutput` placed on the session's time axis.

    Attributes
    ----------
    step : (n,) int64 token (output step) indices k, from 0 at the session's first sample.
    sample : (n,) int64 the last input sample (client rate) each step covers.
    quality_network : (n,) the network's own quality (``noise`` / ``artifact``) probability, before
        the quality head is fused into ``probs``: what suppresses physiological alarms.
    """

    step: np.ndarray
    sample: np.ndarray
    quality_network: np.ndarray

    @staticmethod
    def concat(parts: list["StreamOutput"]) -> "StreamOutput":
        return StreamOutput(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                               for f in dataclasses.fields(StreamOutput)})


def step_samples(pre: Preprocessor, patch_len: int, steps: np.ndarray) -> np.ndarray:
    """The last input sample covered by output steps ``k``: a pure function of k and the rates."""
    return pre.input_index((np.asarray(steps, dtype=np.int64) + 1) * patch_len - 1)


class SessionStream:
    """Preprocessor and network state of one session.

    Parameters
    ----------
    network : Network
    input_rate : float
        Session sample rate in Hz.
    n_channels : int
    units : {"uV", "mV", "V"}
    quality : bool
        Fuse the modality's quality head (when shipped) into the quality column; False: the
        network's outputs alone (for comparison).
    """

    def __init__(self, network: Network, input_rate: float, n_channels: int, units: str = "uV",
                 quality: bool = True):
        self.network = network
        self.pre = Preprocessor(network.config, input_rate, n_channels, units)
        self.pre_state: PreprocessState = self.pre.init_state()
        self.state = network.init_state(1, n_channels)
        self.sqi = quality_head_for(network.config, n_channels) if quality else None
        self.sqi_state = self.sqi.initial_state() if self.sqi is not None else None
        self.n_steps = 0

    @torch.inference_mode()
    def push(self, x: np.ndarray) -> StreamOutput:
        """Feed (t, c) samples in the session's units (t >= 0); return the completed steps."""
        y, mask, self.pre_state = self.pre.process(x, self.pre_state)
        out, self.state = self.network(torch.from_numpy(y)[None], self.state, torch.from_numpy(mask)[None])
        n = int(out.valid.sum())
        steps = np.arange(self.n_steps, self.n_steps + n)
        self.n_steps += n
        probs = out.probs[0, :n].numpy()
        quality_network = network_quality(probs, self.network.config)
        if quality_network is None:
            quality_network = np.zeros(n, np.float32)
        if self.sqi is not None:
            q, self.sqi_state = self.sqi.process(y, mask, self.sqi_state)
            probs = fuse(probs, q, self.network.config)
        return StreamOutput(step=steps, sample=step_samples(self.pre, self.network.config.patch_len, steps),
                            quality_network=quality_network, probs=probs, numerics=out.numerics[0, :n].numpy(),
                            masked=out.masked[0, :n].numpy(), attribution=out.attribution[0, :n].numpy())

    def snapshot(self) -> bytes:
        """Preprocessor and network state as bytes."""
        arrays = {f"pre.{k}": v for k, v in self.pre_state.to_arrays().items()}
        arrays |= {f"net.{k}": v for k, v in state_to_arrays(self.state).items()}
        if self.sqi is not None:
            arrays |= {f"sqi.{k}": v for k, v in self.sqi_state.items()}
        arrays["steps"] = np.array(self.n_steps, dtype=np.int64)
        return arrays_to_bytes(arrays)

    def restore(self, data: bytes) -> None:
        """Continue from a :meth:`snapshot` (of a session with the same rate and channels)."""
        arrays = bytes_to_arrays(data)
        self.pre_state = PreprocessState.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("pre.")})
        self.state = state_from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("net.")})
        self.n_steps = int(arrays["steps"])
        self.sqi, self.sqi_state = restored_head(self.sqi, {k[4:]: v for k, v in arrays.items()
                                                            if k.startswith("sqi.")})


def run_offline(network: Network, x: np.ndarray, input_rate: float, units: str = "uV",
                quality: bool = True) -> StreamOutput:
    """One pass over a whole recording (t, c): the preprocessor once, the network once (fast scan)."""
    return SessionStream(network, input_rate, x.shape[1], units, quality).push(x)


def run_chunked(network: Network, x: np.ndarray, input_rate: float, bounds: list[int] | np.ndarray,
                units: str = "uV") -> StreamOutput:
    """Stream ``x`` cut at the sample indices ``bounds`` (ascending, may repeat: empty chunks)."""
    s = SessionStream(network, input_rate, x.shape[1], units)
    edges = [0, *bounds, len(x)]
    return StreamOutput.concat([s.push(x[a:b]) for a, b in zip(edges[:-1], edges[1:])])
