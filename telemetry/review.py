"""Held usage: sessions the ingest would not bill on a gateway's word alone.

The lab confirms one (saying whose it was; it is then matched to that person's booking,
if any, and billed like any other) or dismisses it (never billed). Both are audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from booking.attendance import booking_complete
from booking.models import Booking, BookingStatus
from core.audit import audit_record
from core.errors import Conflict, Forbidden, NotFound
from core.models import Role, User
from core.timeutil import utcnow
from instruments.models import Instrument, Lab
from telemetry.badges import known_to_lab
from telemetry.models import UsageKind, UsageReview, UsageSession
from telemetry.usage import EARLY_START


class UsageNotFound(NotFound):
    def __init__(self, usage_id: int) -> None:
        super().__init__(f"no usage session {usage_id}")


def _held_of_lab(session: Session, *, actor: User, usage_id: int) -> tuple[UsageSession, Lab]:
    usage = session.get(UsageSession, usage_id)
    instrument = session.get(Instrument, usage.instrument_id) if usage else None
    lab = session.get(Lab, instrument.lab_id) if instrument else None
    if usage is None or lab is None:
        raise UsageNotFound(usage_id)
    if not (
        actor.role == Role.network_admin
        or (actor.role == Role.lab_manager and actor.lab_id == lab.id)
    ):
        raise UsageNotFound(usage_id)  # someone else's lab: as good as absent
    if usage.review != UsageReview.held:
        raise Conflict(f"this session is {usage.review.value}, not held", review=usage.review)
    if usage.end_at is None:
        raise Conflict("the session is still open; review it once it has ended")
    return usage, lab


def _audit(session: Session, actor: User, usage: UsageSession, action: str, **after: object):
    audit_record(
        session,
        actor_id=actor.id,
        action=f"usage.{action}",
        entity="usage_session",
        entity_id=usage.id,
        before={"review": "held", "hold_reason": usage.hold_reason},
        after={"review": usage.review.value, **after},
    )


def usage_confirm(
    session: Session, *, actor: User, usage_id: int, email: str, now: datetime | None = None
) -> UsageSession:
    """Confirm a held session as `email`'s use: matched to their booking, then billable."""
    usage, lab = _held_of_lab(session, actor=actor, usage_id=usage_id)
    person = session.exec(select(User).where(User.email == email.strip().lower())).first()
    # A lab may say only that one of its own people used it (the same rule as for badges).
    stranger = (
        person is not None
        and actor.role != Role.network_admin
        and not known_to_lab(session, lab, person)
    )
    if person is None or person.id is None or stranger:
        raise NotFound("no one with that email uses this lab")
    if person.institution_id is None:
        raise Forbidden("that person belongs to no institution, so nobody could be billed")
    booking = session.exec(
        select(Booking)
        .where(
            Booking.instrument_id == usage.instrument_id,
            Booking.user_id == person.id,
            col(Booking.status).in_(
                [BookingStatus.confirmed, BookingStatus.completed, BookingStatus.no_show]
            ),
            col(Booking.start_at) <= usage.start_at + EARLY_START,
            col(Booking.end_at) > usage.start_at,
        )
        .order_by(col(Booking.start_at))
    ).first()
    usage.user_id = person.id
    usage.booking_id = booking.id if booking else None
    usage.kind = UsageKind.booked if booking else UsageKind.walk_up
    if booking is not None:
        end = usage.end_at or usage.start_at
        usage.overtime_minutes = max(0, int((end - booking.end_at).total_seconds() // 60))
        if booking.status == BookingStatus.no_show:  # it was used after all
            booking_complete(session, booking=booking, now=now or utcnow())
    usage.review = UsageReview.confirmed
    usage.reviewed_by_id = actor.id
    usage.reviewed_at = now or utcnow()
    session.add(usage)
    session.flush()
    _audit(session, actor, usage, "confirm", user_id=person.id, booking_id=usage.booking_id)
    return usage


def usage_dismiss(
    session: Session, *, actor: User, usage_id: int, reason: str = "", now: datetime | None = None
) -> UsageSession:
    """Dismiss a held session: it stays on record and is never billed."""
    usage, _lab = _held_of_lab(session, actor=actor, usage_id=usage_id)
    usage.review = UsageReview.dismissed
    usage.reviewed_by_id = actor.id
    usage.reviewed_at = now or utcnow()
    session.add(usage)
    session.flush()
    _audit(session, actor, usage, "dismiss", reason=reason[:500])
    return usage
