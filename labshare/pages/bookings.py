"""A researcher's booking pages: book from the calendar, take an alternative, wait, cancel, move."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from billing.account_charges import booking_charge_to
from billing.prices import estimate, prices_for
from billing.voucher_applications import voucher_choose, voucher_split
from booking import service as bookings
from booking import waitlist
from booking.errors import SlotUnavailable
from booking.models import Booking, BookingStatus, WaitlistStatus
from booking.notifications.models import Notification
from booking.schemas import BookingCreate, BookingReschedule, WaitlistCreate, booking_public
from core.deps import SessionDep
from core.errors import AppError, Invalid, invalid_input
from core.models import User
from core.routing import UnitOfWorkRoute
from core.settings import get_settings
from core.timeutil import utcnow
from instruments import service as catalog
from instruments.models import Instrument, Lab
from labshare.pages.web import (
    Csrf,
    PageUser,
    back_to,
    error_page,
    is_htmx,
    parse_local,
    preload,
    render,
)

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
StartField = Annotated[str, Form(max_length=40)]
PurposeField = Annotated[str, Form(max_length=1000)]


def _described(
    session: Session, user: User, alternatives: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Alternatives with what tells equivalent instruments apart: name, code, lab, and the
    price this person would pay."""
    ids = sorted({int(a["instrument_id"]) for a in alternatives})
    if not ids:
        return []
    rows = session.exec(
        select(Instrument.id, Instrument.name, Instrument.code, Lab.name)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(col(Instrument.id).in_(ids))
    ).all()
    about = {i: (name, code, lab) for i, name, code, lab in rows}
    price = prices_for(session, user, ids)
    out = []
    for a in alternatives:
        name, code, lab = about.get(int(a["instrument_id"]), ("", "", ""))
        out.append({**a, "name": name, "code": code, "lab": lab,
                    "price": price.get(int(a["instrument_id"]))})  # fmt: skip
    return out


def _name_of(session: Session, instrument_id: int, cache: dict[int, str]) -> str:
    if instrument_id not in cache:
        cache[instrument_id] = catalog.instrument_get(session, instrument_id).name
    return cache[instrument_id]


def _fragment(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    user: User,
    status_code: int = 200,
    booked_from: datetime | None = None,
) -> HTMLResponse:
    """An htmx fragment, or the same content inside the full layout for a plain form post.

    A change tells the page's calendar to redraw; a booking made also says when it starts,
    so a calendar showing another week turns to the booking's (calendar.js)."""
    page = name if is_htmx(request) else "booking/result_page.html"
    context = {**context, "fragment": name}
    response = render(request, page, context, user=user, status_code=status_code)
    if status_code < 300:
        detail = {"start": booked_from.isoformat()} if booked_from else {}
        response.headers["HX-Trigger"] = json.dumps({"booking-changed": detail})
    return response


