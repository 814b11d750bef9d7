"""The kiosk: a page on a tablet beside an instrument (or behind the QR code printed on
it). The booker checks in and out, signed in or with their booking's PIN, and anyone can
report a problem. Large touch targets, readable at arm's length, in both languages."""

from __future__ import annotations

import io
from typing import Annotated

import segno
from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from booking.incidents import incident_report
from booking.models import IncidentKind
from core.api import client_address
from core.deps import OptionalUser, SessionDep
from core.errors import AppError
from core.models import User
from core.routing import UnitOfWorkRoute
from core.settings import get_settings
from labshare.pages.web import Csrf, back_to, render
from telemetry import kiosk

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
KINDS = [k.value for k in IncidentKind]
# What a reporter picks, in words (the pages translate them).
KIND_WORDS = {
    "broken": "It does not work",
    "dirty": "Left dirty or unsafe",
    "results": "Results look wrong",
    "safety": "A safety hazard",
    "other": "Something else",
}


def _page(
    request: Request,
    session: Session,
    user: User | None,
    instrument_id: int,
    *,
    problem: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    state = kiosk.kiosk_state(session, instrument_id=instrument_id)
    mine = user is not None and state.booking is not None and state.booking.user_id == user.id
    return render(
        request,
        "facility/kiosk.html",
        {"state": state, "mine": mine, "problem": problem, "kinds": KINDS, "words": KIND_WORDS},
        user=user,
        status_code=status_code,
    )


def _refused(
    request: Request, session: Session, user: User | None, instrument_id: int, exc: AppError
) -> HTMLResponse:
    """The kiosk again, saying why: what the refusal recorded (a wrong PIN counted) is
    kept, anything else the request wrote is undone."""
    if exc.commit_first:
        session.commit()
    else:
        session.rollback()
    return _page(
        request, session, user, instrument_id, problem=exc.message, status_code=exc.status_code
    )


@router.get("/instruments/{instrument_id}/kiosk", response_class=HTMLResponse)
def kiosk_page(
    request: Request, session: SessionDep, user: OptionalUser, instrument_id: Id
) -> HTMLResponse:
    """The instrument's kiosk: the booking now, check in or out, report a problem."""
    return _page(request, session, user, instrument_id)


def _kiosk_url(request: Request, instrument_id: int) -> str:
    base = get_settings().public_url or str(request.base_url).rstrip("/")
    return f"{base}/instruments/{instrument_id}/kiosk"


@router.get("/instruments/{instrument_id}/kiosk.svg")
def kiosk_qr(request: Request, session: SessionDep, instrument_id: Id) -> Response:
    """A QR code of the kiosk's address, for the lab to print and stick on the instrument."""
    kiosk.kiosk_state(session, instrument_id=instrument_id)  # 404 for no such instrument
    out = io.BytesIO()
    segno.make(_kiosk_url(request, instrument_id), error="m").save(
        out, kind="svg", scale=8, border=2, title="labshare kiosk"
    )
    return Response(
        out.getvalue(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.post("/instruments/{instrument_id}/kiosk/check-in", dependencies=[Csrf])
def kiosk_check_in(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    instrument_id: Id,
    pin: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Check in with the PIN (or as the signed-in booker); a refusal shows why."""
    try:
        kiosk.check_in(
            session,
            instrument_id=instrument_id,
            user=user,
            pin=pin.strip() or None,
            address=client_address(request),
        )
    except AppError as exc:
        return _refused(request, session, user, instrument_id, exc)
    return back_to(f"/instruments/{instrument_id}/kiosk", "checked-in")


@router.post("/instruments/{instrument_id}/kiosk/check-out", dependencies=[Csrf])
def kiosk_check_out(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    instrument_id: Id,
    pin: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Check out: the session ends now."""
    try:
        kiosk.check_out(session, instrument_id=instrument_id, user=user, pin=pin.strip() or None)
    except AppError as exc:
        return _refused(request, session, user, instrument_id, exc)
    return back_to(f"/instruments/{instrument_id}/kiosk", "checked-out")


@router.post("/instruments/{instrument_id}/kiosk/report", dependencies=[Csrf])
def kiosk_report(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    instrument_id: Id,
    kind: Annotated[str, Form(max_length=20)],
    description: Annotated[str, Form(max_length=2000)],
) -> Response:
    """Report a problem with the instrument; its lab is told at once."""
    try:
        if kind not in KINDS:
            raise AppError(f"kind: one of {', '.join(KINDS)}", 422)
        incident_report(
            session,
            user=user,
            instrument_id=instrument_id,
            kind=IncidentKind(kind),
            description=description,
        )
    except AppError as exc:
        return _refused(request, session, user, instrument_id, exc)
    return back_to(f"/instruments/{instrument_id}/kiosk", "reported")
