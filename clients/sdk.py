"""Async client SDK for protocol v1 (DESIGN §2): stream samples, receive typed messages, survive drops.

::

    async with Client("ws://127.0.0.1:8000/v1/stream", session_id="bed-12-20261129T0800",
                      modality="ecg", sample_rate=360.0, channels=["MLII", "V1"], units="uV") as c:
        await c.send(x)                      # (t, c) numpy, any chunking
        async for m in c.messages():         # Prediction, Alert, Ack ... until the session ends
            ...
        await c.end()                        # the server has processed, stored and closed

Delivery guarantees:

- Every sample given to :meth:`Client.send` stays in a bounded buffer until the server acknowledges
  it (``ack.next_sample``). When the connection drops (network cut, server restart, ``shutting_down``
  or ``overloaded``), the client reconnects with exponential backoff and jitter, says hello again and
  resends from the server's ``resume_from``: the server receives each sample exactly once (it drops
  any overlap itself). :meth:`send` waits while the buffer is full, which throttles a fast producer
  to the server's pace.
- Messages are delivered in order and without duplicates: predictions by ``sample`` (a resumed server
  recomputes the ones after its last ack), alert transitions by ``(alert_id, seq)``. Outputs the
  server produced while no connection was attached (it keeps processing what it received) are read
  back from REST (DESIGN §4) after a reconnect, so the stream of predictions has no holes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson

from service import constants as C
from service.protocol import HEADER  # first_sample, n_samples, n_channels, dtype, flags (DESIGN §2)

log = logging.getLogger(__name__)
MAX_FRAME_SAMPLE_VALUES = (C.MAX_FRAME_BYTES - HEADER.size) // 4
BACKFILL_RETRY_S = 30.0  # a failed REST backfill is retried (with the reconnect backoff) this long
# Errors after which reconnecting cannot help: the hello or the data is wrong, or someone else owns
# the session now. (shutting_down, overloaded: reconnect; session_ended: final if we sent end.)
FATAL = {C.BAD_HELLO, C.UNSUPPORTED_PROTOCOL, C.UNAUTHORIZED, C.CHANNEL_MISMATCH, C.BAD_DTYPE, C.MALFORMED,
         C.FRAME_TOO_LARGE, C.GAP_TOO_LARGE, C.TAKEN_OVER, C.SESSION_ENDED}


# ------------------------------------------------------------------ messages


@dataclass(frozen=True)
class Ready:
    """The server accepted the hello."""

    session_id: str
    resume_from: int
    model: dict
    labels: list[str]
    output_rate: float
    delay_samples: int


@dataclass(frozen=True)
class Prediction:
    """One output step: ``sample`` is the last input sample (client rate) the step covers."""

    sample: int
    probs: dict[str, float]
    numerics: dict[str, float] = field(default_factory=dict)
    backfilled: bool = False  # read from REST after a reconnect rather than received live


@dataclass(frozen=True)
class Alert:
    """One alert transition (DESIGN §3); ``data`` is the whole alert object."""

    data: dict

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def key(self) -> tuple[str, int]:
        return self.data["alert_id"], int(self.data["seq"])


@dataclass(frozen=True)
class Ack:
    """All samples below ``next_sample`` are processed, stored and snapshotted."""

    next_sample: int


@dataclass(frozen=True)
class Reconnected:
    """The connection dropped and was re-established; ``resume_from`` as the server said."""

    attempt: int
    resume_from: int
    reason: str


Message = Union[Prediction, Alert, Ack, Reconnected]


class VigilError(Exception):
    """The server refused the session or the stream (``code`` as in DESIGN §2)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass
class Stats:
    """Counters of one client, for progress displays and tests."""

    samples_given: int = 0     # samples passed to send()
    samples_sent: int = 0      # samples written to sockets, resends included
    samples_resent: int = 0    # of which resent after a reconnect
    frames_sent: int = 0
    connects: int = 0          # successful hellos (1 + reconnects)
    acked: int = 0             # the last ack's next_sample
    predictions: int = 0
    backfilled: int = 0        # predictions read back from REST
    alerts: int = 0


# ------------------------------------------------------------------ client


