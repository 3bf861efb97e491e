"""``/v1/stream``: the WebSocket protocol v1 (DESIGN §2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from service import constants as C
from service import metrics as M
from service.auth import authorized
from service.engine import Engine
from service.protocol import ProtocolError, ack_message, invalid, parse_binary, parse_hello, parse_samples
from service.sessions import Session

log = logging.getLogger(__name__)
router = APIRouter()
MAX_QUEUED = 100_000  # messages waiting for a client that does not read


class Connection:
    """One client socket with an ordered send queue drained by a writer task.

    Until :meth:`ready` the engine's messages for it are held back, so ``ready`` is always the
    first message a client gets (the engine may already deliver to a session it took over).
    """

    def __init__(self, ws: WebSocket):
        self.ws = ws
        self._queue: asyncio.Queue[bytes | int] = asyncio.Queue()
        self._held: list[bytes] | None = []
        self._failed = False
        self.closed = asyncio.Event()
        self._writer = asyncio.create_task(self._write())

    def send_many(self, messages: list[bytes]) -> None:
        if self._failed:
            return
        if self._held is not None:
            self._held.extend(messages)
            return
        if self._queue.qsize() + len(messages) > MAX_QUEUED:
            self.fail(C.OVERLOADED, "Client is not reading: too many messages queued")
            return
        for m in messages:
            self._queue.put_nowait(m)

    def send(self, message: dict) -> None:
        self.send_many([orjson.dumps(message)])

    def ready(self, message: dict) -> None:
        """Send ``ready``, then what the engine produced for this connection before it."""
        held, self._held = self._held or [], None
        self.send_many([orjson.dumps(message)] + held)

    def fail(self, code: str, message: str) -> None:
        """Send an error; close with the code's close code (``unknown_type`` keeps it open)."""
        if self._failed:
            return
        M.ERRORS.labels(code).inc()
        self._queue.put_nowait(orjson.dumps({"type": "error", "code": code, "message": message}))
        if C.CLOSE_CODES[code] is not None:
            self.close(C.CLOSE_CODES[code])

    def close(self, code: int) -> None:
        if not self._failed:
            self._failed = True
            self._queue.put_nowait(code)

    async def _write(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, int):
                    await self.ws.close(item)
                    break
                await self.ws.send_text(item.decode())
        except Exception:  # the client went away: nothing more to send
            self._failed = True
        finally:
            self.closed.set()

    async def finish(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        self._writer.cancel()


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Stream one session's samples; receive predictions, alerts and acks."""
    await ws.accept()
    app = ws.app
    engine: Engine = app.state.engine
    settings = app.state.settings
    conn = Connection(ws)
    session: Session | None = None
    try:
        if not authorized(settings.tokens, settings.host, ws.headers, ws.query_params):
            raise ProtocolError(C.UNAUTHORIZED, "Invalid token: expected a bearer token from VIGIL_API_TOKENS")
        try:
            first = await asyncio.wait_for(ws.receive(), settings.hello_timeout)
        except asyncio.TimeoutError:
            raise invalid("hello", f"within {settings.hello_timeout:g} s of connecting", "nothing") from None
        if first["type"] == "websocket.disconnect":
            return
        if first.get("text") is None:
            raise invalid("message", "a hello first", "a binary frame")
        hello = parse_hello(_loads(first["text"], C.BAD_HELLO))
        session = await engine.open(hello, conn)
        model = session.model
        conn.ready({"type": "ready", "session_id": hello.session_id, "resume_from": session.n_received,
                   "model": {"name": model.name, "version": model.version}, "labels": list(model.config.labels),
                   "output_rate": model.config.output_rate, "delay_samples": session.pre.delay_samples})
        if session.acked:
            # The last ack may have gone out while no connection held the session (detached, or a
            # connection being taken over): repeat it, or a client whose buffer is full of samples
            # up to resume_from would wait for an ack that the server only sends after more data.
            conn.send_many([ack_message(session.acked)])
        await _read(ws, conn, engine, session)
    except ProtocolError as e:
        conn.fail(e.code, e.message)
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None:
            engine.detach(session, conn)
        await conn.finish()


async def _read(ws: WebSocket, conn: Connection, engine: Engine, session: Session) -> None:
    """Read frames until the client leaves, ends the session, or breaks the protocol."""
    c, scale = len(session.hello.channels), session.hello.scale
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect" or session.connection is not conn:
            return
        data = msg.get("bytes")
        if data is not None:
            await engine.accept(session, parse_binary(data, c, scale), "binary")
            continue
        text = msg.get("text") or ""
        if len(text) > C.MAX_FRAME_BYTES:
            raise invalid("frame", f"at most {C.MAX_FRAME_BYTES} bytes", len(text), C.FRAME_TOO_LARGE)
        m = _loads(text, C.MALFORMED)
        kind = m.get("type") if isinstance(m, dict) else None
        if kind == "samples":
            await engine.accept(session, parse_samples(m, c), "json")
        elif kind == "end":
            engine.end(session)
            await session.done.wait()
            await conn.closed.wait()
            return
        else:
            conn.fail(C.UNKNOWN_TYPE, f"Invalid type: expected samples or end, got {kind!r}")


def _loads(text: str, code: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise invalid("message", "JSON", text[:40], code) from None
