"""Live instrument status from telemetry, as a fragment the instrument page refreshes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from core.deps import SessionDep
from core.errors import AppError
from core.routing import UnitOfWorkRoute
from labshare.pages.web import error_page, render
from telemetry import service as telemetry

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)


@router.get("/instruments/{instrument_id}/live", response_class=HTMLResponse)
def live_status(
    request: Request, session: SessionDep, instrument_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> HTMLResponse:
    """The instrument's live state: idle, in use, fault or offline."""
    try:
        status = telemetry.instrument_status(session, instrument_id=instrument_id)
    except AppError as exc:
        return error_page(request, exc)
    return render(request, "catalog/_live.html", {"s": status})
