"""Signal quality on the raw input: which samples carry no usable signal, chunk-exactly.

A channel sample is lost when it is NaN/Inf (a gap in the stream arrives as NaN), saturated, in a
leads-off frame, or part of a run of identical values at least ``flat_n`` samples long (a flat
line; the service uses 4 s). A sample is lost when every model channel is. Lost stretches are
reported with the sample where their condition began (a flat line began at the start of its
run), so that a signal_loss onset does not depend on chunking, and with what made them lost
(:data:`CAUSES`, a bit mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = np.iinfo(np.int64).max  # "not lost"
MISSING, SATURATED, LEADS_OFF, FLAT = 1, 2, 4, 8
CAUSES = {MISSING: "missing", SATURATED: "saturation", LEADS_OFF: "leads_off", FLAT: "flat_line"}


def cause_names(mask: int) -> list[str]:
    """The names of the causes in a bit mask, in :data:`CAUSES` order."""
    return [name for bit, name in CAUSES.items() if mask & bit]


@dataclass
class QualityState:
    """Per channel: last value, start of its identical run, start of its bad run (-1: not bad)."""

    last: np.ndarray       # (c,) float32
    run_start: np.ndarray  # (c,) int64
    bad_start: np.ndarray  # (c,) int64

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"last": self.last, "run_start": self.run_start, "bad_start": self.bad_start}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "QualityState":
        return cls(a["last"].copy(), a["run_start"].copy(), a["bad_start"].copy())


@dataclass(frozen=True)
class Quality:
    """Lost-sample detector for one session (``limit``: |x| in the session's units that saturates)."""

    n_channels: int
    flat_n: int
    limit: float

    def init_state(self) -> QualityState:
        c = self.n_channels
        return QualityState(np.full(c, np.nan, np.float32), np.zeros(c, np.int64), np.full(c, -1, np.int64))

    def update(self, x: np.ndarray, first: int, leads_off: np.ndarray | None,
               state: QualityState) -> tuple[list[tuple[int, int, int, int]], QualityState]:
        """Lost stretches ``(start, end, onset, causes)`` (absolute, half-open; causes a bit mask of
        :data:`CAUSES`) of chunk ``x`` (t, c)."""
        t = len(x)
        if t == 0:
            return [], state
        missing = ~np.isfinite(x)                                                 # (t, c)
        over = np.abs(x) > self.limit
        bad = missing | over                                                      # missing or saturated
        if leads_off is not None:
            bad = bad | leads_off[:, None]
        same = _continues(x, state.last)                                          # (t, c)
        if np.count_nonzero(bad):                                                 # (cheaper than .any())
            same &= ~bad
        elif not self._may_be_flat(first, t, state):   # fast path: no sample can be lost in this chunk
            starts = np.where(same, -1, np.arange(first, first + t, dtype=np.int64)[:, None]).max(axis=0)
            return [], QualityState(x[-1].astype(np.float32), np.maximum(state.run_start, starts),
                                    np.full(x.shape[1], -1, np.int64))
        idx = first + np.arange(t, dtype=np.int64)[:, None]                       # (t, 1)
        run_start = _carried_max(np.where(same, -1, idx), state.run_start)
        prev_bad = np.empty_like(bad)                                             # (t, c) the sample before was bad
        prev_bad[0], prev_bad[1:] = state.bad_start >= 0, bad[:-1]
        bad_start = _carried_max(np.where(bad & ~prev_bad, idx, -1), state.bad_start)
        flat = same & (idx - run_start + 1 >= self.flat_n)
        since = np.where(bad, bad_start, np.where(flat, run_start, NONE)).max(axis=1)  # (t,)
        lost = since != NONE
        new = QualityState(x[-1].astype(np.float32), run_start[-1].copy(), np.where(bad[-1], bad_start[-1], -1))
        if not lost.any():
            return [], new
        saturated = ~missing & over
        cause = (np.where(missing, MISSING, 0) | np.where(saturated, SATURATED, 0)
                 | np.where(flat, FLAT, 0)).astype(np.int64)                      # (t, c)
        cause = np.bitwise_or.reduce(cause, axis=1)
        if leads_off is not None:
            cause |= np.where(leads_off, LEADS_OFF, 0)
        edges = np.flatnonzero(np.diff(np.concatenate([[False], lost, [False]]).astype(np.int8)))
        starts, ends = edges[::2], edges[1::2]
        causes = [int(np.bitwise_or.reduce(cause[a:b])) for a, b in zip(starts, ends)]
        return [(first + int(a), first + int(b), int(since[a]), c)
                for a, b, c in zip(starts, ends, causes)], new

    def _may_be_flat(self, first: int, t: int, state: QualityState) -> bool:
        """Whether a run of ``flat_n`` identical values may end in the chunk ``[first, first + t)``:
        the longest it can reach is from the earliest carried run start to the chunk's last sample."""
        return first + t - int(state.run_start.min(initial=first)) >= self.flat_n


def _continues(x: np.ndarray, last: np.ndarray) -> np.ndarray:
    """``(t, c)`` bool: each sample of ``x`` equals the one before it (``last`` before the first)."""
    same = np.empty(x.shape, bool)
    np.equal(x[0], last, out=same[0])
    np.equal(x[1:], x[:-1], out=same[1:])
    return same


def _carried_max(v: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """Running maximum of ``v`` (t, c) down its rows, starting from ``carried`` (c,); ``v`` is reused."""
    np.maximum(v[0], carried, out=v[0])
    return np.maximum.accumulate(v, axis=0, out=v)
