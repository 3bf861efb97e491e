"""The engine: sessions of this replica, one batched model call per pool per tick, delivery.

A tick gathers every session with pending samples (bounded so that acks come at least every
``ack_interval`` seconds of signal), runs preprocessing, ONE ``StatePool.step`` per pool and the
alarm rules on a single worker thread (so the event loop keeps reading sockets). Each pool's
predictions are handed to the event loop as soon as they exist, before any alarm rule runs; the
alerts follow once the rules have run; then the tick publishes alerts, writes history, saves
snapshots and only then sends acks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import orjson

from models.sqi import fuse, network_quality
from models.state import StatePool, bytes_to_arrays
from models.stream import step_samples
from service import constants as C
from service import metrics as M
from service.bus import Bus
from service.config import Settings
from service.protocol import Frame, Hello, ProtocolError, ack_message, invalid
from service.registry import ServedModel
from service.routing import Owners
from service.sessions import Session, Status, iso, utcnow
from service.store import Store

log = logging.getLogger(__name__)


@dataclass
class Work:
    """One session's share of a tick."""

    session: Session
    x: np.ndarray                 # (t, c) raw samples in the hello's units, NaN in gaps
    leads_off: np.ndarray | None  # (t,) bool
    first: int
    snapshot: bool
    flush: bool
    model_x: np.ndarray | None = None  # (t, c') x in the model's channel order (set by _compute)


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
    sent_rows: bool = False       # its predictions went out early (_send_early)
    samples: np.ndarray | None = None  # (n,) the last input sample of each output step
    starts: np.ndarray | None = None   # (n,) the first