@router.get("/instruments/{instrument_id}/quote", response_class=HTMLResponse)
def quote(
    request: Request,
    session: SessionDep,
    user: PageUser,
    instrument_id: Id,
    start: Annotated[str, Query(max_length=40)] = "",
    end: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """What the time typed in the booking form would cost this person, and the part their
    voucher would pay: shown under the form before they book (htmx)."""
    context: dict[str, Any] = {"price": None, "split": None, "minutes": 0}
    try:
        begins, ends = parse_local(start, field="start"), parse_local(end, field="end")
        instrument = catalog.instrument_get(session, instrument_id)
    except AppError:
        begins = ends = None
    if begins is not None and ends is not None and ends > begins:
        price = prices_for(session, user, [instrument_id]).get(instrument_id)
        minutes = int((ends - begins).total_seconds() // 60)
        total = estimate(price, minutes) if price else None
        lab = session.get(Lab, instrument.lab_id)
        assert lab is not None
        context = {
            "price": price,
            "minutes": minutes,
            "total": total,
            "split": voucher_split(
                session, user=user, provider_institution_id=lab.institution_id, total=total
            )
            if total is not None
            else None,
        }
    return render(request, "booking/_quote.html", context, user=user)


@router.post("/instruments/{instrument_id}/book", response_class=HTMLResponse, dependencies=[Csrf])
def book(
    request: Request,
    session: SessionDep,
    user: PageUser,
    instrument_id: Id,
    start: StartField,
    end: StartField,
    purpose: PurposeField = "",
    voucher_id: Annotated[str, Form(max_length=12)] = "",
    assisted: Annotated[str, Form(max_length=5)] = "",
    account_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """Book a time picked on the calendar (or typed), paying its voucher share with the
    voucher chosen, charged to the project account chosen, asking for an operator if
    ticked; a refusal shows conflicts and alternatives (and leaves no booking behind)."""
    try:
        data = BookingCreate(
            instrument_id=instrument_id,
            start=parse_local(start, field="start"),
            end=parse_local(end, field="end"),
            purpose=purpose,
            assisted=assisted == "on",
        )
        created = bookings.booking_create(session, user=user, data=data)
        body = booking_public(created) if isinstance(created, Booking) else created
        if voucher_id.strip() and isinstance(created, Booking):
            if not voucher_id.strip().isdigit():
                raise Invalid(f"voucher: {voucher_id!r} is not a voucher id")
            voucher_choose(
                session, user=user, booking_id=created.id or 0, voucher_id=int(voucher_id.strip())
            )
        if account_id.strip() and isinstance(created, Booking):
            if not account_id.strip().isdigit():
                raise Invalid(f"account: {account_id!r} is not an account id")
            booking_charge_to(
                session, user=user, booking_id=created.id or 0, account_id=int(account_id.strip())
            )
    except ValidationError as exc:
        return error_page(request, invalid_input(exc), user=user)
    except SlotUnavailable as exc:
        # The refused request must not leave anything behind; the 409 explains and offers.
        session.rollback()
        alternatives = _described(session, user, exc.extra.get("alternatives", []))
        return _fragment(
            request,
            "booking/_refused.html",
            {
                "in_the_way": exc.in_the_way,
                "raced": exc.raced,
                "conflicts": exc.extra.get("conflicts", []),
                "alternatives": alternatives,
                "instrument_id": instrument_id,
                "start": start,
                "end": end,
                "purpose": purpose,
            },
            user=user,
            status_code=409,
        )
    except AppError as exc:
        session.rollback()  # a refused voucher or account leaves no booking behind either
        return error_page(request, exc, user=user)
    return _fragment(
        request,
        "booking/_booked.html",
        {"b": body, "name": _name_of(session, instrument_id, {})},
        user=user,
        status_code=201,
        booked_from=data.start,
    )


@router.post(
    "/instruments/{instrument_id}/waitlist", response_class=HTMLResponse, dependencies=[Csrf]
)
def join_waitlist(
    request: Request,
    session: SessionDep,
    user: PageUser,
    instrument_id: Id,
    start: StartField,
    end: StartField,
    purpose: PurposeField = "",
) -> Response:
    """Wait for a taken time: the first waiting request that fits gets it when it frees."""
    try:
        data = WaitlistCreate(
            instrument_id=instrument_id,
            start=parse_local(start, field="start"),
            end=parse_local(end, field="end"),
            purpose=purpose,
        )
        entry = waitlist.waitlist_join(session, user=user, data=data)
    except ValidationError as exc:
        return error_page(request, invalid_input(exc), user=user)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return _fragment(request, "booking/_waitlisted.html", {"entry": entry}, user=user)


def _rows(session: Session, items: list[Booking]) -> list[dict[str, Any]]:
    names: dict[int, str] = {}
    kept = preload(session, Instrument, {b.instrument_id for b in items})
    rows = [
        {"b": b, "name": _name_of(session, b.instrument_id, names), "etag": bookings.etag(b)}
        for b in sorted(items, key=lambda b: b.start_at)
    ]
    del kept
    return rows


def _why_displaced(session: Session, user: User, items: list[Booking]) -> dict[int, dict[str, Any]]:
    """For each displaced booking, what the lab blocked and why, and the times it offered
    instead (described as a refusal's are), from the notice the owner was sent."""
    if not items:
        return {}
    notices = session.exec(
        select(Notification)
        .where(
            Notification.user_id == user.id,
            Notification.kind == "booking_displaced",
            col(Notification.booking_id).in_([b.id for b in items]),
        )
        .order_by(col(Notification.id))
    ).all()
    out: dict[int, dict[str, Any]] = {}
    for notice in notices:  # the latest notice of a booking wins
        data = notice.data or {}
        out[notice.booking_id or 0] = {
            "reason": data.get("reason", ""),
            "blocked": data.get("blocked"),
            "offers": _described(session, user, list(data.get("alternatives", []))[:3]),
        }
    return out


@router.get("/me/bookings", response_class=HTMLResponse)
def my_bookings(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """Own bookings ahead and of the last 30 days, waitlist entries, and the calendar feed link."""
    now = utcnow()
    ahead, _ = bookings.booking_list(
        session,
        user=user,
        filters=bookings.BookingFilters(start=now),
        after=None,
        limit=100,
    )
    past, _ = bookings.booking_list(
        session,
        user=user,
        filters=bookings.BookingFilters(start=now - timedelta(days=30), end=now),
        after=None,
        limit=100,
    )
    active = {BookingStatus.pending, BookingStatus.confirmed}
    own = [b for b in ahead if b.user_id == user.id]
    # Coming up is what will happen: a cancelled, rejected or displaced booking leaves it
    # for a list of its own, and one that has begun is no longer ahead.
    coming = [b for b in own if b.status in active and b.start_at > now]
    changed = [b for b in own if b.status not in active]
    displaced = _why_displaced(session, user, [b for b in changed if b.status == "displaced"])
    entries = waitlist.waitlist_list(session, user=user, status=WaitlistStatus.waiting)
    names: dict[int, str] = {}
    feed = f"{get_settings().public_base}/ical/users/{user.feed_token}.ics"
    return render(
        request,
        "booking/mine.html",
        {
            "ahead": _rows(session, coming),
            "changed": _rows(session, changed),
            "displaced": displaced,
            "past": _rows(session, [b for b in past if b.user_id == user.id and b.end_at <= now]),
            "waiting": [
                {"e": e, "name": _name_of(session, e.instrument_id, names)} for e in entries
            ],
            "active": active,
            "feed": feed,
        },
        user=user,
    )


@router.post("/me/bookings/{booking_id}/cancel", dependencies=[Csrf])
def cancel(request: Request, session: SessionDep, user: PageUser, booking_id: Id) -> Response:
    """Cancel one of my bookings; its time goes to the waitlist."""
    try:
        bookings.booking_cancel(session, user=user, booking_id=booking_id)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/me/bookings", "cancelled")


@router.post("/me/bookings/{booking_id}/move", dependencies=[Csrf])
def move(
    request: Request,
    session: SessionDep,
    user: PageUser,
    booking_id: Id,
    start: StartField,
    end: StartField,
    etag: Annotated[str, Form(max_length=100)],
) -> Response:
    """Move one of my bookings, if nobody changed it since the page was shown."""
    try:
        data = BookingReschedule(
            start=parse_local(start, field="start"), end=parse_local(end, field="end")
        )
        bookings.booking_reschedule(
            session, user=user, booking_id=booking_id, data=data, if_match=etag
        )
    except ValidationError as exc:
        return error_page(request, invalid_input(exc), user=user)
    except SlotUnavailable as exc:
        session.rollback()
        return render(
            request,
            "booking/result_page.html",
            {
                "fragment": "booking/_refused.html",
                "in_the_way": exc.in_the_way,
                "raced": exc.raced,
                "conflicts": exc.extra.get("conflicts", []),
                "alternatives": [],
                "moving": True,
            },
            user=user,
            status_code=409,
        )
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/me/bookings", "moved")


@router.post("/me/waitlist/{entry_id}/withdraw", dependencies=[Csrf])
def withdraw(request: Request, session: SessionDep, user: PageUser, entry_id: Id) -> Response:
    """Leave the waitlist."""
    try:
        waitlist.waitlist_withdraw(session, user=user, entry_id=entry_id)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/me/bookings", "saved")


@router.post("/me/feed/rotate", dependencies=[Csrf])
def rotate_feed(request: Request, session: SessionDep, user: PageUser) -> Response:
    """A new secret calendar feed link; the old one stops working (if it leaked)."""
    from booking.calendars import feeds as ical

    ical.feed_token_rotate(session, user=user)
    return back_to("/me/bookings#feed-title", "feed-rotated")
