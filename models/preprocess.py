"""The stateful preprocessor shared by training, evaluation and serving.

Per session, for every chunk of samples as the monitor sent them::

    x (t, c) in the session's units at its rate
      -> units to µV
      -> mask: NaN, Inf and |x| > abs_limit_uv are invalid; invalid values are replaced by the
         channel's last valid value (sample and hold), so nothing non-finite goes further
      -> resampler: windowed-sinc polyphase FIR to the model's rate (any rational ratio);
         the mask is resampled alongside and thresholded
      -> band-pass and mains notches: scipy.signal.sosfilt with carried zi
    -> y (t', c) float32 µV at the model's rate, mask (t', c) bool

All state lives in :class:`PreprocessState` (numpy arrays and integers) and serialises to bytes,
so that any chunking gives the same output and a snapshot restores it exactly.

Timing. Model sample ``j`` sits at input position ``p_j = j * down / up`` (``up / down`` = model
rate / input rate, reduced). It needs input samples up to ``floor(p_j) + half_width``, so it is
emitted once that sample has arrived: the algorithmic delay is ``half_width`` input samples
(:attr:`Preprocessor.delay_samples`). The IIR filters add a frequency-dependent group delay that
is not a pure shift and is not counted there.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy import signal

from models.config import ModelConfig

# µV per unit of the hello's `units`.
UNIT_SCALE = {"uV": 1.0, "mV": 1e3, "V": 1e6}
# Zero crossings of the sinc on each side, at the lower of the two rates.
SINC_ZEROS = 8
KAISER_BETA = 6.0
CUTOFF = 0.9  # fraction of the lower Nyquist kept by the resampler
# A model sample is masked when masked inputs carry at least this share of its kernel weight.
MASK_SHARE = 0.25
MIN_RATE, MAX_RATE = 50.0, 4096.0
MAX_BANK = 2_000_000  # taps; larger banks (rare rate pairs) are computed per call instead


@dataclass
class PreprocessState:
    """Everything the preprocessor carries between chunks of one session.

    Attributes
    ----------
    hold : (c,) float64 µV, last valid value per channel (0 before any).
    history : (w, 2c) float64, the last ``w = 2 * half_width`` input samples: filled values (µV)
        in columns :c, their masks (0/1) in columns c:.
    n_in : int, input samples received so far.
    n_out : int, model samples emitted so far.
    zi : (sections, 2, c) float64, sosfilt state; None until the first sample sets it.
    """

    hold: np.ndarray
    history: np.ndarray
    n_in: int = 0
    n_out: int = 0
    zi: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"hold": self.hold, "history": self.history,
               "counters": np.array([self.n_in, self.n_out], dtype=np.int64)}
        if self.zi is not None:
            out["zi"] = self.zi
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "PreprocessState":
        n_in, n_out = (int(v) for v in a["counters"])
        return cls(hold=a["hold"].copy(), history=a["history"].copy(), n_in=n_in, n_out=n_out,
                   zi=a["zi"].copy() if "zi" in a else None)


@dataclass
class Preprocessor:
    """Units, masking, resampling and filtering for one input rate and channel count.

    Parameters
    ----------
    config : ModelConfig
        The model whose rate and filters to use.
    input_rate : float
        The session's sample rate in Hz (50-4096).
    n_channels : int
        Channels per sample.
    units : {"uV", "mV", "V"}
        Units of the incoming values.
    """

    config: ModelConfig
    input_rate: float
    n_channels: int
    units: str = "uV"
    up: int = field(init=False)
    down: int = field(init=False)
    half_width: int = field(init=False)

    def __post_init__(self):
        if not (MIN_RATE <= self.input_rate <= MAX_RATE) or not math.isfinite(self.input_rate):
            raise ValueError(f"Invalid sample_rate: expected {MIN_RATE:g}–{MAX_RATE:g} Hz, got {self.input_rate}")
        if self.units not in UNIT_SCALE:
            raise ValueError(f"Invalid units: expected one of {sorted(UNIT_SCALE)}, got {self.units!r}")
        ratio = Fraction(self.config.sample_rate).limit_denominator(10_000) / \
            Fraction(self.input_rate).limit_denominator(10_000)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.identity = self.up == self.down
        # fc: cutoff in cycles per input sample; half_width: kernel half-length in input samples
        self.fc = 0.5 * CUTOFF * min(1.0, self.up / self.down)
        self.half_width = 0 if self.identity else math.ceil(SINC_ZEROS / min(1.0, self.up / self.down))
        self.sos = _design_filters(self.config).copy()
        # Polyphase filter bank: one row of taps per phase (j * down mod up), precomputed when small.
        self._taps = np.arange(-self.half_width + 1, self.half_width + 1)  # input k = floor(p_j) + tap
        small = not self.identity and self.up * len(self._taps) <= MAX_BANK
        self._bank = _polyphase_bank(self.up, self.half_width, self.fc) if small else None
        self._zi0 = _rest_state(self.config)                             # (sections, 2) at rest on 1.0

    @property
    def batch_key(self) -> tuple:
        """Preprocessors with equal keys compute alike, so :meth:`process_many` may serve them together."""
        return id(self.config), self.input_rate, self.n_channels, self.units

    # ------------------------------------------------------------------ design

    def _design_filters(self) -> np.ndarray:
        return _design_filters(self.config).copy()

    @property
    def delay_samples(self) -> int:
        """Algorithmic delay of the resampler, in input samples."""
        return self.half_width

    def init_state(self) -> PreprocessState:
        c = self.n_channels
        return PreprocessState(hold=np.zeros(c), history=np.zeros((2 * self.half_width, 2 * c)))

    def input_index(self, j: int | np.ndarray) -> int | np.ndarray:
        """Last input sample that model sample ``j`` depends on (a pure function of j and rates)."""
        return (np.asarray(j, dtype=np.int64) * self.down) // self.up + self.half_width

    def model_samples_ready(self, n_in: int) -> int:
        """How many model samples can be emitted once ``n_in`` input samples have arrived.

        The count of j >= 0 with floor(j * down / up) + half_width <= n_in - 1.
        """
        last = n_in - 1 - self.half_width
        return 0 if last < 0 else -(-((last + 1) * self.up) // self.down)

    # ------------------------------------------------------------------ process

    def process(self, x: np.ndarray, state: PreprocessState) -> tuple[np.ndarray, np.ndarray, PreprocessState]:
        """Run one chunk.

        Parameters
        ----------
        x : np.ndarray
            (t, c) samples in ``units`` at ``input_rate``; NaN and Inf allowed (masked).
        state : PreprocessState
            Carried state; not modified (a new one is returned).

        Returns
        -------
        y : np.ndarray
            (t', c) float32 µV at the model's rate.
        mask : np.ndarray
            (t', c) bool, True where the model sample is invalid.
        state : PreprocessState
        """
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.n_channels) * UNIT_SCALE[self.units]
        bad = ~np.isfinite(x) | (np.abs(x) > self.config.abs_limit_uv)     # (t, c)
        filled, hold = _sample_and_hold(x, bad, state.hold)
        if self.identity:
            y, mask = filled, bad
            history, n_out = state.history, state.n_out + len(x)
        else:
            y, mask, history, n_out = self._resample(filled, bad, state)
        zi = state.zi
        if zi is None and len(y):
            zi = self._zi0[:, :, None] * y[0][None, None, :]                    # start at rest on y[0]
        if len(y):
            y, zi = signal.sosfilt(self.sos, y, axis=0, zi=zi)
        new = PreprocessState(hold=hold, history=history, n_in=state.n_in + len(x), n_out=n_out, zi=zi)
        return y.astype(np.float32), mask, new

    def process_many(self, xs: list[np.ndarray], states: list[PreprocessState]
                     ) -> list[tuple[np.ndarray, np.ndarray, PreprocessState]]:
        """:meth:`process` for the chunks of several sessions whose preprocessors share
        :attr:`batch_key`, with the same results, in a few vectorised calls instead of a few per
        session (at 0.25-s chunks numpy's per-call overhead is most of the cost).

        The chunks are stacked along time for the units, the mask, sample-and-hold and the
        resampler (every output row gathers its own taps), and along channels for ``sosfilt``
        (each column is filtered on its own) among the sessions with equally many new model
        samples.
        """
        if len(xs) == 1:
            return [self.process(xs[0], states[0])]
        c = self.n_channels
        xs = [np.asarray(x, dtype=np.float64).reshape(-1, c) for x in xs]
        t = np.array([len(x) for x in xs])
        x = np.concatenate(xs) * UNIT_SCALE[self.units]                                # (sum t, c) µV
        bad = ~np.isfinite(x) | (np.abs(x) > self.config.abs_limit_uv)
        ends = np.cumsum(t)
        starts = ends - t
        if bad.any():
            parts = [_sample_and_hold(x[a:b], bad[a:b], st.hold) for a, b, st in zip(starts, ends, states)]
            filled, holds = (np.concatenate([p[0] for p in parts]) if parts else x), [p[1] for p in parts]
        else:
            filled, holds = x, [x[b - 1].copy() if b > a else st.hold for a, b, st in zip(starts, ends, states)]
        if self.identity:
            ys = [filled[a:b] for a, b in zip(starts, ends)]
            masks = [bad[a:b] for a, b in zip(starts, ends)]
            hist = [st.history for st in states]
            n_outs = [st.n_out + n for st, n in zip(states, t)]
        else:
            ys, masks, hist, n_outs = self._resample_many(filled, bad, starts, ends, states)
        out_zi: list[np.ndarray | None] = [st.zi for st in states]
        ys32: list[np.ndarray] = [y.astype(np.float32) for y in ys]  # replaced below where filtered
        groups: dict[int, list[int]] = {}
        for i, y in enumerate(ys):
            if len(y):
                groups.setdefault(len(y), []).append(i)
        for idx in groups.values():
            zis = []
            for i in idx:
                zi = states[i].zi
                zis.append(self._zi0[:, :, None] * ys[i][0][None, None, :] if zi is None else zi)
            y, zi = signal.sosfilt(self.sos, np.concatenate([ys[i] for i in idx], axis=1), axis=0,
                                   zi=np.concatenate(zis, axis=2))
            y = y.astype(np.float32)
            for k, i in enumerate(idx):
                ys32[i], out_zi[i] = y[:, k * c:(k + 1) * c], zi[:, :, k * c:(k + 1) * c]
        return [(y, m, PreprocessState(hold=h, history=hs, n_in=st.n_in + n, n_out=no, zi=z))
                for y, m, h, hs, st, n, no, z in zip(ys32, masks, holds, hist, states, t.tolist(), n_outs, out_zi)]

    def _resample_many(self, filled, bad, starts, ends, states):
        """:meth:`_resample` of several sessions' chunks (rows ``starts[i]:ends[i]``) at once."""
        c, w = self.n_channels, 2 * self.half_width
        pieces, offsets, off = [], [], 0
        for a, b, st in zip(starts, ends, states):
            pieces += [st.history, np.concatenate([filled[a:b], bad[a:b]], axis=1)]
            offsets.append(off)
            off += w + b - a
        buf = np.concatenate(pieces)                                     # (sum (w + t_i), 2c)
        n_in = np.array([st.n_in for st in states], dtype=np.int64)
        n_out = np.array([st.n_out for st in states], dtype=np.int64)
        ready = np.array([self.model_samples_ready(int(a) + int(b) - int(s))
                          for a, s, b in zip(n_in, starts, ends)], dtype=np.int64)
        m = ready - n_out                                                # new model samples per session
        first = np.cumsum(m) - m
        j = np.arange(int(m.sum()), dtype=np.int64) + np.repeat(n_out - first, m)
        base, phase = np.divmod(j * self.down, self.up)
        kernel = self._bank[phase] if self._bank is not None else self._kernel(phase)  # (n, 2K)
        row0 = np.repeat(np.array(offsets, dtype=np.int64) - n_in + w, m) + base
        rows = buf[row0[:, None] + self._taps[None, :]]                  # (n, 2K, 2c)
        y = np.einsum("nk,nkc->nc", kernel, rows[:, :, :c])
        weight = np.abs(kernel)
        share = np.einsum("nk,nkc->nc", weight, rows[:, :, c:]) / weight.sum(1, keepdims=True)
        mask = share >= MASK_SHARE
        ys, masks, hist = [], [], []
        for o, a, b, f, k in zip(offsets, starts, ends, first.tolist(), m.tolist()):
            end = o + w + b - a
            ys.append(y[f:f + k])
            masks.append(mask[f:f + k])
            hist.append(buf[end - w:end].copy())
        return ys, masks, hist, ready.tolist()

    def _kernel(self, phase: np.ndarray) -> np.ndarray:
        return _sinc_kernel(phase, self.up, self.half_width, self.fc)

    def _resample(self, filled, bad, state):
        """Windowed-sinc polyphase resampling of the filled signal and of its per-channel mask."""
        c, w = self.n_channels, 2 * self.half_width
        # buf row r holds input sample n_in - w + r: values in columns :c, mask in columns c:
        buf = np.concatenate([state.history, np.concatenate([filled, bad], axis=1)])  # (w + t, 2c)
        j = np.arange(state.n_out, self.model_samples_ready(state.n_in + len(filled)))
        base, phase = np.divmod(j * self.down, self.up)                  # floor(p_j), remainder
        kernel = self._bank[phase] if self._bank is not None else self._kernel(phase)  # (n, 2K)
        rows = buf[(base - state.n_in + w)[:, None] + self._taps[None, :]]  # (n, 2K, 2c)
        y = np.einsum("nk,nkc->nc", kernel, rows[:, :, :c])
        weight = np.abs(kernel)
        share = np.einsum("nk,nkc->nc", weight, rows[:, :, c:]) / weight.sum(1, keepdims=True)
        return y, share >= MASK_SHARE, buf[len(buf) - w:], state.n_out + len(j)


def _sinc_kernel(phase: np.ndarray, up: int, half_width: int, fc: float) -> np.ndarray:
    """Kaiser-windowed sinc taps for output phases ``phase / up``, (n, 2K), rows summing to 1.

    Tap i weighs input ``floor(p) + i - K + 1`` of an output at input position ``p``; ``fc`` is the
    cutoff in cycles per input sample.
    """
    taps = np.arange(-half_width + 1, half_width + 1)
    tau = (np.asarray(phase) / up)[:, None] - taps[None, :]              # p - k, in (-K, K)
    kernel = 2 * fc * np.sinc(2 * fc * tau) * \
        np.i0(KAISER_BETA * np.sqrt(1.0 - (tau / half_width) ** 2)) / np.i0(KAISER_BETA)
    return kernel / kernel.sum(1, keepdims=True)                         # unit DC gain


@functools.lru_cache(maxsize=32)
def _design_filters(cfg: ModelConfig) -> np.ndarray:
    """Band-pass and notch sections at the model's rate, designed once per config (a design costs
    milliseconds, and sessions are opened on the event loop). Read-only; each preprocessor keeps a
    copy, since ``sosfilt`` refuses read-only sections."""
    fs = cfg.sample_rate
    lo, hi = cfg.bandpass_hz
    sections = [signal.butter(cfg.bandpass_order, [lo, min(hi, 0.45 * fs)], btype="bandpass",
                              fs=fs, output="sos")]
    for f0 in cfg.notch_hz:
        if f0 < 0.45 * fs:
            sections.append(signal.tf2sos(*signal.iirnotch(f0, cfg.notch_q, fs=fs)))
    sos = np.concatenate(sections)
    sos.flags.writeable = False
    return sos


@functools.lru_cache(maxsize=32)
def _rest_state(cfg: ModelConfig) -> np.ndarray:
    """``sosfilt_zi`` of :func:`_design_filters`: the state at rest on a unit input."""
    zi = signal.sosfilt_zi(_design_filters(cfg))
    zi.flags.writeable = False
    return zi


@functools.lru_cache(maxsize=32)
def _polyphase_bank(up: int, half_width: int, fc: float) -> np.ndarray:
    """All ``up`` phases of :func:`_sinc_kernel`, shared by the sessions of one rate pair."""
    bank = _sinc_kernel(np.arange(up), up, half_width, fc)
    bank.flags.writeable = False
    return bank


def _sample_and_hold(x: np.ndarray, bad: np.ndarray, hold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace invalid samples by the channel's last valid value (``hold`` before the chunk)."""
    if not bad.any():
        return x, (x[-1].copy() if len(x) else hold)
    t = np.arange(len(x))[:, None]
    last_ok = np.maximum.accumulate(np.where(bad, -1, t), axis=0)           # (t, c) index or -1
    cols = np.arange(x.shape[1])[None, :]
    filled = np.where(last_ok >= 0, x[np.maximum(last_ok, 0), cols], hold[None, :])
    return filled, filled[-1].copy() if len(x) else hold
