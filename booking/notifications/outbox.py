"""The notification outbox: every message to a person is a row first, sent later by a mailer."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from booking.notifications.models import Notification

# Passes that add what is due (reminders) to the outbox before each send; the rest of
# booking, and billing, add theirs at start-up, so this room imports none of them.
Producer = Callable[[Session], dict[str, int]]
PRODUCERS: list[Producer] = []


def add_producer(producer: Producer) -> None:
    """Run `producer` before each send (`labshare notifications send`): it adds due
    notifications and returns how many of each kind."""
    if producer not in PRODUCERS:
        PRODUCERS.append(producer)


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
