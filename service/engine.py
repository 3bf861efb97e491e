"""The engine: sessions of this replica, one batched model call per pool per tick, delivery.

A tick gathers every session with pending samples (bounded so that acks come at least every
``ack_interval`` seconds of signal), runs preprocessing, ONE ``StatePool.step`` per pool and the
alarm rules on a single worker thread (so the event loop keeps reading sockets), then sends the
predictions at once, publishes alerts, writes history, saves snapshots and only then sends acks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import orjson

from models.state import StatePool, bytes_to_arrays
from models.stream import step_samples
from service import constants as C
from service import metrics as M
from service.bus import Bus
from service.config import Settings
from service.protocol import Frame, Hello, ProtocolError, invalid
from service.registry import ServedModel
from service.sessions import Session, Status, iso, utcnow
from service.store import Store

log = logging.getLogger(__name__)
STRIP_PRE_S = 10.0  # seconds of raw signal before an alert's onset kept in its strip


@dataclass
class Work:
    """One session's share of a tick."""

    session: Session
    x: np.ndarray                 # (t, c) raw samples in the hello's units, NaN in gaps
    leads_off: np.ndarray | None  # (t,) bool
    first: int
    snapshot: bool
    flush: bool


@dataclass
class Outcome:
    """What a tick produced for one session."""

    session: Session
    messages: list[bytes] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    strips: list[tuple] = field(default_factory=list)
    snapshot: bytes | None = None
    ack: int = 0
    finished: bool = False


