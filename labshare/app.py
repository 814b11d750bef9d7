"""The assembled application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

import admin.api
import admin.management_api
import admin.webhooks_api
import billing.api
import billing.projects.api
import billing.services.api
import billing.voucher_api
import booking.api
import booking.calendars.api
import booking.facility_api
import booking.notifications.api
import core.api
import instruments.api
import labshare.ops
import telemetry.api
import telemetry.kiosk_api
from core.db import get_engine
from core.errors import install_error_handlers
from core.headers import SecurityHeadersMiddleware
from core.limits import BodyLimitMiddleware
from core.replicas import ReadYourWritesMiddleware
from core.settings import get_settings
from labshare.pages import install as install_pages
from labshare.pages import too_large

HERE = Path(__file__).resolve().parent

API_PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Threads for what runs outside a unit of work (password checks, files); the units of
    # work have their own (core.threads), as many.
    settings = get_settings()
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(settings.server_threads, settings.gate_slots)
    if settings.hours_warm:
        from booking.timeline import warm_hours_in_background

        warm_hours_in_background(lambda: Session(get_engine()))
    if settings.kpi_warm:
        from admin.kpis import warm_dashboard

        warm_dashboard(lambda: Session(get_engine()))
    yield


def create_app() -> FastAPI:
    """labshare's FastAPI application: API, calendars, pages."""
    app = FastAPI(
        title="labshare",
        version="0.1.0",
        description="Find, book and pay for a city's shared scientific instruments.",
        lifespan=lifespan,
    )
    # One engine per process, built now rather than by whichever requests come first.
    get_engine()
    install_error_handlers(app)
    app.include_router(core.api.router, prefix=API_PREFIX)
    app.include_router(instruments.api.router, prefix=API_PREFIX)
    app.include_router(booking.api.router, prefix=API_PREFIX)
    app.include_router(booking.calendars.api.router, prefix=API_PREFIX)
    app.include_router(booking.calendars.api.ical_router)
    app.include_router(booking.notifications.api.router, prefix=API_PREFIX)
    app.include_router(booking.facility_api.router, prefix=API_PREFIX)
    app.include_router(telemetry.api.router, prefix=API_PREFIX)
    app.include_router(telemetry.kiosk_api.router, prefix=API_PREFIX)
    app.include_router(labshare.ops.router)
    app.include_router(labshare.ops.metrics_router)
    app.include_router(billing.api.router, prefix=API_PREFIX)
    app.include_router(billing.voucher_api.router, prefix=API_PREFIX)
    app.include_router(billing.services.api.router, prefix=API_PREFIX)
    app.include_router(billing.projects.api.router, prefix=API_PREFIX)
    app.include_router(admin.api.router, prefix=API_PREFIX)
    app.include_router(admin.management_api.router, prefix=API_PREFIX)
    app.include_router(admin.webhooks_api.router, prefix=API_PREFIX)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_pages(app)
    # Outermost: bodies past the limit are refused (413) before anything reads them; an
    # anonymous 48 MB JSON body used to be parsed before its 401.
    app.add_middleware(BodyLimitMiddleware, refusal=too_large)
    app.add_middleware(ReadYourWritesMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    _freeze_startup_objects()
    return app


_frozen = False


# Young objects the collector lets pile up before it looks for cycles (Python's default is
# 700): a booking request allocates thousands, so it ran several collections each. 20,000
# runs 2% fewer instructions a booking (valgrind, 300 booked in-process), for a few MB.
YOUNG_OBJECTS_PER_COLLECTION = 20_000


def _freeze_startup_objects() -> None:
    """Once per process, hide what start-up made (modules, routes, templates) from the
    garbage collector: its full collections otherwise pause a request for 100 ms or more
    now and then (bench/pages.py: page p95 126 ms -> 32 ms)."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, older, oldest)
        _frozen = True