class Engine:
    """Owns this replica's sessions and state pools; see the module docstring."""

    def __init__(self, settings: Settings, models: dict[str, ServedModel], bus: Bus, store: Store,
                 owners: Owners | None = None):
        self.settings, self.models, self.bus, self.store = settings, models, bus, store
        self.owners = owners  # owner keys of the sessions held here (service/routing.py); None: no routing
        self._owners_at = time.monotonic()
        self.sessions: dict[str, Session] = {}
        self.pools: dict[tuple[str, int], StatePool] = {}
        self.accepting = True
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vigil-engine")
        self._wake = asyncio.Event()
        self._open_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start(); None: no early sends
        self._waker: asyncio.Task | None = None
        self._nm_seen: dict[str, float] = {}  # streaming sessions that never sent a frame: first seen

    async def _call(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="vigil-engine")
        self._waker = asyncio.create_task(self._wake_every(1.0), name="vigil-engine-waker")

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
        if self._waker is not None:
            self._waker.cancel()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.owners is not None:  # snapshotted: whichever replica the clients reconnect to resumes them
            await self.owners.release(list(self.sessions))
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
            if self.owners is not None:
                await self.owners.claim(s.id)
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
        s = Session.build(hello, model, pool, slot, self.settings.strip_seconds, snapshot,
                          quality_heads=self.settings.quality_heads)
        s.connection = connection
        self.sessions[s.id] = s
        return s

    async def accept(self, s: Session, frame: Frame, fmt: str) -> None:
        """Queue a frame; wait (not reading the socket) while the session is too far behind."""
        n = s.accept(frame)
        _child(M.FRAMES, fmt).inc()
        if n:
            _child(M.SAMPLES, s.hello.modality).inc(len(frame.x))
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
        ``acknowledged_by``; a latched alert whose condition has ended clears), sent to the session's
        monitor when it is connected here, published, stored and audited; None if unknown. An
        acknowledged or suppressed alert comes back unchanged."""
        at = iso(utcnow())
        s = self.sessions.get(alert_id.rsplit(":", 2)[0])
        alert = await self._call(_acknowledge, s.alarms, alert_id, at, by) if s is not None else None
        if alert is None:  # not held by a session here (cleared, or its session is elsewhere): from history
            latest = await self.store.alert(alert_id)
            if latest is None or latest["acknowledged"] or latest["evidence"].get("suppressed"):
                return latest
            alert = {**latest, "acknowledged": True, "seq": latest["seq"] + 1,
                     "acknowledged_at": at, "acknowledged_by": by}
            if alert["state"] == C.ACTIVE and alert["end_sample"] is not None:  # latched, condition over
                alert["state"] = C.CLEARED
        await self._emit(s, [alert], audit=[(alert["session_id"], alert_id, C.AUDIT_ACK, by, at,
                                            {"seq": alert["seq"], "state": alert["state"]})])
        return alert

    async def _emit(self, s: Session | None, alerts: list[dict], audit: list[tuple] = ()) -> None:
        """Deliver alert transitions made outside a tick (acknowledgement, not_monitoring): to the
        monitor when connected here, to Redis unless suppressed, and to the store."""
        if s is not None and s.connection is not None:  # the monitor gets every transition (DESIGN §2)
            msgs = _alert_messages(s, alerts)
            if msgs:
                s.connection.send_many(msgs)
        _count_published(alerts)
        await self.bus.publish_alerts(alerts)
        await self.store.write(alerts=alerts)
        if audit:
            await self.store.audit(list(audit))

    async def _not_monitoring(self) -> None:
        """Raise not_monitoring for streaming sessions without data for longer than their timeout
        (wall clock; a session that is behind is not waiting for data); data clears it (``_alarms``)."""
        now = time.perf_counter()
        seen = self._nm_seen
        for s in list(self.sessions.values()):
            if s.status is not Status.STREAMING or s.ending or s.pending_n or s.connection is None:
                seen.pop(s.id, None)
                continue
            last = s.last_frame_at or seen.setdefault(s.id, now)
            timeout = s.alarms.settings.not_monitoring_timeout_s
            if now - last <= timeout or s.alarms.has_condition(C.NOT_MONITORING):
                continue
            detail = {"timeout_s": timeout, "silent_s": round(now - last, 3)}
            alerts = await self._call(s.alarms.not_monitoring, True, s.n_received, s.consumed - 1, detail)
            if alerts:
                stamp = {"raised_at": iso(utcnow()), "acknowledged_at": None, "acknowledged_by": None}
                for a in alerts:
                    _stamp(s.alarms, a, **stamp)
                await self._emit(s, alerts)

    async def _wake_every(self, seconds: float) -> None:
        """Wake the engine loop now and then, so that its periodic checks (eviction, not_monitoring)
        run while no data arrives."""
        while self.accepting:
            await asyncio.sleep(seconds)
            self._wake.set()

    # ------------------------------------------------------------------ ticks

    async def _run(self) -> None:
        """Tick whenever there is work, spaced by the adaptive interval (see :meth:`_spacing`)."""
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
            busy = time.perf_counter() - t0
            await asyncio.sleep(max(0.0, self._spacing(busy) - busy))

    def _spacing(self, busy: float) -> float:
        """Seconds from one tick's start to the next: ``busy / tick_duty`` within
        [tick_interval, tick_max_interval]. Light load: short ticks, low latency. Heavy load: a
        tick's fixed cost (a model call per pool) is shared by more sessions, and the event loop
        keeps at least ``1 - tick_duty`` of the time to read frames. Under steady load it settles
        where ``spacing = (fixed + per-frame cost * frames per spacing) / tick_duty``."""
        st = self.settings
        return min(st.tick_max_interval, max(st.tick_interval, busy / st.tick_duty))

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
        """Take each session's pending samples: at most ``tick_max_s`` of signal (a tick's work stays
        bounded while a session catches up) and never past its next ack point."""
        works, ack_s = [], self.settings.ack_interval
        for s in self.sessions.values():
            if not (s.pending_n or s.snapshot_due or s.ending) and s.pre_state.n_in < s.acked + ack_s * s.hello.sample_rate - 1:
                continue  # nothing received and short of the ack point (< its floor): no work, found cheaply
            if s.status is Status.ENDED:
                continue
            ack_at = s.acked + max(1, math.floor(ack_s * s.hello.sample_rate))  # the next snapshot and ack
            budget = min(ack_at - s.consumed, max(1, math.floor(self.settings.tick_max_s * s.hello.sample_rate)))
            first = s.consumed
            x, leads_off = s.take(min(s.pending_n, budget))
            flush = s.ending and s.pending_n == 0
            snapshot = s.consumed + len(x) >= ack_at or (s.snapshot_due and s.pending_n == 0) or flush
            if len(x) == 0 and not snapshot:
                continue
            if s.pending_bytes <= self.settings.max_pending_bytes:
                s.drained.set()
            if s.pending_n == 0:
                s.snapshot_due = False
            works.append(Work(s, x, leads_off, first, snapshot, flush))
        return works

    def _compute(self, works: list[Work]) -> list[Outcome]:
        """Worker thread: preprocess, one step per pool and the predictions of every pool first
        (sent as soon as each pool's exist), then the alarms and snapshots, whose cost no
        prediction waits for."""
        ready: dict[int, list[tuple[Work, np.ndarray, np.ndarray]]] = {}
        stretches = {}
        kinds: dict[tuple, list[tuple[Work, np.ndarray]]] = {}  # sessions whose preprocessors compute alike
        for w in works:
            s = w.session
            x = w.model_x = w.x if len(s.index) == w.x.shape[1] else w.x[:, s.index]
            s.record(w.x)
            stretches[s.id], s.quality_state = s.quality.update(x, w.first, w.leads_off, s.quality_state)
            kinds.setdefault(s.pre.batch_key, []).append((w, x))
        for items in kinds.values():
            pre = items[0][0].session.pre
            outs = pre.process_many([x for _, x in items], [w.session.pre_state for w, _ in items])
            for (w, _), (y, mask, state) in zip(items, outs):
                s = w.session
                s.pre_state = state
                if w.flush and s.consumed > 0:
                    y, mask = _pad(s, y, mask)
                ready.setdefault(id(s.pool), []).append((w, y, mask))
        outcomes, later = [], []
        for items in ready.values():
            pool = items[0][0].session.pool
            t0 = time.perf_counter()
            outs = pool.step([w.session.slot for w, _, _ in items], [y for _, y, _ in items], [m for _, _, m in items])
            M.INFERENCE.observe(time.perf_counter() - t0)
            M.BATCH_SIZE.observe(len(items))
            group = []
            for (w, y, mask), out in zip(items, outs):
                suppress_q = _quality(w.session, y, mask, out)
                o = self._predictions(w, out)
                group.append(o)
                later.append((o, w, out, stretches[w.session.id], suppress_q))
            outcomes += group
            self._send_early(group)
        for o, w, out, stretch, suppress_q in later:
            self._alarms(o, w, out, stretch, suppress_q)
        self._send_early(outcomes)
        return outcomes

    def _send_early(self, outcomes: list[Outcome]) -> None:
        """Worker thread: hand the messages these outcomes hold so far to the event loop, which
        sends them in order, before this tick's acks (:meth:`_deliver` sends those once history
        and snapshots are written; the loop runs these callbacks first, FIFO). Without a loop
        (:meth:`start` not called) :meth:`_deliver` sends everything."""
        if self._loop is None:
            return
        batch = []
        for o in outcomes:
            first_rows = bool(o.rows) and not o.sent_rows
            if o.messages or first_rows:
                batch.append((o.session, o.messages, first_rows))
                o.sent_rows = o.sent_rows or first_rows
                o.messages = []   # a new list: the loop owns the one it was given
        if batch:
            self._loop.call_soon_threadsafe(_send_batch, batch)

    def _predictions(self, w: Work, out) -> Outcome:
        """The prediction rows and messages of one session's output steps (nothing else waits for
        them: they go out before the alarms run)."""
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
        o.samples, o.starts = samples, starts
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
        return o

    def _alarms(self, o: Outcome, w: Work, out, stretches, suppress_q: np.ndarray | None = None) -> None:
        """The alarm rules over one session's chunk (its alerts and strips), then its snapshot
        when the chunk reaches an ack point."""
        s = w.session
        real_end = w.first + len(w.x)
        # alarms: hello settings, not_monitoring cleared by data, then every source of this chunk
        s.alarms.use_hello(s.hello)
        x = w.model_x
        o.alerts = s.alarms.not_monitoring(False, w.first, real_end - 1) if len(w.x) else []
        o.alerts += s.alarms.process(w.first, real_end, stretches, o.starts, o.samples, out.probs, out.attribution,
                                     x, flush=w.flush, suppress_q=suppress_q)
        o.finished = w.flush
        o.messages += _alert_messages(s, o.alerts)
        o.strips = _strip_rows(s, s.alarms.strip_parts(real_end, final=w.flush))
        if w.snapshot:
            o.ack = real_end
            if not w.flush:
                o.snapshot = s.snapshot()

    async def _deliver(self, outcomes: list[Outcome]) -> None:
        _send_batch([(o.session, o.messages, bool(o.rows) and not o.sent_rows) for o in outcomes])
        alerts = [a for o in outcomes for a in o.alerts]
        _count_published(alerts)
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
                    o.session.connection.send_many([ack_message(o.ack)])
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
        if self.owners is not None:
            await self.owners.release([s.id])

    async def _evict(self) -> None:
        """Free the slots of sessions detached for longer than the detach timeout (snapshot kept);
        raise not_monitoring for streaming sessions without data."""
        await self._not_monitoring()
        now = time.monotonic()
        if self.owners is not None and now - self._owners_at > C.OWNER_TTL_S / 3:
            self._owners_at = now
            for sid in await self.owners.refresh(list(self.sessions)):
                s = self.sessions.get(sid)  # resumed on another replica meanwhile: let this stale copy go
                if s is not None and s.status is Status.DETACHED and not s.pending_n and not s.snapshot_due:
                    log.info("session %s was resumed by another replica: released here", sid)
                    await self._release(s)
        for s in list(self.sessions.values()):
            if (s.status is Status.DETACHED and not s.pending_n and not s.snapshot_due
                    and now - s.detached_at > self.settings.detach_timeout):
                await self._release(s)


def _state_alert(alarms, alert_id: str) -> dict | None:
    """The alarm engine's own copy of an alert (later transitions are copies of it), or None."""
    return alarms.held_alert(alert_id)


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


