"""The per-session record: pipeline state, counters, alarms, pending input; snapshot and restore.

:meth:`Session.build` is the one place that creates a session's state, fresh or from a snapshot.
Methods touching the pool slot or the pipeline state (``snapshot``) run on the engine's worker
thread; the pending-input methods run on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import numpy as np
import orjson

from models.preprocess import UNIT_SCALE, PreprocessState, Preprocessor
from models.sqi import quality_head_for, restored_head
from models.state import StatePool, arrays_to_bytes, state_from_arrays, state_to_arrays
from service import constants as C
from service.alerts import FLAT_S, AlertContext, Alarms, iso
from service.protocol import Frame, Hello, invalid, parse_hello, parse_time
from service.quality import Quality, QualityState
from service.registry import ServedModel


class Status(StrEnum):
    STREAMING = "streaming"
    DETACHED = "detached"
    ENDED = "ended"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Session:
    """One recording being streamed (see module docstring for which thread touches what)."""

    def __init__(self, hello: Hello, model: ServedModel, pool: StatePool, slot: int, strip_s: float,
                 quality_heads: bool = True):
        cfg = model.config
        self.hello, self.model, self.pool, self.slot = hello, model, pool, slot
        self.index = model.channel_index(hello.channels)
        self.channels = tuple(hello.channels[i] for i in self.index)
        self.pre = Preprocessor(cfg, hello.sample_rate, len(self.index), hello.units)
        self.quality = Quality(len(self.index), math.ceil(FLAT_S * hello.sample_rate),
                               cfg.abs_limit_uv / UNIT_SCALE[hello.units])
        ctx = AlertContext(hello.session_id, hello.patient_id, hello.modality, hello.sample_rate,
                           self.channels, {"name": model.name, "version": model.version})
        self.alarms = Alarms(ctx, cfg.labels, cfg.output_rate,
                             detectors=model.detectors if quality_heads else model.fitted_detectors,
                             saturation=self.quality.limit)
        self.pre_state: PreprocessState = self.pre.init_state()
        self.quality_state: QualityState = self.quality.init_state()
        self.sqi = quality_head_for(cfg, len(self.index)) if quality_heads else None  # models/sqi.py
        self.sqi_state = self.sqi.initial_state() if self.sqi is not None else None
        self.n_steps = 0
        self.acked = 0
        self.started_at = utcnow()
        self.start_time: datetime | None = hello.start_time
        # loop side
        self.status = Status.STREAMING
        self.connection: Any = None
        self.n_received = 0                      # next expected sample
        self.pending: deque[tuple[int, np.ndarray | None, int, bool]] = deque()  # first, x|None (gap), n, leads_off
        self.pending_n = 0                       # samples, gaps included
        self.pending_bytes = 0                   # bytes of received samples (gaps cost nothing)
        self.ending = False
        self.snapshot_due = False
        self.last_frame_at = 0.0
        self.detached_at = 0.0
        self.drained = asyncio.Event()
        self.done = asyncio.Event()
        # raw signal as streamed, for alert strips: ring of the last strip_s seconds (<= 4 Mi values)
        c = len(hello.channels)
        self.ring = np.full((max(1, min(int(strip_s * hello.sample_rate), (1 << 22) // c)), c), np.nan, np.float32)
        self.ring_n = 0

    @classmethod
    def build(cls, hello: Hello, model: ServedModel, pool: StatePool, slot: int, strip_s: float,
              snapshot: dict[str, np.ndarray] | None = None, quality_heads: bool = True) -> "Session":
        """A fresh session, or one continued from :meth:`snapshot` arrays (slot loaded by the caller)."""
        s = cls(hello, model, pool, slot, strip_s, quality_heads)
        if snapshot is not None:
            meta = orjson.loads(snapshot["meta"].tobytes())
            s.pre_state = PreprocessState.from_arrays(_part(snapshot, "pre."))
            s.quality_state = QualityState.from_arrays(_part(snapshot, "q."))
            s.sqi, s.sqi_state = restored_head(s.sqi, _part(snapshot, "sqi."))
            s.n_steps, s.acked = meta["n_steps"], meta["next_sample"]
            s.n_received = s.acked
            s.started_at = parse_time(meta["started_at"])
            s.start_time = parse_time(meta["start_time"]) if meta["start_time"] else None
            s.alarms.state = meta["alarms"]
            s.ring_n = s.acked
        s.alarms.start_time = s.start_time
        return s

    @staticmethod
    def snapshot_hello(snapshot: dict[str, np.ndarray]) -> Hello:
        return parse_hello(orjson.loads(snapshot["meta"].tobytes())["hello"])

    @staticmethod
    def net_state(snapshot: dict[str, np.ndarray]):
        return state_from_arrays(_part(snapshot, "net."))

    @property
    def id(self) -> str:
        return self.hello.session_id

    @property
    def consumed(self) -> int:
        """Samples processed so far."""
        return self.pre_state.n_in

    # ------------------------------------------------------------------ loop side: input

    def accept(self, frame: Frame) -> int:
        """Queue a frame's new samples (overlap dropped, gap masked); returns how many were queued."""
        x, first = frame.x, frame.first_sample
        end = first + len(x)
        if end <= self.n_received:
            return 0
        if first < self.n_received:
            x, first = x[self.n_received - first:], self.n_received
        gap = first - self.n_received
        if gap > C.MAX_GAP_S * self.hello.sample_rate:
            raise invalid("first_sample", f"a gap of at most {C.MAX_GAP_S:g} s after sample {self.n_received}",
                          first, C.GAP_TOO_LARGE)
        if self.start_time is None:
            self.start_time = utcnow()
            self.alarms.start_time = self.start_time
        if gap:
            self.pending.append((self.n_received, None, gap, False))
        self.pending.append((first, x, len(x), frame.leads_off))
        self.pending_n += gap + len(x)
        self.pending_bytes += x.nbytes
        self.n_received = end
        self.last_frame_at = time.perf_counter()
        return gap + len(x)

    def take(self, max_n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Pop up to ``max_n`` pending samples: (t, c) float32 with NaN in gaps, leads-off rows or None."""
        parts, flags, n = [], [], 0
        c = len(self.hello.channels)
        while self.pending and n < max_n:
            first, x, k, off = self.pending.popleft()
            if k > max_n - n:
                rest = k - (max_n - n)
                self.pending.appendleft((first + k - rest, None if x is None else x[k - rest:], rest, off))
                x, k = (None if x is None else x[:k - rest]), k - rest
            parts.append(np.full((k, c), np.nan, np.float32) if x is None else x)
            self.pending_bytes -= 0 if x is None else x.nbytes
            flags.append((k, off))
            n += k
        self.pending_n -= n
        x = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros((0, c), np.float32))
        leads_off = np.repeat([f for _, f in flags], [k for k, _ in flags]) if any(f for _, f in flags) else None
        return x, leads_off

    # ------------------------------------------------------------------ worker side

    def record(self, x: np.ndarray) -> None:
        """Keep raw samples (as streamed) in the strip ring."""
        n, k = len(self.ring), len(x)
        tail = x[-n:]
        start = (self.ring_n + k - len(tail)) % n
        head = min(len(tail), n - start)                   # up to the ring's end, the rest wraps to 0
        self.ring[start:start + head] = tail[:head]
        self.ring[:len(tail) - head] = tail[head:]
        self.ring_n += k

    def strip(self, start: int, end: int) -> tuple[int, np.ndarray]:
        """Raw samples [start, end) still in the ring (clamped): (first_sample, (t, c) float32)."""
        start, end = max(start, self.ring_n - len(self.ring), 0), min(end, self.ring_n)
        if end <= start:
            return start, np.zeros((0, self.ring.shape[1]), np.float32)
        return start, self.ring[np.arange(start, end) % len(self.ring)]

    def snapshot(self) -> bytes:
        """Everything needed to continue exactly from :attr:`consumed` (pool slot included)."""
        meta = {"hello": self.hello.to_dict(), "next_sample": self.consumed, "n_steps": self.n_steps,
                "started_at": iso(self.started_at), "start_time": iso(self.start_time),
                "alarms": self.alarms.state}
        arrays = {"meta": np.frombuffer(orjson.dumps(meta, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)}
        arrays |= {f"pre.{k}": v for k, v in self.pre_state.to_arrays().items()}
        arrays |= {f"q.{k}": v for k, v in self.quality_state.to_arrays().items()}
        if self.sqi is not None:
            arrays |= {f"sqi.{k}": v for k, v in self.sqi_state.items()}
        arrays |= {f"net.{k}": v for k, v in state_to_arrays(self.pool.get(self.slot)).items()}
        return arrays_to_bytes(arrays)

    # ------------------------------------------------------------------ views

    def row(self) -> dict[str, Any]:
        """The session as REST and the store see it."""
        return {"session_id": self.id, "patient_id": self.hello.patient_id, "modality": self.hello.modality,
                "sample_rate": self.hello.sample_rate, "channels": list(self.hello.channels),
                "units": self.hello.units, "started_at": iso(self.started_at), "ended_at": None,
                "status": str(self.status), "samples_received": self.n_received}


def _part(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
