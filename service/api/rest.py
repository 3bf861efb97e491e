"""REST (DESIGN §4): sessions, alerts, predictions, strips; per-session alarm settings, pauses and
their audit; health, readiness and metrics."""

from __future__ import annotations

import numpy as np
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from service import constants as C
from service import metrics as M
from service.alarms import settings as AS
from service.auth import require_token
from service.routing import Forwarded
from service.sessions import iso, utcnow

router = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])
MAX_SAMPLE = 2**62


async def _session_view(request: Request, row: dict) -> dict:
    """A stored session, with the live counters when this replica holds it."""
    live = request.app.state.engine.sessions.get(row["session_id"])
    if live is not None:
        row = {**row, "status": str(live.status), "samples_received": live.n_received}
    return row


@v1.get("/sessions")
async def list_sessions(request: Request) -> dict:
    """All sessions, oldest first."""
    return {"sessions": [await _session_view(request, r) for r in await request.app.state.store.sessions()]}


@v1.get("/sessions/{session_id}")
async def get_session(request: Request, session_id: str) -> dict:
    """One session."""
    row = await request.app.state.store.session(session_id)
    if row is None:
        raise HTTPException(404, f"Unknown session_id: {session_id!r}")
    return await _session_view(request, row)


@v1.get("/sessions/{session_id}/alerts")
async def session_alerts(request: Request, session_id: str,
                         suppressed: bool = Query(False, description="include suppressed conditions")) -> dict:
    """The latest state of each alert of a session (suppressed conditions only when asked)."""
    return {"alerts": await request.app.state.store.session_alerts(session_id, suppressed)}


@v1.get("/sessions/{session_id}/predictions")
async def session_predictions(request: Request, session_id: str,
                              from_sample: int = Query(0, ge=0), to_sample: int = Query(MAX_SAMPLE, ge=0),
                              limit: int = Query(1000, ge=1, le=10_000),
                              cursor: int | None = Query(None, ge=0)) -> dict:
    """Predictions with from_sample <= sample < to_sample, in pages (next_cursor)."""
    rows = await request.app.state.store.predictions(session_id, from_sample, to_sample,
                                                     -1 if cursor is None else cursor, limit)
    return {"predictions": rows, "next_cursor": rows[-1]["sample"] if len(rows) == limit else None}


@v1.get("/alerts/{alert_id}")
async def get_alert(request: Request, alert_id: str) -> dict:
    """The latest state of one alert, with its evidence."""
    alert = await request.app.state.store.alert(alert_id)
    if alert is None:
        raise HTTPException(404, f"Unknown alert_id: {alert_id!r}")
    return alert


@v1.get("/alerts/{alert_id}/transitions")
async def alert_transitions(request: Request, alert_id: str) -> dict:
    """Every transition of one alert, in order (suppressed ones included)."""
    rows = await request.app.state.store.alert_transitions(alert_id)
    if not rows:
        raise HTTPException(404, f"Unknown alert_id: {alert_id!r}")
    return {"transitions": rows}


@v1.get("/alerts/{alert_id}/strip")
async def get_strip(request: Request, alert_id: str) -> dict:
    """Raw samples around an alert, as streamed (null where missing)."""
    strip = await request.app.state.store.strip(alert_id)
    if strip is None:
        raise HTTPException(404, f"Unknown alert_id: {alert_id!r} has no strip")
    first, rate, channels, units, c, data = strip
    x = np.frombuffer(data, dtype="<f4").reshape(-1, c).astype(object)
    x[~np.isfinite(x.astype(float))] = None
    return {"first_sample": first, "sample_rate": rate, "channels": channels, "units": units, "data": x.tolist()}


class Ack(BaseModel):
    """Optional body of an acknowledgement."""

    by: str | None = Field(None, max_length=200, description="Who acknowledged (user or station), stored as "
                                                                 "the alert's acknowledged_by")


@v1.post("/alerts/{alert_id}/ack")
async def ack_alert(request: Request, alert_id: str, body: Ack | None = None) -> dict:
    """Acknowledge an alert: a new transition with acknowledged: true, acknowledged_at (wall clock,
    ISO 8601 UTC) and acknowledged_by (from the optional body). Acknowledging an acknowledged alert
    returns its latest state unchanged. When another replica holds the alert's session, it takes the
    acknowledgement (its alarm state latches the alert)."""
    sid = alert_id.rsplit(":", 2)[0]
    if sid not in request.app.state.engine.sessions:
        await _forward(request, sid)
    alert = await request.app.state.engine.acknowledge(alert_id, body.by if body else None)
    if alert is None:
        raise HTTPException(404, f"Unknown alert_id: {alert_id!r}")
    return alert


# ------------------------------------------------------------------ per-session alarm control


async def _forward(request: Request, session_id: str) -> None:
    """Answer with the owner's response (raise :class:`Forwarded`) when another live replica holds the
    session (service/routing.py); return when none does."""
    owners = getattr(request.app.state, "owners", None)
    response = await owners.forward(request, session_id) if owners is not None else None
    if response is not None:
        raise Forwarded(response)


