"""REST (DESIGN §4): sessions, alerts, predictions, strips; health, readiness and metrics."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from service.auth import require_token

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
async def session_alerts(request: Request, session_id: str) -> dict:
    """The latest state of each alert of a session."""
    return {"alerts": await request.app.state.store.session_alerts(session_id)}


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
    returns its latest state unchanged."""
    alert = await request.app.state.engine.acknowledge(alert_id, body.by if body else None)
    if alert is None:
        raise HTTPException(404, f"Unknown alert_id: {alert_id!r}")
    return alert


@router.get("/healthz")
async def healthz() -> dict:
    """The process is alive."""
    return {"status": "ok"}


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
    """Prometheus metrics (all named vigil_*)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


router.include_router(v1)
