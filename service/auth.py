"""Bearer-token auth for the stream and the REST API; dev mode on loopback without tokens."""

from __future__ import annotations

import hmac
import ipaddress
import logging

from fastapi import HTTPException, Request
from starlette.datastructures import Headers, QueryParams

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authorized(tokens: frozenset[str], host: str, headers: Headers, query: QueryParams) -> bool:
    """``Authorization: Bearer TOKEN`` or ``?token=TOKEN``; without tokens, loopback binds only."""
    if not tokens:
        return is_loopback(host)
    auth = headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else query.get("token", "")
    return any(hmac.compare_digest(token.encode(), t.encode()) for t in tokens)


def warn_mode(tokens: frozenset[str], host: str) -> None:
    if tokens:
        return
    if is_loopback(host):
        log.warning("DEV MODE: no VIGIL_API_TOKENS configured; accepting unauthenticated clients on %s", host)
    else:
        log.error("no VIGIL_API_TOKENS configured while bound to %s: every client will be refused", host)


async def require_token(request: Request) -> None:
    """FastAPI dependency for the REST routes."""
    s = request.app.state.settings
    if not authorized(s.tokens, s.host, request.headers, request.query_params):
        raise HTTPException(401, "Invalid token: expected a bearer token from VIGIL_API_TOKENS")