class Engine:
    """Owns this replica's sessions and state pools; see the module docstring."""

    def __init__(self, settings: Settings, models: dict[str, ServedModel], bus: Bus, store: Store):
        self.settings, self.models, self.bus, self.store = settings, models, bus, store
        self.sessions: dict[str, Session] = {}
        self.pools: dict[tuple[str, int], StatePool] = {}
        self.accepting = True
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vigil-engine")
        self._wake = asyncio.Event()
        self._open_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    async def _call(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vigil-engine")

    async def stop(self) -> None:
        """Stop taking sessions, process what was received, snapshot everything, close clients."""
        self.accepting = False
        for s in list(self.sessions.values()):
            if s.connection is not None:
                s.connection.fail(C.SHUTTING_DOWN, "Server is shutting down: reconnect to resume")
                self.detach(s, s.connection)
            s.drained.set()
        deadline = time.monotonic() + 10.0
        while any(s.pending_n or s.snapshot_due for s in self.sessions.values()) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def _count(self) -> None:
        counts = {s: 0 for s in Status}
        for s in self.sessions.values():
            counts[s.status] += 1
        for status, n in counts.items():
            M.SESSIONS.labels(str(status)).set(n)

    # ------------------------------------------------------------------ sessions

    async def open(self, hello: Hello, connection: Any) -> Session:
        """Attach a connection: take over or resume a known session, or start a new one."""
        async with self._open_lock:
            if not self.accepting:
                raise ProtocolError(C.SHUTTING_DOWN, "Server is shutting down: reconnect to another replica")
            s = self.sessions.get(hello.session_id)
            if s is not None:
                _check_same(s.hello, hello)
                if s.ending:
                    raise invalid("session_id", "a session that has not ended", hello.session_id, C.SESSION_ENDED)
                old, s.connection, s.status = s.connection, connection, Status.STREAMING
                s.hello = hello
                if old is not None:
                    old.fail(C.TAKEN_OVER, f"Session {hello.session_id} was taken over by a new connection")
            else:
                s = await self._load(hello, connection)
            await self.store.put_session(s.row())
            self._count()
            return s

    async def _load(self, hello: Hello, connection: Any) -> Session:
        row = await self.store.session(hello.session_id)
        if row is not None and row["status"] == Status.ENDED:
            raise invalid("session_id", "a session that has not ended", hello.session_id, C.SESSION_ENDED)
        if len(self.sessions) >= self.settings.max_sessions:
            raise ProtocolError(C.OVERLOADED, f"Server is at its limit of {self.settings.max_sessions} sessions")
        data = await self.bus.load_snapshot(hello.session_id)
        snapshot = bytes_to_arrays(data) if data else None
        if snapshot is not None:
            _check_same(Session.snapshot_hello(snapshot), hello)
        model = self.models[hello.modality]
        key = (hello.modality, len(model.channel_index(hello.channels)))
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = StatePool(model.network, key[1], 16)
        slot = await self._call(pool.alloc)
        if snapshot is not None:
            await self._call(pool.set, slot, Session.net_state(snapshot))
        s = Session.build(hello, model, pool, slot, self.settings.strip_seconds, snapshot)
        s.connection = connection
        self.sessions[s.id] = s
        return s

    async def accept(self, s: Session, frame: Frame, fmt: str) -> None:
        """Queue a frame; wait (not reading the socket) while the session is too far behind."""
        n = s.accept(frame)
        M.FRAMES.labels(fmt).inc()
        if n:
            M.SAMPLES.labels(s.hello.modality).inc(len(frame.x))
            self._wake.set()
        while s.pending_bytes > self.settings.max_pending_bytes and s.connection is not None and self.accepting:
            s.drained.clear()
            await s.drained.wait()

    def end(self, s: Session) -> None:
        s.ending = True
        self._wake.set()

    def detach(self, s: Session, connection: Any) -> None:
        """The connection went away: keep processing, snapshot, and wait for a resume."""
        if s.connection is not connection:
            return
        s.connection = None
        if not s.ending:
            s.status, s.detached_at, s.snapshot_due = Status.DETACHED, time.monotonic(), True
        self._count()
        self._wake.set()

    async def acknowledge(self, alert_id: str, by: str | None = None) -> dict | None:
        """Acknowledge an alert: a new transition (with ``acknowledged_at``, wall clock, and
        ``acknowledged_by``), sent to the session's monitor when it is connected here, published
        and stored; None if unknown."""
        at = iso(utcnow())
        s = self.sessions.get(alert_id.rsplit(":", 2)[0])
        alert = await self._call(_acknowledge, s.alarms, alert_id, at, by) if s is not None else None
        if alert is None:  # not held by a session here (cleared, or its session is elsewhere): from history
            latest = await self.store.alert(alert_id)
            if latest is None or latest["acknowledged"]:
                return latest
            alert = {**latest, "acknowledged": True, "seq": latest["seq"] + 1,
                     "acknowledged_at": at, "acknowledged_by": by}
        if s is not None and s.connection is not None:  # the monitor gets every transition (DESIGN §2)
            s.connection.send_many([orjson.dumps({"type": "alert", "alert": alert})])
        M.ALERTS.labels(alert["kind"], alert["priority"]).inc()
        await self.bus.publish_alerts([alert])
        await self.store.write(alerts=[alert])
        return alert

    # ------------------------------------------------------------------ ticks

    async def _run(self) -> None:
        last_evict = time.monotonic()
        while True:
            await self._wake.wait()
            self._wake.clear()
            t0 = time.perf_counter()
            try:
                await self._tick()
                if time.monotonic() - last_evict > 1.0:
                    last_evict = time.monotonic()
                    await self._evict()
            except Exception:  # a bug must not stop the engine for every session
                log.exception("engine tick failed")
            M.PENDING.set(sum(s.pending_n for s in self.sessions.values()))
            if any(s.pending_n or s.snapshot_due or s.ending for s in self.sessions.values()):
                self._wake.set()
            await asyncio.sleep(max(0.0, self.settings.tick_interval - (time.perf_counter() - t0)))

    async def _tick(self) -> None:
        works = self._gather()
        if not works:
            return
        t0 = time.perf_counter()
        try:
            await self._deliver(await self._call(self._compute, works))
        except Exception:
            # Their state may be half-advanced: drop it, so a reconnect resumes from the last snapshot.
            for w in works:
                if w.session.connection is not None:
                    w.session.connection.fail(C.OVERLOADED, "Internal error while processing: reconnect to resume")
                if self.sessions.get(w.session.id) is w.session:
                    await self._release(w.session)
            raise
        finally:
            M.TICK.observe(time.perf_counter() - t0)

    def _gather(self) -> list[Work]:
        works = []
        for s in self.sessions.values():
            if s.status is Status.ENDED:
                continue
            ack_n = max(1, math.floor(self.settings.ack_interval * s.hello.sample_rate))
            budget = s.acked + ack_n - s.consumed
            first = s.consumed
            x, leads_off = s.take(min(s.pending_n, budget))
            flush = s.ending and s.pending_n == 0
            snapshot = s.consumed + len(x) >= s.acked + ack_n or (s.snapshot_due and s.pending_n == 0) or flush
            if len(x) == 0 and not snapshot:
                continue
            if s.pending_bytes <= self.settings.max_pending_bytes:
                s.drained.set()
            if s.pending_n == 0:
                s.snapshot_due = False
            works.append(Work(s, x, leads_off, first, snapshot, flush))
        return works

    def _compute(self, works: list[Work]) -> list[Outcome]:
        """Worker thread: preprocess, one step per pool, alarms, snapshots."""
        ready: dict[int, list[tuple[Work, np.ndarray, np.ndarray]]] = {}
        stretches = {}
        for w in works:
            s = w.session
            x = w.x if len(s.index) == w.x.shape[1] else w.x[:, s.index]
            s.record(w.x)
            stretches[s.id], s.quality_state = s.quality.update(x, w.first, w.leads_off, s.quality_state)
            y, mask, s.pre_state = s.pre.process(x, s.pre_state)
            if w.flush and s.consumed > 0:
                y, mask = _pad(s, y, mask)
            ready.setdefault(id(s.pool), []).append((w, y, mask))
        outcomes = []
        for items in ready.values():
            pool = items[0][0].session.pool
            t0 = time.perf_counter()
            outs = pool.step([w.session.slot for w, _, _ in items], [y for _, y, _ in items], [m for _, _, m in items])
            M.INFERENCE.observe(time.perf_counter() - t0)
            M.BATCH_SIZE.observe(len(items))
            for (w, _, _), out in zip(items, outs):
                outcomes.append(self._outcome(w, out, stretches[w.session.id]))
        return outcomes

    def _outcome(self, w: Work, out, stretches) -> Outcome:
        s = w.session
        o = Outcome(s)
        n, real_end = len(out.probs), w.first + len(w.x)
        k = np.arange(s.n_steps, s.n_steps + n)
        s.n_steps += n
        samples = step_samples(s.pre, s.model.config.patch_len, k)
        starts = np.maximum(step_samples(s.pre, s.model.config.patch_len, k - 1) + 1, 0)
        starts[k == 0] = 0
        if w.flush:
            samples, starts = np.minimum(samples, real_end - 1), np.minimum(starts, real_end - 1)
        labels = s.model.config.labels
        numerics = s.model.config.numerics
        for smp, p, v in zip(samples.tolist(), out.probs.tolist(), out.numerics.tolist()):
            probs = orjson.dumps(dict(zip(labels, p)))
            nums = orjson.dumps(dict(zip(numerics, v))) if numerics else None
            o.rows.append((s.id, smp, probs.decode(), nums.decode() if nums else None))
            if s.hello.predictions:
                o.messages.append(b'{"type":"prediction","sample":%d,"probs":%s%s}'
                                  % (smp, probs, b',"numerics":' + nums if nums else b""))
        M.PREDICTIONS.labels(s.hello.modality).inc(n)
        o.alerts = s.alarms.on_loss(stretches, real_end) + s.alarms.on_steps(starts, samples, out.probs, out.attribution)
        if w.flush:
            o.alerts += s.alarms.finish(real_end)
            o.finished = True
        fs = s.hello.sample_rate
        now, raised = iso(utcnow()), set()
        for a in o.alerts:
            if a["seq"] == 1:  # wall clock of the raise (kept by the later transitions): time to acknowledgement
                _stamp(s.alarms, a, raised_at=now, acknowledged_at=None, acknowledged_by=None)
                raised.add(a["alert_id"])
            elif a["alert_id"] in raised:  # raised and cleared in one tick
                a.update(raised_at=now, acknowledged_at=None, acknowledged_by=None)
            o.messages.append(orjson.dumps({"type": "alert", "alert": a}))
            if a["seq"] == 1:
                first, data = s.strip(a["onset_sample"] - int(STRIP_PRE_S * fs), real_end)
                o.strips.append((a["alert_id"], s.id, first, fs, orjson.dumps(list(s.hello.channels)).decode(),
                                 s.hello.units, data.shape[1], data.astype("<f4").tobytes()))
        if w.snapshot:
            o.ack = real_end
            if not w.flush:
                o.snapshot = s.snapshot()
        return o

    async def _deliver(self, outcomes: list[Outcome]) -> None:
        now = time.perf_counter()
        for o in outcomes:
            if o.session.connection is not None and o.messages:
                o.session.connection.send_many(o.messages)
            if o.rows:
                M.FRAME_TO_PREDICTION.observe(now - o.session.last_frame_at)
        alerts = [a for o in outcomes for a in o.alerts]
        for a in alerts:
            M.ALERTS.labels(a["kind"], a["priority"]).inc()
        ended = iso(utcnow())
        updates = [(o.session.id, str(Status.ENDED if o.finished else o.session.status), o.session.n_received,
                    ended if o.finished else None) for o in outcomes if o.snapshot is not None or o.finished]
        await asyncio.gather(
            self.bus.publish_alerts(alerts),
            self.store.write(predictions=[r for o in outcomes for r in o.rows], alerts=alerts,
                             strips=[r for o in outcomes for r in o.strips], sessions=updates))
        snapshots = {o.session.id: o.snapshot for o in outcomes if o.snapshot is not None}
        if snapshots:
            t0 = time.perf_counter()
            await self.bus.save_snapshots(snapshots, self.settings.resume_ttl)
            M.SNAPSHOT.observe(time.perf_counter() - t0)
        for o in outcomes:
            if o.snapshot is not None or o.finished:
                o.session.acked = o.ack
                if o.session.connection is not None:
                    o.session.connection.send_many([b'{"type":"ack","next_sample":%d}' % o.ack])
            if o.finished:
                await self._finish(o.session)

    async def _finish(self, s: Session) -> None:
        s.status = Status.ENDED
        await self.bus.delete_snapshot(s.id)
        if s.connection is not None:
            s.connection.close(C.CLOSE_NORMAL)
        await self._release(s)
        s.done.set()

    async def _release(self, s: Session) -> None:
        self.sessions.pop(s.id, None)
        await self._call(s.pool.free, s.slot)
        self._count()

    async def _evict(self) -> None:
        """Free the slots of sessions detached for longer than the detach timeout (snapshot kept)."""
        now = time.monotonic()
        for s in list(self.sessions.values()):
            if (s.status is Status.DETACHED and not s.pending_n and not s.snapshot_due
                    and now - s.detached_at > self.settings.detach_timeout):
                await self._release(s)


def _state_alert(alarms, alert_id: str) -> dict | None:
    """The alarm engine's own copy of an alert (later transitions are copies of it), or None."""
    conds = list(alarms.state["kinds"].values()) + ([alarms.state["loss"]] if alarms.state["loss"] else [])
    return next((c["alert"] for c in conds if c["alert"] is not None and c["alert"]["alert_id"] == alert_id), None)


def _stamp(alarms, alert: dict, **fields: Any) -> None:
    """Add wall-clock fields to a transition and to the alarm state, so later transitions keep them."""
    alert.update(fields)
    held = _state_alert(alarms, alert["alert_id"])
    if held is not None:
        held.update(fields)


def _acknowledge(alarms, alert_id: str, at: str, by: str | None) -> dict | None:
    """Worker thread: the alarm engine's ack transition, stamped with when and by whom."""
    alert = alarms.acknowledge(alert_id)
    if alert is not None:
        _stamp(alarms, alert, acknowledged_at=at, acknowledged_by=by)
    return alert


def _pad(s: Session, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """End of stream: flush the resampler with masked input and complete the last token."""
    c, P = y.shape[1], s.model.config.patch_len
    parts_y, parts_m = [y], [mask]
    if s.pre.delay_samples:
        y2, m2, s.pre_state = s.pre.process(np.full((s.pre.delay_samples, c), np.nan), s.pre_state)
        parts_y.append(y2)
        parts_m.append(m2)
    r = s.pre_state.n_out % P
    if r:
        parts_y.append(np.zeros((P - r, c), np.float32))
        parts_m.append(np.ones((P - r, c), bool))
    return np.concatenate(parts_y), np.concatenate(parts_m)


def _check_same(known: Hello, hello: Hello) -> None:
    """A resumed or taken-over session must keep its signal layout."""
    a = (known.modality, known.sample_rate, known.channels, known.units, known.scale)
    b = (hello.modality, hello.sample_rate, hello.channels, hello.units, hello.scale)
    if a != b:
        raise invalid("hello", f"the layout of session {hello.session_id} (modality, sample_rate, channels, "
                      f"units, scale = {a})", b)
