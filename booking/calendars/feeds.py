"""iCalendar (RFC 5545) feeds: an instrument's busy time, and one person's bookings.

A feed is computed from a few columns per row; the ETag is a hash of exactly those
columns (and of the names the feed shows), so an unchanged feed answers 304 without
being rendered. Writing the text is `booking.calendars.format`'s.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from booking.calendars.format import UID_DOMAIN, Feed, FeedEvent
from booking.models import ACTIVE_STATUSES, Booking, BookingStatus
from core.errors import NotFound
from core.models import User
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.models import Blackout, BlackoutKind, Institution, Instrument, Lab
from instruments.service import instrument_get

# How far back a feed reaches: clients keep what they saw; older events need not be resent.
INSTRUMENT_PAST_DAYS = 30
USER_PAST_DAYS = 90
# A cancelled booking stays in its owner's feed this long, so every client sees it go.
CANCELLED_KEEP_DAYS = 30
# Blackouts can be set far ahead; a feed stops here.
FUTURE_DAYS = 3 * 365

# Statuses that kept an instrument busy: shown in its public feed.
BUSY_STATUSES = (*ACTIVE_STATUSES, BookingStatus.completed, BookingStatus.no_show)
ENDED_STATUSES = (
    BookingStatus.cancelled,
    BookingStatus.rejected,
    BookingStatus.expired,
    BookingStatus.displaced,
)
ICAL_STATUS = {
    BookingStatus.pending: "TENTATIVE",
    BookingStatus.confirmed: "CONFIRMED",
    BookingStatus.completed: "CONFIRMED",
    BookingStatus.no_show: "CONFIRMED",
    **{status: "CANCELLED" for status in ENDED_STATUSES},
}
BLACKOUT_SUMMARY = {
    BlackoutKind.maintenance: "Maintenance",
    BlackoutKind.internal: "Internal use",
    BlackoutKind.imported: "Busy",
}


class FeedNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no calendar feed with this token")


def _uid(kind: str, ident: object) -> str:
    return f"{kind}-{ident}@{UID_DOMAIN}"


def imported_uid(source_id: int | None, source_uid: str | None, start: datetime) -> str:
    """A UID for imported busy time that survives re-imports (rows may be replaced)."""
    key = f"{source_uid or ''}|{start.astimezone(UTC).isoformat()}"
    return _uid(f"imported-{source_id}", hashlib.sha1(key.encode()).hexdigest()[:16])


# ---------------------------------------------------------------------------- instrument feed


def instrument_feed(session: Session, *, instrument_id: int, now: datetime | None = None) -> Feed:
    """The instrument's busy time (bookings and blackouts) without anyone's identity."""
    instrument = instrument_get(session, instrument_id)
    now = now or utcnow()
    since, until = now - timedelta(days=INSTRUMENT_PAST_DAYS), now + timedelta(days=FUTURE_DAYS)
    # Plain SQLAlchemy selects: sqlmodel's select() is typed for at most four columns.
    bookings = session.execute(
        sa_select(
            col(Booking.id),
            col(Booking.start_at),
            col(Booking.end_at),
            col(Booking.status),
            col(Booking.version),
            col(Booking.created_at),
            col(Booking.updated_at),
        )
        .where(
            col(Booking.instrument_id) == instrument_id,
            col(Booking.status).in_(BUSY_STATUSES),
            col(Booking.end_at) > since,
            col(Booking.start_at) < until,
        )
        .order_by(col(Booking.start_at), col(Booking.id))
    ).all()
    blackouts = session.execute(
        sa_select(
            col(Blackout.id),
            col(Blackout.start_at),
            col(Blackout.end_at),
            col(Blackout.kind),
            col(Blackout.source_id),
            col(Blackout.source_uid),
            col(Blackout.created_at),
        )
        .where(
            col(Blackout.instrument_id) == instrument_id,
            col(Blackout.end_at) > since,
            col(Blackout.start_at) < until,
        )
        .order_by(col(Blackout.start_at), col(Blackout.id))
    ).all()
    events = [
        FeedEvent(
            uid=_uid("booking", b_id),
            start=start,
            end=end,
            # Busy time only: never the booker, the purpose or the status detail.
            summary="Booked",
            status="TENTATIVE" if status == BookingStatus.pending else "CONFIRMED",
            sequence=version,
            stamp=updated,
            created=created,
        )
        for b_id, start, end, status, version, created, updated in bookings
    ]
    for o_id, start, end, kind, source_id, source_uid, created in blackouts:
        uid = (
            imported_uid(source_id, source_uid, start)
            if kind == BlackoutKind.imported
            else _uid("blackout", o_id)
        )
        events.append(
            FeedEvent(
                uid=uid,
                start=start,
                end=end,
                summary=BLACKOUT_SUMMARY.get(kind, "Unavailable"),
                status="CONFIRMED",
                sequence=0,
                stamp=created,
                created=created,
            )
        )
    events.sort(key=lambda e: (e.start, e.uid))
    return Feed(
        name=f"labshare: {instrument.name} ({instrument.code})",
        zone=get_settings().timezone,
        events=events,
        extra=(str(instrument.updated_at),),
    )


# ---------------------------------------------------------------------------------- user feed


def user_by_feed_token(session: Session, feed_token: str) -> User:
    """The active user whose secret feed token this is, or FeedNotFound."""
    user = session.exec(select(User).where(User.feed_token == feed_token)).first()
    if user is None or not user.is_active:
        raise FeedNotFound()
    return user


def user_feed(
    session: Session, *, feed_token: str, base_url: str, now: datetime | None = None
) -> Feed:
    """One person's bookings; recently cancelled ones as STATUS:CANCELLED so clients drop them."""
    user = user_by_feed_token(session, feed_token)
    now = now or utcnow()
    since = now - timedelta(days=USER_PAST_DAYS)
    keep_cancelled = now - timedelta(days=CANCELLED_KEEP_DAYS)
    rows = session.execute(
        sa_select(
            Booking,
            col(Instrument.code),
            col(Instrument.name),
            col(Instrument.location),
            col(Lab.name),
            col(Institution.name),
        )
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .join(Institution, col(Institution.id) == Lab.institution_id)
        .where(
            col(Booking.user_id) == user.id,
            col(Booking.end_at) > since,
            col(Booking.start_at) < now + timedelta(days=FUTURE_DAYS),
            or_(
                col(Booking.status).not_in(ENDED_STATUSES),
                col(Booking.updated_at) >= keep_cancelled,
            ),
        )
        .order_by(col(Booking.start_at), col(Booking.id))
    ).all()
    base = base_url.rstrip("/")
    events = []
    for booking, code, name, location, lab_name, institution_name in rows:
        summary = name if booking.status != BookingStatus.pending else f"{name} (awaiting approval)"
        link = f"{base}/instruments/{booking.instrument_id}"
        lines = [
            f"Purpose: {booking.purpose}" if booking.purpose else "",
            f"Instrument: {name} ({code})",
            f"Booking {booking.id}: {booking.status.value}",
            link,
        ]
        events.append(
            FeedEvent(
                uid=_uid("booking", booking.id),
                start=booking.start_at,
                end=booking.end_at,
                summary=summary,
                status=ICAL_STATUS.get(booking.status, "CONFIRMED"),
                sequence=booking.version,
                stamp=booking.updated_at,
                created=booking.created_at,
                location=", ".join(p for p in (location, lab_name, institution_name) if p),
                description="\n".join(line for line in lines if line),
                url=link,
            )
        )
    return Feed(
        name="labshare: my bookings",
        zone=get_settings().timezone,
        events=events,
        extra=(base, str(user.id)),
    )


def feed_token_rotate(session: Session, *, user: User) -> str:
    """Give the user a new secret feed token; the old feed URL stops working."""
    user.feed_token = secrets.token_urlsafe(24)
    session.add(user)
    session.flush()
    return user.feed_token
