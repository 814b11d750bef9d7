"""Assisted use as a page: the lab's bookings that ask for an operator, accepted naming one
of the lab's people, or declined with a reason."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from booking.assistance import assistance_decide
from booking.models import ACTIVE_STATUSES, Assistance, Booking
from core.deps import SessionDep
from core.errors import AppError
from core.models import User
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments.models import Instrument
from labshare.pages.lab import my_lab, people
from labshare.pages.web import Csrf, PageManager, back_to, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
SHOWN = 100


def _page(
    request: Request, session: Session, user: User, *, problem: str | None = None, status: int = 200
) -> HTMLResponse:
    lab = my_lab(session, user)
    rows = session.exec(
        select(Booking, Instrument.name)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .where(
            Instrument.lab_id == lab.id,
            col(Booking.assistance).is_not(None),
            col(Booking.status).in_(ACTIVE_STATUSES),
            col(Booking.end_at) > utcnow(),
        )
        .order_by(col(Booking.start_at))
        .limit(SHOWN)
    ).all()
    staff = session.exec(
        select(User)
        .where(User.lab_id == lab.id, col(User.is_active).is_(True))
        .order_by(col(User.name))
    ).all()
    ids = {b.user_id for b, _ in rows} | {b.operator_id for b, _ in rows if b.operator_id}
    return render(
        request,
        "facility/assistance.html",
        {"rows": rows, "staff": staff, "who": people(session, ids), "problem": problem,
         "requested": Assistance.requested},
        user=user,
        status_code=status,
    )  # fmt: skip


@router.get("/lab/assistance", response_class=HTMLResponse)
def lab_assistance(request: Request, session: SessionDep, user: PageManager) -> HTMLResponse:
    """Bookings ahead that asked for an operator, the undecided first."""
    return _page(request, session, user)


@router.post("/lab/assistance/{booking_id}", dependencies=[Csrf])
def decide(
    request: Request,
    session: SessionDep,
    user: PageManager,
    booking_id: Id,
    accept: Annotated[str, Form(max_length=5)],
    operator_email: Annotated[str, Form(max_length=254)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Accept naming the operator, or decline with a reason the booker reads."""
    try:
        assistance_decide(
            session, user=user, booking_id=booking_id, accept=accept == "yes",
            operator_email=operator_email, reason=reason,
        )  # fmt: skip
    except AppError as exc:
        session.rollback()
        return _page(request, session, user, problem=exc.message, status=exc.status_code)
    return back_to("/lab/assistance", "saved")
