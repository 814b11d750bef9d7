"""The notification outbox over HTTP: a person lists and reads theirs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from booking.notifications import service as notifications
from booking.notifications.schemas import MarkedRead, NotificationPage, NotificationPublic
from core.deps import CurrentUser, SessionDep
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from core.params import only_params
from core.routing import UnitOfWorkRoute

router = APIRouter(route_class=UnitOfWorkRoute)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get(
    "/notifications",
    response_model=NotificationPage,
    tags=["notifications"],
    dependencies=[Depends(only_params("unread", "limit", "next"))],
)
def list_notifications(
    session: SessionDep,
    user: CurrentUser,
    unread: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> NotificationPage:
    """Your notifications, newest first; `unread=true` for the unread ones only."""
    items, last = notifications.notification_list(
        session, user=user, unread=unread, before=decode_cursor(next), limit=limit
    )
    return NotificationPage(
        items=[NotificationPublic.of(n) for n in items],
        next=encode_cursor(last) if last is not None else None,
        unread=notifications.notification_unread_count(session, user=user),
    )


@router.post(
    "/notifications/{notification_id}/read",
    response_model=NotificationPublic,
    tags=["notifications"],
)
def read_notification(
    session: SessionDep, user: CurrentUser, notification_id: Id
) -> NotificationPublic:
    """Mark one of your notifications read."""
    note = notifications.notification_mark_read(session, user=user, notification_id=notification_id)
    return NotificationPublic.of(note)


@router.post("/notifications/read-all", response_model=MarkedRead, tags=["notifications"])
def read_all_notifications(session: SessionDep, user: CurrentUser) -> MarkedRead:
    """Mark all your notifications read."""
    return MarkedRead(marked=notifications.notifications_mark_all_read(session, user=user))
