"""Incidents as pages: the lab's queue of reported problems, a blackout opened from one,
and closing it with a note."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from booking import incidents
from core.deps import SessionDep
from core.errors import AppError
from core.models import User
from core.routing import UnitOfWorkRoute
from instruments.models import Instrument
from labshare.pages.kiosk import KIND_WORDS
from labshare.pages.lab import people
from labshare.pages.web import Csrf, PageManager, back_to, parse_local, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _queue(
    request: Request, session: Session, user: User, *, problem: str | None = None, status: int = 200
) -> HTMLResponse:
    found = incidents.incidents_list(session, user=user)
    ids = {i.instrument_id for i in found}
    instruments = {
        i.id: i for i in session.exec(select(Instrument).where(col(Instrument.id).in_(ids)))
    }
    return render(
        request,
        "facility/incidents.html",
        {
            "open": [i for i in found if i.status.value == "open"],
            "closed": [i for i in found if i.status.value == "closed"][:30],
            "instruments": instruments,
            "who": people(session, {i.reporter_id for i in found if i.reporter_id}),
            "problem": problem,
            "words": KIND_WORDS,
        },
        user=user,
        status_code=status,
    )


@router.get("/lab/incidents", response_class=HTMLResponse)
def lab_incidents(request: Request, session: SessionDep, user: PageManager) -> HTMLResponse:
    """Problems reported with the lab's instruments, open first."""
    return _queue(request, session, user)


@router.post("/lab/incidents/{incident_id}/blackout", dependencies=[Csrf])
def block(
    request: Request,
    session: SessionDep,
    user: PageManager,
    incident_id: Id,
    start: Annotated[str, Form(max_length=40)],
    end: Annotated[str, Form(max_length=40)],
) -> Response:
    """Block the instrument from this report (bookings in the way are displaced)."""
    try:
        incidents.incident_block(
            session, user=user, incident_id=incident_id,
            start=parse_local(start, field="start"), end=parse_local(end, field="end"),
        )  # fmt: skip
    except AppError as exc:
        session.rollback()
        return _queue(request, session, user, problem=exc.message, status=exc.status_code)
    return back_to("/lab/incidents", "incident-blocked")


@router.post("/lab/incidents/{incident_id}/close", dependencies=[Csrf])
def close(
    request: Request,
    session: SessionDep,
    user: PageManager,
    incident_id: Id,
    note: Annotated[str, Form(max_length=1000)],
) -> Response:
    """Close with a note the reporter reads."""
    try:
        incidents.incident_close(session, user=user, incident_id=incident_id, note=note)
    except AppError as exc:
        session.rollback()
        return _queue(request, session, user, problem=exc.message, status=exc.status_code)
    return back_to("/lab/incidents", "incident-closed")