class Client:
    """One session's connection to Vigil; see the module docstring.

    Parameters
    ----------
    url : str
        ``ws://HOST:PORT/v1/stream``; ``?session=<session_id>`` is added for load balancers.
    session_id, modality, sample_rate, channels, units, patient_id, start_time, predictions, scale
        The hello's fields (DESIGN §2). ``sample_rate`` in Hz, ``channels`` names in column order.
    token : str, optional
        Bearer token (``VIGIL_API_TOKENS`` on the server).
    buffer_seconds : float
        Capacity of the unacknowledged-sample buffer in seconds of signal; must exceed the
        server's ack interval (5 s). :meth:`send` waits while it is full.
    frame_seconds : float
        Longest binary frame sent, in seconds of signal (frames are also capped at 8 MiB).
    reconnect_timeout : float
        Give up (raise :class:`ConnectionError`) after this many seconds without a connection.
    backoff : (float, float)
        First and longest wait between connection attempts, in seconds (doubling, with jitter).
    rest_url : str, optional
        Base URL of the REST API for backfill; default derived from ``url``. ``backfill=False``
        turns backfill off.
    on_message : callable, optional
        Called with each message instead of queueing it for :meth:`messages` (without it, read
        :meth:`messages`, or the queue grows).
    connect_kwargs : dict, optional
        Extra arguments for ``websockets.connect`` (e.g. ``ssl``).
    """

    def __init__(self, url: str, *, session_id: str, modality: str, sample_rate: float, channels: list[str],
                 units: str = "uV", token: str | None = None, patient_id: str | None = None,
                 start_time: str | None = None, predictions: bool = True, scale: float | None = None,
                 buffer_seconds: float = 60.0, frame_seconds: float = 1.0, reconnect_timeout: float = 120.0,
                 backoff: tuple[float, float] = (0.1, 5.0), rest_url: str | None = None, backfill: bool = True,
                 on_message: Callable[[Message], Any] | None = None, connect_kwargs: dict | None = None):
        if not sample_rate or sample_rate <= 0:
            raise ValueError(f"Invalid sample_rate: expected > 0 Hz, got {sample_rate}")
        if buffer_seconds <= 5.0:
            raise ValueError(f"Invalid buffer_seconds: expected more than the 5-s ack interval, got {buffer_seconds}")
        self.url = _with_session(url, session_id)
        self.rest_url = rest_url or _rest_base(url)
        self.hello = {"type": "hello", "protocol": C.PROTOCOL_VERSION, "session_id": session_id,
                      "modality": modality, "sample_rate": float(sample_rate), "channels": list(channels),
                      "units": units, "predictions": predictions}
        for k, v in (("patient_id", patient_id), ("start_time", start_time), ("scale", scale)):
            if v is not None:
                self.hello[k] = v
        self.session_id, self.sample_rate, self.n_channels = session_id, float(sample_rate), len(channels)
        self.token, self.backfill = token, backfill and predictions
        self.capacity = max(1, int(buffer_seconds * sample_rate))
        self.frame_samples = max(1, min(int(frame_seconds * sample_rate), MAX_FRAME_SAMPLE_VALUES // len(channels)))
        self.reconnect_timeout, self.backoff = reconnect_timeout, backoff
        self.on_message = on_message
        self.connect_kwargs = connect_kwargs or {}
        self.ready: Ready | None = None
        self.stats = Stats()
        # buffer of unacknowledged samples: chunks (first, x (t, c) <f4, flags), contiguous, ascending
        self._buf: deque[tuple[int, np.ndarray, int]] = deque()
        self._buf_first = 0   # first buffered sample (= last ack, or later)
        self._next = 0        # next sample index to give
        self._written = 0     # end of the samples written to some socket so far (resends are below it)
        self._space = asyncio.Condition()
        self._send_lock = asyncio.Lock()
        self._ws: Any = None
        self._connected = asyncio.Event()
        self._queue: asyncio.Queue[Message | BaseException | None] = asyncio.Queue()
        self._supervisor: asyncio.Task | None = None
        self._finished = asyncio.Event()
        self._error: BaseException | None = None
        self._ending = False
        self._last_sample = -1                  # last prediction sample delivered
        self._seq: dict[str, int] = {}          # alert_id -> last seq delivered
        self._backfill_due = False

    # ------------------------------------------------------------------ public API

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and not self._finished.is_set():
                await self.end()
        finally:
            await self.close()

    async def connect(self) -> Ready:
        """Connect and say hello (retrying with backoff); returns the first ``ready``."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"vigil-client-{self.session_id}")
        waiter = asyncio.create_task(self._connected.wait())
        await asyncio.wait({waiter, self._supervisor}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        self._raise()
        assert self.ready is not None
        return self.ready

    async def send(self, x: np.ndarray, *, leads_off: bool = False) -> None:
        """Queue ``x`` (t, c) in the hello's units and send it; waits while the buffer is full.

        ``leads_off`` flags these samples as reported leads/sensor off by the device.
        """
        x = np.asarray(x, dtype="<f4")
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"Invalid samples: expected shape (t, {self.n_channels}), got {x.shape}")
        if self._ending:
            raise RuntimeError("Invalid send: the session was ended")
        if self._supervisor is None:
            await self.connect()
        for i in range(0, len(x), self.frame_samples):
            part = np.ascontiguousarray(x[i:i + self.frame_samples])
            self._raise()
            async with self._space:
                await self._space.wait_for(lambda: self._buffered() + len(part) <= self.capacity
                                           or self._error is not None)
            self._raise()
            async with self._send_lock:
                first = self._next
                flags = C.FLAG_LEADS_OFF if leads_off else 0
                self._buf.append((first, part, flags))
                self._next += len(part)
                self.stats.samples_given += len(part)
                if self._connected.is_set():
                    await self._write(first, part, flags)

    async def end(self, timeout: float = 120.0) -> None:
        """End the session: the server processes every sample, publishes, stores, and closes (1000)."""
        if self._supervisor is None:
            await self.connect()
        self._ending = True
        async with self._send_lock:
            if self._connected.is_set():
                with contextlib.suppress(Exception):
                    await self._ws.send('{"type":"end"}')
        done = asyncio.create_task(self._finished.wait())
        await asyncio.wait({done, self._supervisor}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        self._raise()
        if not self._finished.is_set():
            raise TimeoutError(f"Session {self.session_id} did not end within {timeout:g} s")

    async def close(self) -> None:
        """Drop the connection without ending the session (it can be resumed later)."""
        if self._supervisor is not None and not self._supervisor.done():
            self._supervisor.cancel()
            with contextlib.suppress(BaseException):
                await self._supervisor
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._queue.put_nowait(None)

    async def messages(self) -> AsyncIterator[Message]:
        """Messages in order until the session ends (raises the error that ended it, if any)."""
        while True:
            m = await self._queue.get()
            if m is None:
                self._queue.put_nowait(None)
                return
            if isinstance(m, BaseException):
                raise m
            yield m

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def next_sample(self) -> int:
        """Index the next sample given to :meth:`send` will get."""
        return self._next

    def transport(self):
        """The current connection's TCP transport (tests cut it to simulate a network failure)."""
        return None if self._ws is None else self._ws.transport

    # ------------------------------------------------------------------ internals

    def _buffered(self) -> int:
        return self._next - self._buf_first

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _deliver(self, m: Message) -> None:
        if self.on_message is not None:
            self.on_message(m)
        else:
            self._queue.put_nowait(m)

    async def _write(self, first: int, x: np.ndarray, flags: int) -> None:
        """Write one frame; a dead socket is left to the supervisor (the samples stay buffered).
        Samples written before (to an earlier connection) count as resent."""
        try:
            await self._ws.send(HEADER.pack(first, len(x), self.n_channels, C.DTYPE_FLOAT32, flags) + x.tobytes())
        except Exception:
            self._connected.clear()
            return
        self.stats.frames_sent += 1
        self.stats.samples_sent += len(x)
        end = first + len(x)
        self.stats.samples_resent += max(0, min(end, self._written) - first)
        self._written = max(self._written, end)

    def _drop_acked(self, n: int) -> None:
        while self._buf and self._buf[0][0] + len(self._buf[0][1]) <= n:
            self._buf.popleft()
        if self._buf and self._buf[0][0] < n:
            first, x, flags = self._buf[0]
            self._buf[0] = (n, x[n - first:], flags)
        self._buf_first = max(self._buf_first, min(n, self._next))

    async def _supervise(self) -> None:
        """Connect, resend, read until the connection ends; reconnect with backoff unless finished."""
        attempt, down_since, reason = 0, time.monotonic(), ""
        try:
            while not self._finished.is_set():
                try:
                    ws, ready, early = await self._open()
                except VigilError as e:
                    if e.code == C.SESSION_ENDED and self._ending:  # our end went through before the cut
                        await self._backfill(final=True)
                        self._finished.set()
                        break
                    if e.code not in FATAL:
                        reason = str(e)
                    else:
                        raise
                except (OSError, asyncio.TimeoutError, ConnectionError) as e:
                    reason = f"{type(e).__name__}: {e}"
                except Exception as e:  # websockets' handshake errors (InvalidStatus, InvalidMessage, ...)
                    if type(e).__module__.startswith("websockets"):
                        reason = f"{type(e).__name__}: {e}"
                    else:
                        raise
                else:
                    if self.stats.connects:
                        self._backfill_due = self.backfill
                        self._deliver(Reconnected(attempt, ready.resume_from, reason))
                    self.stats.connects += 1
                    attempt, reason = 0, ""
                    reason = await self._session(ws, ready, early)
                    if self._finished.is_set():
                        break
                    down_since = time.monotonic()
                if time.monotonic() - down_since > self.reconnect_timeout:
                    raise ConnectionError(f"Session {self.session_id}: no connection for {self.reconnect_timeout:g} s "
                                          f"({reason})")
                delay = min(self.backoff[1], self.backoff[0] * 2 ** attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                log.info("session %s: reconnecting in %.2f s (%s)", self.session_id, delay, reason)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._error = e
            self._queue.put_nowait(e)
            async with self._space:
                self._space.notify_all()
            return
        finally:
            self._connected.clear()
        self._queue.put_nowait(None)

    async def _open(self):
        import websockets

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        # compression off: float samples barely compress, and deflate costs both ends CPU per frame
        kwargs = {"max_size": 2**26, "open_timeout": 10, "compression": None, **self.connect_kwargs}
        ws = await asyncio.wait_for(websockets.connect(self.url, additional_headers=headers, **kwargs), 15)
        # On a takeover the server may send the session's outputs just before the ready: keep them.
        early: list[dict] = []
        try:
            await ws.send(orjson.dumps(self.hello).decode())
            deadline = time.monotonic() + 30
            while True:
                m = orjson.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
                if m.get("type") not in ("prediction", "alert", "ack"):
                    break
                early.append(m)
        except BaseException:
            await _abort(ws)
            raise
        if m.get("type") == "error":
            await _abort(ws)
            raise VigilError(m.get("code", "error"), m.get("message", ""))
        if m.get("type") != "ready":
            await _abort(ws)
            raise VigilError(C.MALFORMED, f"expected ready, got {m.get('type')!r}")
        ready = Ready(m["session_id"], int(m["resume_from"]), m.get("model", {}), list(m.get("labels", [])),
                      float(m.get("output_rate", 0)), int(m.get("delay_samples", 0)))
        return ws, ready, early

    async def _session(self, ws, ready: Ready, early: list[dict]) -> str:
        """Resend from ``resume_from``, then read until the socket closes; returns why it closed."""
        async with self._send_lock:
            self._ws, self.ready = ws, ready
            r = ready.resume_from
            if r < self._buf_first:
                raise VigilError("resume_lost", f"Server resumes from sample {r} but samples before "
                                 f"{self._buf_first} were already dropped after an ack")
            # Samples in [ack, resume_from) reached this server but are not safe until acked: keep them.
            self._connected.set()
            for first, x, flags in list(self._buf):
                if first + len(x) <= r:
                    continue
                if not self._connected.is_set():
                    break
                await self._write(max(first, r), x[max(0, r - first):], flags)
            if self._ending and self._connected.is_set():
                with contextlib.suppress(Exception):
                    await ws.send('{"type":"end"}')
        return await self._read(ws, early)

    async def _handle(self, m: dict) -> dict | None:
        """One server message; returns it when it is an error."""
        t = m.get("type")
        if t == "prediction":
            await self._on_prediction(Prediction(int(m["sample"]), m["probs"], m.get("numerics") or {}))
        elif t == "alert":
            self._on_alert(m["alert"])
        elif t == "ack":
            n = int(m["next_sample"])
            self.stats.acked = max(self.stats.acked, n)
            self._drop_acked(n)
            async with self._space:
                self._space.notify_all()
            self._deliver(Ack(n))
        elif t == "error":
            return m
        return None

    async def _read(self, ws, early: list[dict]) -> str:
        import websockets

        error: dict | None = None
        try:
            for m in early:
                error = await self._handle(m) or error
            async for raw in ws:
                error = await self._handle(orjson.loads(raw)) or error
        except websockets.ConnectionClosed:
            pass
        finally:
            self._connected.clear()
        code = ws.close_code
        await _abort(ws)
        if code == C.CLOSE_NORMAL and self._ending:
            if self._backfill_due:
                await self._backfill(final=True)
            self._finished.set()
            return "ended"
        if error is not None and error.get("code") in FATAL:
            raise VigilError(error["code"], error.get("message", ""))
        return f"closed {code}" + (f" ({error.get('code')})" if error else "")

    async def _on_prediction(self, p: Prediction) -> None:
        if self._backfill_due and p.sample > self._last_sample + 1:
            await self._backfill(until=p.sample)
        self._backfill_due = False
        if p.sample > self._last_sample:
            self._last_sample = p.sample
            self.stats.predictions += 1
            self._deliver(p)

    def _on_alert(self, a: dict) -> None:
        alert_id, seq = a["alert_id"], int(a["seq"])
        if seq > self._seq.get(alert_id, 0):  # a transition we have not delivered (nor a later one)
            self._seq[alert_id] = seq
            self.stats.alerts += 1
            self._deliver(Alert(a))

    async def _backfill(self, until: int | None = None, final: bool = False) -> None:
        """Read back from REST what the server produced while we were away (DESIGN §4). A failed read
        (the REST connection cut, the server restarting) is retried with the reconnect backoff for up
        to ``BACKFILL_RETRY_S``, resuming after the last prediction read: giving up at once would lose
        the gap for good, since the next live prediction moves past it."""
        self._backfill_due = False
        if not self.backfill:
            return
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        deadline, delay = time.monotonic() + BACKFILL_RETRY_S, self.backoff[0]
        while True:
            try:
                await self._backfill_once(httpx, headers, until)
                return
            except httpx.HTTPError as e:
                if time.monotonic() + delay > deadline:
                    log.warning("session %s: backfill from %s failed: %s", self.session_id, self.rest_url, e)
                    return
                log.info("session %s: backfill from %s failed (%s): retrying in %.2g s", self.session_id,
                         self.rest_url, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    async def _backfill_once(self, httpx, headers: dict, until: int | None) -> None:
        async with httpx.AsyncClient(base_url=self.rest_url, headers=headers, timeout=10) as http:
            params: dict[str, Any] = {"from_sample": self._last_sample + 1, "limit": 10_000}
            if until is not None:
                params["to_sample"] = until
            while True:
                r = await http.get(f"/v1/sessions/{self.session_id}/predictions", params=params)
                r.raise_for_status()
                page = r.json()
                for row in page["predictions"]:
                    if row["sample"] > self._last_sample:
                        self._last_sample = row["sample"]
                        self.stats.predictions += 1
                        self.stats.backfilled += 1
                        self._deliver(Prediction(int(row["sample"]), row["probs"], row.get("numerics") or {},
                                                 backfilled=True))
                if page.get("next_cursor") is None:
                    break
                params["cursor"] = page["next_cursor"]
            r = await http.get(f"/v1/sessions/{self.session_id}/alerts")
            r.raise_for_status()
            for a in sorted(r.json()["alerts"], key=lambda a: (a["raised_sample"], a["alert_id"])):
                self._on_alert(a)


async def _abort(ws) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 2)


def _with_session(url: str, session_id: str) -> str:
    """The stream URL with ``?session=<session_id>`` (load balancers hash on it)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("session", session_id)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _rest_base(url: str) -> str:
    """``ws://h:p/v1/stream`` -> ``http://h:p`` (``wss`` -> ``https``)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path[: -len("/v1/stream")] if parts.path.endswith("/v1/stream") else ""
    return urlunsplit((scheme, parts.netloc, path, "", ""))
