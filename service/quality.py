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
        idx = first + np.arange(t, dtype=np.int64)[:, None]                       # (t, 1)
        missing = ~np.isfinite(x)                                                 # (t, c)
        saturated = ~missing & (np.abs(x) > self.limit)
        bad = missing | saturated
        if leads_off is not None:
            bad = bad | leads_off[:, None]
        prev = np.vstack([state.last[None], x[:-1]])
        same = (x == prev) & ~bad                                                 # (t, c)
        run_start = np.maximum.accumulate(np.vstack([state.run_start[None], np.where(same, -1, idx)]))[1:]
        prev_bad = np.vstack([(state.bad_start >= 0)[None], bad[:-1]])
        bad_start = np.maximum.accumulate(
            np.vstack([state.bad_start[None], np.where(bad & ~prev_bad, idx, -1)]))[1:]
        flat = same & (idx - run_start + 1 >= self.flat_n)
        since = np.where(bad, bad_start, np.where(flat, run_start, NONE)).max(axis=1)  # (t,)
        lost = since != NONE
        new = QualityState(x[-1].astype(np.float32), run_start[-1].copy(), np.where(bad[-1], bad_start[-1], -1))
        if not lost.any():
            return [], new
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
