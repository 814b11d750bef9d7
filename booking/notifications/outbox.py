"""The notification outbox: every message to a person is a row first, sent later by a mailer."""

from __future__ import annotations

from sqlmodel import Session

from booking.notifications.models import Notification


def notify(
    session: Session,
    *,
    user_id: int,
    kind: str,
    subject: str,
    body: str = "",
    data: dict | None = None,
    booking_id: int | None = None,
) -> Notification:
    """Add one notification to the outbox and flush it (the caller's transaction commits)."""
    note = Notification(
        user_id=user_id,
        kind=kind[:64],
        subject=subject[:300],
        body=body[:10000],
        data=data or {},
        booking_id=booking_id,
    )
    session.add(note)
    session.flush()
    return note
