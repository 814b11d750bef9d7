"""What operators watch: /healthz for load balancers, /metrics for Prometheus."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from core.db import get_engine
from core.deps import SessionDep
from core.errors import NotFound, Unauthorized
from core.replicas import replicas
from core.routing import UnitOfWorkRoute, request_metrics
from core.settings import get_settings
from telemetry.service import telemetry_counts

router = APIRouter(tags=["ops"])
metrics_router = APIRouter(route_class=UnitOfWorkRoute, tags=["ops"])


@router.get("/healthz")
def healthz() -> Any:
    """Liveness with the database checked: 503 when it cannot be reached."""
    engine = get_engine()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return JSONResponse(
            {"status": "error", "database": engine.dialect.name, "detail": str(exc.orig)},
            status_code=503,
        )
    # Replicas: each one's state; one down or too far behind is skipped, not an outage.
    states = [r.state() for r in replicas()]
    if not states:
        return {"status": "ok", "database": engine.dialect.name}
    limit = get_settings().replica_max_lag_seconds
    return {
        "status": "ok",
        "database": engine.dialect.name,
        "replicas": [
            {"name": s.name, "ok": s.ok, "lag_seconds": s.lag_seconds,
             "serving": s.ok and (s.lag_seconds or 0) <= limit, "detail": s.detail}
            for s in states
        ],
    }  # fmt: skip


@metrics_router.get("/metrics", response_class=PlainTextResponse)
def metrics(
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> PlainTextResponse:
    """Prometheus text: the request path (pool, gate) and telemetry figures. Off unless
    LABSHARE_METRICS_TOKEN is set; then it needs `Authorization: Bearer <that token>`."""
    token = get_settings().metrics_token
    if not token:
        raise NotFound("metrics are off; set LABSHARE_METRICS_TOKEN to serve them")
    sent = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise Unauthorized("metrics need the bearer token set in LABSHARE_METRICS_TOKEN")
    lines = request_metrics()
    for name, value in telemetry_counts(session).items():
        metric = f"labshare_telemetry_{name}"
        lines += [f"# TYPE {metric} gauge", f"{metric} {value:g}"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