async def _live(request: Request, session_id: str):
    """The session, held and streaming or detached on this replica (its alarm state lives here); a
    request for a session another replica holds is forwarded to it."""
    s = request.app.state.engine.sessions.get(session_id)
    if s is not None and not s.ending:
        return s
    if s is None:
        await _forward(request, session_id)
    if await request.app.state.store.session(session_id) is None:
        raise HTTPException(404, f"Unknown session_id: {session_id!r}")
    raise HTTPException(409, f"Session {session_id!r} is not live on this replica: its alarms cannot be changed "
                             "here (ended, or held by another replica that cannot be reached)")


def _alarm_view(s) -> dict:
    a = s.alarms
    return {"session_id": s.id, "settings": a.settings.to_dict(), "overrides": a.overrides,
            "bounds": AS.bounds(s.hello.modality), "pause": a.paused,
            "held": [{k: h[k] for k in ("alert_id", "kind", "priority", "state", "acknowledged", "end_sample")}
                     | {"suppressed": h["evidence"]["suppressed"]} for h in a.held()]}


@v1.get("/sessions/{session_id}/alarms")
async def get_alarms(request: Request, session_id: str) -> dict:
    """A live session's effective alarm settings, their bounds, its pause and held alerts."""
    return _alarm_view(await _live(request, session_id))


@v1.patch("/sessions/{session_id}/alarms")
async def set_alarms(request: Request, session_id: str,
                     body: dict[str, Any] = Body(..., examples=[{"kinds": {"vt": {"threshold": 0.4}}, "by": "rn-7"}])) -> dict:
    """Change a live session's alarm settings (the hello's ``alarms`` fields, plus ``by``); each value
    must lie in its safe range (422 otherwise). Audited."""
    s = await _live(request, session_id)
    body = dict(body)
    by = body.pop("by", None)
    if by is not None and (not isinstance(by, str) or len(by) > 200):
        raise HTTPException(422, f"Invalid by: expected a string of up to 200 characters, got {by!r}")
    try:
        overrides = AS.validate(body, s.hello.modality, base=s.alarms.overrides)
    except AS.SettingsError as e:
        raise HTTPException(422, str(e)) from None
    engine = request.app.state.engine
    await engine._call(s.alarms.configure, overrides)
    await request.app.state.store.audit([(s.id, None, C.AUDIT_SETTINGS, by, iso(utcnow()), {"change": body})])
    return _alarm_view(s)


class Pause(BaseModel):
    """Body of an alarm pause."""

    duration_s: Any = Field(..., description=f"{C.MIN_PAUSE_S:g}–{C.MAX_PAUSE_S:g} s of signal")
    kinds: Any = Field(None, description="kinds withheld (default: every physiological kind)")
    by: str | None = Field(None, max_length=200, description="who paused (user or station)")
    reason: str | None = Field(None, max_length=500)


@v1.post("/sessions/{session_id}/alarms/pause")
async def pause_alarms(request: Request, session_id: str, body: Pause) -> dict:
    """Pause a live session's alarms of the given kinds for at most MAX_PAUSE_S: conditions raised
    meanwhile are kept in history as suppressed (reason ``paused``) and raised if they outlast the
    pause. Audited (who, when, how long)."""
    s = await _live(request, session_id)
    try:
        duration, kinds = AS.pause_duration(body.duration_s), AS.pause_kinds(body.kinds, s.hello.modality)
    except AS.SettingsError as e:
        raise HTTPException(422, str(e)) from None
    at = iso(utcnow())
    pause = await request.app.state.engine._call(s.alarms.pause, s.n_received, duration, kinds, body.by, at)
    pause["reason"] = body.reason
    await request.app.state.store.audit([(s.id, None, C.AUDIT_PAUSE, body.by, at, pause)])
    return {"session_id": s.id, "pause": pause}


@v1.delete("/sessions/{session_id}/alarms/pause")
async def resume_alarms(request: Request, session_id: str,
                        by: str | None = Query(None, max_length=200, description="who resumed")) -> dict:
    """End a live session's alarm pause now. Audited."""
    s = await _live(request, session_id)
    at = iso(utcnow())
    ended = await request.app.state.engine._call(s.alarms.resume, s.n_received)
    if ended is not None:
        await request.app.state.store.audit([(s.id, None, C.AUDIT_RESUME, by, at, ended)])
    return {"session_id": s.id, "pause": None, "ended": ended}


@v1.get("/sessions/{session_id}/alarms/audit")
async def alarm_audit(request: Request, session_id: str) -> dict:
    """Who acknowledged, paused, resumed or changed a session's alarms, and when."""
    return {"audit": await request.app.state.store.audit_log(session_id)}


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    """The process is alive; ``replica`` names it (one per worker of ``vigil serve --workers N``)."""
    settings = getattr(request.app.state, "settings", None)
    return {"status": "ok", "replica": settings.replica_id if settings else None}


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict:
    """Models loaded, Redis and the store reachable."""
    state = request.app.state
    checks = {"models": bool(getattr(state, "engine", None))}
    for name, probe in (("redis", lambda: state.bus.ping()), ("store", lambda: state.store.ping())):
        try:
            checks[name] = await probe()
        except Exception:
            checks[name] = False
    ok = all(checks.values())
    response.status_code = 200 if ok else 503
    return {"status": "ready" if ok else "not ready", "checks": checks}


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics (all named vigil_*; with several workers, summed over all of them)."""
    return Response(M.exposition(), media_type=CONTENT_TYPE_LATEST)


router.include_router(v1)
