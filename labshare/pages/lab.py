"""A lab manager's pages: approvals, instruments, live status board, gateways, usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from booking import service as bookings
from booking.models import BookingStatus
from core.deps import SessionDep
from core.errors import AppError, NotFound
from core.models import User
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments import service as catalog
from instruments.models import InstrumentStatus, Lab
from labshare.pages.web import Csrf, PageManager, back_to, error_page, preload, render
from telemetry import service as telemetry

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def my_lab(session: Session, user: User) -> Lab:
    """The lab this manager manages."""
    lab = session.get(Lab, user.lab_id) if user.lab_id else None
    if lab is None:
        raise NotFound("your account manages no lab; ask a network administrator")
    return lab


def people(session: Session, ids: set[int]) -> dict[int, User]:
    """The accounts behind bookings a manager may see (names and emails for the lab)."""
    return preload(session, User, ids)


PENDING_SHOWN = 50


def _pending(
    session: Session, user: User, names: dict[int, str]
) -> tuple[list[dict[str, Any]], bool]:
    """The lab's requests waiting for a decision, soonest first; and whether more wait."""
    rows, more = bookings.booking_list(
        session,
        user=user,
        filters=bookings.BookingFilters(status=BookingStatus.pending, start=utcnow()),
        after=None,
        limit=PENDING_SHOWN,
    )
    rows = [b for b in rows if b.instrument_id in names]
    who = people(session, {b.user_id for b in rows})
    items = [
        {"b": b, "name": names[b.instrument_id], "who": who.get(b.user_id)}
        for b in sorted(rows, key=lambda b: b.start_at)
    ]
    return items, more is not None


BOARD_PAGE = 25


@dataclass(frozen=True)
class BoardQuery:
    """The desk's instrument list: a text, a status, a page."""

    q: str = ""
    status: str = ""
    page: int = 1

    def params(self, **changed: object) -> dict[str, object]:
        out = {"q": self.q, "status": self.status, "page": self.page, **changed}
        return {k: v for k, v in out.items() if v not in ("", None)}


def _instruments(session: Session, lab: Lab, query: BoardQuery) -> tuple[list[Any], int]:
    """One page of the lab's instruments matching the query, and how many match."""
    known = {s.value for s in InstrumentStatus}
    status = InstrumentStatus(query.status) if query.status in known else None
    return catalog.catalog_page(
        session,
        filters=catalog.SearchFilters(lab=lab.code, q=query.q or None, status=status),
        page=query.page,
        size=BOARD_PAGE,
    )


def _board(session: Session, lab: Lab, query: BoardQuery) -> dict[str, Any]:
    instruments, total = _instruments(session, lab, query)
    return {
        "instruments": instruments,
        "total": total,
        "query": query,
        "pages": max(1, -(-total // BOARD_PAGE)),
        "statuses_all": [s.value for s in InstrumentStatus],
    }


async def board_query(
    q: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str, Query(max_length=32)] = "",
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> BoardQuery:
    """The desk's and the board's query parameters (the board's refresh repeats them)."""
    return BoardQuery(q.strip(), status, page)


BoardQueryDep = Annotated[BoardQuery, Depends(board_query)]


def _statuses(session: Session, lab: Lab) -> dict[int, Any]:
    return {s.instrument_id: s for s in telemetry.lab_status(session, lab_code=lab.code)}


@router.get("/lab", response_class=HTMLResponse)
def lab_home(
    request: Request,
    session: SessionDep,
    user: PageManager,
    query: BoardQueryDep,
) -> HTMLResponse:
    """The manager's desk: pending approvals, instruments with their live state (searched
    and a page at a time), gateways."""
    lab = my_lab(session, user)
    gateways = telemetry.gateway_list(session, lab_id=lab.id)
    board = _board(session, lab, query)
    pending, more = _pending(session, user, catalog.instrument_names(session, lab_id=lab.id))
    return render(
        request,
        "lab/home.html",
        {
            "lab": lab,
            "pending": pending,
            "more_pending": more,
            **board,
            # Live states arrive with the board's first refresh (/lab/status), so the desk
            # itself answers without waiting for telemetry.
            "statuses": {},
            "gateways": gateways,
        },
        user=user,
    )


@router.get("/lab/status", response_class=HTMLResponse)
def lab_status_board(
    request: Request,
    session: SessionDep,
    user: PageManager,
    query: BoardQueryDep,
) -> HTMLResponse:
    """The live status board (an htmx fragment the desk refreshes), for the same query."""
    lab = my_lab(session, user)
    return render(
        request,
        "lab/_board.html",
        {
            **_board(session, lab, query),
            "statuses": _statuses(session, lab),
        },
        user=user,
    )


def _decide(
    request: Request, session: Session, user: User, booking_id: int, reason: str, approve: bool
) -> Response:
    decide = bookings.booking_approve if approve else bookings.booking_reject
    try:
        decide(session, user=user, booking_id=booking_id, reason=reason)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/lab", "approved" if approve else "rejected")


@router.post("/lab/bookings/{booking_id}/approve", dependencies=[Csrf])
def approve(
    request: Request,
    session: SessionDep,
    user: PageManager,
    booking_id: Id,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Confirm a pending booking of the lab."""
    return _decide(request, session, user, booking_id, reason, approve=True)


@router.post("/lab/bookings/{booking_id}/reject", dependencies=[Csrf])
def reject(
    request: Request,
    session: SessionDep,
    user: PageManager,
    booking_id: Id,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Reject a pending booking of the lab; its time goes to the waitlist."""
    return _decide(request, session, user, booking_id, reason, approve=False)