def _count_published(alerts: list[dict]) -> None:
    """``vigil_alerts_total``: published transitions (suppressed ones stay in history only)."""
    for a in alerts:
        if not a["evidence"].get("suppressed"):
            M.ALERTS.labels(a["kind"], a["priority"]).inc()


def _alert_messages(s: Session, alerts: list[dict]) -> list[bytes]:
    """Stamp the wall clock of each published raise (``raised_at``, kept by later transitions:
    time to acknowledgement) and make the monitor's alert messages; suppressed transitions are
    kept in history only (DESIGN §3)."""
    now, stamped, out = None, {}, []
    for a in alerts:
        if a["evidence"].get("suppressed"):
            continue
        if a["alert_id"] in stamped:        # raised and changed again in one tick
            a.update(stamped[a["alert_id"]])
        elif a.get("raised_at") is None:
            now = now or iso(utcnow())
            stamped[a["alert_id"]] = {"raised_at": now, "acknowledged_at": None, "acknowledged_by": None}
            _stamp(s.alarms, a, **stamped[a["alert_id"]])
        out.append(orjson.dumps({"type": "alert", "alert": a}))
    return out


def _strip_rows(s: Session, parts: list[tuple[str, int, int, int]]) -> list[tuple]:
    """Store rows of alert strip parts, raw samples as streamed from the session's ring:
    (alert_id, session_id, window_start, first_sample, sample_rate, channels, units, n_channels,
    n_samples, float32 bytes)."""
    rows = []
    channels = orjson.dumps(list(s.hello.channels)).decode()
    for aid, start, a, b in parts:
        first, data = s.strip(a, b)
        rows.append((aid, s.id, start, first, s.hello.sample_rate, channels, s.hello.units, data.shape[1],
                     len(data), data.astype("<f4").tobytes()))
    return rows


