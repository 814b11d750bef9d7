"""The assembled application."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

import admin.api
import billing.api
import billing.pages
import booking.api
import booking.calendar_api
import core.api
import instruments.api
import telemetry.api
from core.db import get_engine
from core.errors import install_error_handlers
from labshare.pages import install as install_pages

HERE = Path(__file__).resolve().parent

API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    """labshare's FastAPI application: API, calendars, pages."""
    app = FastAPI(
        title="labshare",
        version="0.1.0",
        description="Find, book and pay for a city's shared scientific instruments.",
    )
    install_error_handlers(app)
    app.include_router(core.api.router, prefix=API_PREFIX)
    app.include_router(instruments.api.router, prefix=API_PREFIX)
    app.include_router(booking.api.router, prefix=API_PREFIX)
    app.include_router(booking.calendar_api.router, prefix=API_PREFIX)
    app.include_router(booking.calendar_api.ical_router)
    app.include_router(telemetry.api.router, prefix=API_PREFIX)
    app.include_router(telemetry.api.metrics_router)
    app.include_router(billing.api.router, prefix=API_PREFIX)
    app.include_router(billing.pages.router)
    app.include_router(admin.api.router, prefix=API_PREFIX)

    @app.get("/healthz", tags=["ops"])
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
        return {"status": "ok", "database": engine.dialect.name}

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_pages(app)
    _freeze_startup_objects()
    return app


_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process, hide what start-up made (modules, routes, templates) from the
    garbage collector: its full collections otherwise pause a request for 100 ms or more
    now and then (bench/pages.py: page p95 126 ms -> 32 ms)."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True
