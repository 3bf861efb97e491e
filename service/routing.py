"""Owner routing: which replica holds a live session, and forwarding REST commands to it.

A session's alarm state lives on the replica (or worker of ``vigil serve --workers N``) that holds
it. That replica records itself under ``vigil:session:{id}:owner`` (:func:`service.constants.owner_key`:
JSON ``{"replica", "url", "host"}``, TTL ``OWNER_TTL_S``, refreshed while it holds the session,
deleted when it lets the session go). A replica that gets a session-scoped command (alarm settings,
pause, acknowledgement) for a session it does not hold forwards the request (method, path, query,
body, ``Authorization``) to the owner's advertised URL and answers with the owner's status and body
(header ``X-Vigil-Owner``). Without a live, reachable owner the caller answers as before (404/409).
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import httpx
import orjson
import redis.asyncio as aioredis
from fastapi import Request, Response

from service import constants as C

log = logging.getLogger(__name__)
FORWARD_TIMEOUT_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# SET the key (with its TTL) unless another replica owns it; 1: set, 0: owned by another.
_REFRESH = """local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['replica'] ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) return 1"""
# DEL the key only when this replica owns it.
_RELEASE = """local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['replica'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"""


class Forwarded(Exception):
    """Raised by a route to answer with the owner's response (the app's exception handler returns it)."""

    def __init__(self, response: Response):
        self.response = response


class Owners:
    """This replica's owner keys in Redis, and forwarding to other owners.

    Parameters
    ----------
    redis : the shared Redis client (the bus's).
    replica_id : this replica's name.
    url : where other replicas reach this one (``http://HOST:PORT``).
    """

    def __init__(self, redis: aioredis.Redis, replica_id: str, url: str):
        self.redis, self.replica_id, self.url = redis, replica_id, url.rstrip("/")
        self.host = socket.gethostname()
        self._value = orjson.dumps({"replica": replica_id, "url": self.url, "host": self.host})
        self._ttl_ms = int(C.OWNER_TTL_S * 1000)
        self._client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S)

    async def close(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ keys

    async def claim(self, session_id: str) -> None:
        """This replica holds the session now (a new connection wins over an older owner)."""
        await self.redis.set(C.owner_key(session_id), self._value, px=self._ttl_ms)

    async def refresh(self, session_ids: list[str]) -> list[str]:
        """Renew the keys of the sessions held here; return those another replica has claimed since."""
        if not session_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for sid in session_ids:
            pipe.eval(_REFRESH, 1, C.owner_key(sid), self._value, self.replica_id, self._ttl_ms)
        try:
            return [sid for sid, ok in zip(session_ids, await pipe.execute()) if not ok]
        except aioredis.RedisError as e:  # tried again at the next refresh, well within the TTL
            log.warning("owner keys of %d sessions not refreshed: %s", len(session_ids), e)
            return []

    async def release(self, session_ids: list[str]) -> None:
        """This replica no longer holds these sessions (ended, evicted, or shutting down)."""
        if not session_ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for sid in session_ids:
            pipe.eval(_RELEASE, 1, C.owner_key(sid), self.replica_id)
        try:
            await pipe.execute()
        except aioredis.RedisError as e:  # the keys expire within OWNER_TTL_S anyway
            log.warning("owner keys of %d sessions not released: %s", len(session_ids), e)

    async def owner(self, session_id: str) -> dict | None:
        """The live owner of a session when it is another replica this one can reach, else None."""
        raw = await self.redis.get(C.owner_key(session_id))
        if raw is None:
            return None
        o = orjson.loads(raw)
        if o.get("replica") == self.replica_id:
            return None
        if urlsplit(o.get("url", "")).hostname in LOOPBACK and o.get("host") != self.host:
            return None  # a worker's loopback listener on another machine: not reachable from here
        return o

    # ------------------------------------------------------------------ forwarding

    async def forward(self, request: Request, session_id: str) -> Response | None:
        """The owner's answer to this request, or None when the session has no other live owner (or
        it did not answer, or the request was itself forwarded: one hop at most)."""
        if request.headers.get(C.FORWARDED_HEADER):
            return None
        o = await self.owner(session_id)
        if o is None:
            return None
        url = o["url"] + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        headers[C.FORWARDED_HEADER] = self.replica_id
        try:
            r = await self._client.request(request.method, url, content=await request.body(), headers=headers)
        except httpx.HTTPError as e:
            log.warning("owner %s of session %s did not answer at %s: %s", o["replica"], session_id, o["url"], e)
            return None
        return Response(r.content, r.status_code, media_type=r.headers.get("content-type"),
                        headers={C.OWNER_HEADER: o["replica"]})