def _send_batch(batch: list[tuple[Session, list[bytes], bool]]) -> None:
    """Event loop: send each session's messages handed over by :meth:`Engine._send_early`
    (``with_predictions``: this tick's predictions, sent now or not asked for; their latency is
    observed)."""
    now = time.perf_counter()
    for session, messages, with_predictions in batch:
        if session.connection is not None and messages:
            session.connection.send_many(messages)
        if with_predictions:
            M.FRAME_TO_PREDICTION.observe(now - session.last_frame_at)


@functools.lru_cache(maxsize=None)
def _child(metric, label: str):
    """``metric.labels(label)``, looked up once: per frame, ``labels()`` was a tenth of the event
    loop's own Python time at 200 sessions."""
    return metric.labels(label)


def _quality(s: Session, y: np.ndarray, mask: np.ndarray, out) -> np.ndarray | None:
    """Fuse the session's quality head (models/sqi.py) into ``out.probs``; returns the network's
    own quality column (what suppresses alarms), or None without a head. A head that fails is
    turned off for the session (logged); the network's output then stands."""
    if s.sqi is None:
        return None
    network_q = network_quality(out.probs, s.model.config)
    try:
        q, s.sqi_state = s.sqi.process(y, mask, s.sqi_state)
        out.probs = fuse(out.probs, q, s.model.config)
    except Exception:
        log.exception("session %s: quality head failed; it is off for this session", s.id)
        s.sqi = s.sqi_state = None
    return network_q


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
