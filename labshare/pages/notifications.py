"""A person's notifications: the inbox, newest first, with unread ones marked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from booking.notifications import service as notifications
from booking.reminders import parse_offsets
from core.deps import SessionDep
from core.errors import AppError
from core.models import User
from core.routing import UnitOfWorkRoute
from labshare.pages.web import Csrf, PageUser, back_to, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
SHOWN = 50
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/me/notifications", response_class=HTMLResponse)
def inbox(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """What labshare told me: approvals, displacements, waitlist offers, newest first."""
    return _inbox(request, session, user)


def _inbox(
    request: Request, session: Session, user: User, *, problem: str | None = None, status: int = 200
) -> HTMLResponse:
    items, _ = notifications.notification_list(
        session, user=user, unread=None, before=None, limit=SHOWN
    )
    return render(
        request,
        "notifications/inbox.html",
        {"items": items, "problem": problem, "reminder_minutes": user.reminder_minutes},
        user=user,
        status_code=status,
    )


@router.post("/me/reminders", dependencies=[Csrf])
def save_reminders(
    request: Request,
    session: SessionDep,
    user: PageUser,
    minutes: Annotated[str, Form(max_length=100)] = "",
    language: Annotated[str, Form(max_length=8)] = "en",
) -> Response:
    """When I am reminded before a booking (minutes, comma separated) and in which language."""
    try:
        offsets = parse_offsets(minutes)
    except AppError as exc:
        return _inbox(request, session, user, problem=exc.message, status=exc.status_code)
    user.reminder_minutes = ",".join(str(m) for m in offsets)
    user.language = "zh" if language == "zh" else "en"
    session.add(user)
    return back_to("/me/notifications", "reminders-saved")


@router.post("/me/notifications/read-all", dependencies=[Csrf])
def read_all(session: SessionDep, user: PageUser) -> Response:
    """Mark every unread notification read."""
    notifications.notifications_mark_all_read(session, user=user)
    return back_to("/me/notifications", "notifications-read")


@router.post("/me/notifications/{notification_id}/read", dependencies=[Csrf])
def read_one(session: SessionDep, user: PageUser, notification_id: Id) -> Response:
    """Mark one notification read."""
    notifications.notification_mark_read(session, user=user, notification_id=notification_id)
    return back_to("/me/notifications")
