"""A lab manager's usage pages: usage against bookings, sessions held for review, badges."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from booking import service as bookings
from booking.models import BookingStatus
from core.deps import SessionDep
from core.errors import AppError
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments import service as catalog
from labshare.pages.lab import my_lab, people
from labshare.pages.web import Csrf, PageManager, back_to, error_page, render
from telemetry import badges, review
from telemetry import service as telemetry

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
UTILISATION_SHOWN = 40
# The newest sessions in the table (the counts above it cover every session of the window).
USAGE_SHOWN = 50
NO_SHOWS_SHOWN = 40
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/lab/usage", response_class=HTMLResponse)
def lab_usage(
    request: Request,
    session: SessionDep,
    user: PageManager,
    days: Annotated[int, Query(ge=1, le=14)] = 7,
) -> HTMLResponse:
    """Usage against bookings: sessions held for review, walk-ups, overtime and no-shows."""
    lab = my_lab(session, user)
    assert lab.id is not None
    end = utcnow()
    start = end - timedelta(days=days)
    summary = telemetry.lab_usage_summary(
        session, user=user, lab_id=lab.id, start=start, end=end, newest=USAGE_SHOWN
    )
    held = telemetry.lab_usage(
        session, user=user, lab_code=lab.code, start=None, end=None, held_only=True
    )
    no_shows, _ = bookings.booking_list(
        session,
        user=user,
        filters=bookings.BookingFilters(status=BookingStatus.no_show, start=start, end=end),
        after=None,
        limit=500,
    )
    names = catalog.instrument_names(session, lab_id=lab.id)
    utilisation = telemetry.lab_utilisation(session, lab_id=lab.id, start=start, end=end)
    # The newest first: last week's no-show is the one to act on, not the oldest.
    no_shows = sorted(
        (b for b in no_shows if b.instrument_id in names), key=lambda b: b.start_at, reverse=True
    )
    no_shows_total = len(no_shows)
    no_shows = no_shows[:NO_SHOWS_SHOWN]
    who = people(
        session,
        {u.user_id for u in summary.newest + held if u.user_id} | {b.user_id for b in no_shows},
    )
    return render(
        request,
        "lab/usage.html",
        {
            "lab": lab,
            "days": days,
            "sessions": summary.sessions,
            "held": held,
            # The newest sessions in the table; the counts above it cover them all.
            "recent": summary.newest,
            "no_shows": no_shows,
            "no_shows_total": no_shows_total,
            "names": names,
            "who": who,
            "walk_ups": summary.walk_ups,
            "utilisation": utilisation[:UTILISATION_SHOWN],
            "utilisation_more": max(0, len(utilisation) - UTILISATION_SHOWN),
            # Bars are drawn against the longest one, so the busiest instrument fills its row.
            "scale": max((max(u.booked_hours, u.used_hours) for u in utilisation), default=1) or 1,
            "overtime": summary.overtime,
        },
        user=user,
    )


@router.post("/lab/usage/{usage_id}/confirm", dependencies=[Csrf])
def confirm_held(
    request: Request,
    session: SessionDep,
    user: PageManager,
    usage_id: Id,
    email: Annotated[str, Form(max_length=254)],
) -> Response:
    """Confirm a held session as this person's use: it is then billed like any other."""
    try:
        review.usage_confirm(session, actor=user, usage_id=usage_id, email=email)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/lab/usage", "usage-confirmed")


@router.post("/lab/usage/{usage_id}/dismiss", dependencies=[Csrf])
def dismiss_held(
    request: Request,
    session: SessionDep,
    user: PageManager,
    usage_id: Id,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Dismiss a held session: it stays on record and is never billed."""
    try:
        review.usage_dismiss(session, actor=user, usage_id=usage_id, reason=reason)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/lab/usage", "usage-dismissed")


@router.get("/lab/badges", response_class=HTMLResponse)
def lab_badges(request: Request, session: SessionDep, user: PageManager) -> HTMLResponse:
    """The badges the lab registered: the only names its gateways may use for people."""
    lab = my_lab(session, user)
    rows: list[Any] = badges.badge_list(session, actor=user, lab=lab)
    return render(request, "lab/badges.html", {"lab": lab, "rows": rows}, user=user)


@router.post("/lab/badges", dependencies=[Csrf])
def register_badge(
    request: Request,
    session: SessionDep,
    user: PageManager,
    code: Annotated[str, Form(max_length=64)],
    email: Annotated[str, Form(max_length=254)],
) -> Response:
    """Register a badge for someone who uses the lab."""
    lab = my_lab(session, user)
    try:
        badges.badge_register(session, actor=user, lab=lab, code=code, email=email)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/lab/badges", "saved")


@router.post("/lab/badges/{badge_id}/revoke", dependencies=[Csrf])
def revoke_badge(
    request: Request, session: SessionDep, user: PageManager, badge_id: Id
) -> Response:
    """Forget a badge: its later sessions are held like an unknown badge's."""
    try:
        badges.badge_revoke(session, actor=user, badge_id=badge_id)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to("/lab/badges", "saved")
