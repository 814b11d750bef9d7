"""Check-in at the instrument, for instruments no gateway watches (and any other).

The kiosk is a page on a tablet beside the instrument, or a QR code printed on it. The
booker checks in, signed in or with the PIN their booking shows, and checks out when done;
an operator can record a start and an end by hand, with a reason. Each record is a usage
session like a gateway's (source `kiosk` or `manual`), matched to its booking, billed by
the same policy and counted in the assessment; where a gateway also recorded the booking,
its session outranks these (billing reads the gateway's).

Refusals say why: no booking of yours now, a PIN that is not for the booking running now,
a booking that starts later (and when check-in opens), someone else's PIN. Wrong PINs are
counted per instrument: after too many, the kiosk waits before it takes another.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from booking.access import manages
from booking.attendance import booking_pin
from booking.models import Booking, BookingStatus, not_training_hold
from booking.reminders import Reminded, register, remind, text
from core.audit import audit_record
from core.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests
from core.models import SignInFailure, User
from core.timeutil import local_text, utcnow
from instruments.models import Instrument, Lab
from instruments.service import instrument_get
from telemetry.models import UsageKind, UsageReview, UsageSession, UsageSource
from telemetry.usage import close_session, session_closed_event

# A booker may check in this long before their booking starts.
EARLY_CHECK_IN = timedelta(minutes=15)
# Wrong PINs per instrument in PIN_WINDOW before the kiosk waits.
PIN_FAILURES = 10
PIN_WINDOW = timedelta(minutes=15)
MANUAL_REASON_MIN = 3


class CheckInRefused(Conflict):
    """A check-in or check-out that cannot be taken; the message says why (409)."""


class WrongPin(CheckInRefused):
    """A PIN for no booking running now: refused, and counted (the count is committed)."""

    commit_first = True


@dataclass(frozen=True)
class KioskState:
    instrument: Instrument
    booking: Booking | None  # the booking running now (or starting within EARLY_CHECK_IN)
    open_session: UsageSession | None
    next_start: datetime | None  # the next booking's start, later today or after


def _current_bookings(session: Session, instrument_id: int, now: datetime) -> list[Booking]:
    return list(
        session.exec(
            select(Booking)
            .where(
                Booking.instrument_id == instrument_id,
                Booking.status == BookingStatus.confirmed,
                col(Booking.start_at) <= now + EARLY_CHECK_IN,
                col(Booking.end_at) > now,
            )
            .order_by(col(Booking.start_at))
        ).all()
    )


def _open_session(session: Session, instrument_id: int) -> UsageSession | None:
    return session.exec(
        select(UsageSession).where(
            UsageSession.instrument_id == instrument_id, col(UsageSession.end_at).is_(None)
        )
    ).first()


def kiosk_state(session: Session, *, instrument_id: int, now: datetime | None = None) -> KioskState:
    """What the kiosk shows: the booking now, whether someone is checked in, the next one."""
    now = now or utcnow()
    instrument = instrument_get(session, instrument_id)
    current = _current_bookings(session, instrument_id, now)
    running = next((b for b in current if b.start_at <= now), current[0] if current else None)
    next_start = session.exec(
        select(func.min(Booking.start_at)).where(
            Booking.instrument_id == instrument_id,
            Booking.status == BookingStatus.confirmed,
            col(Booking.start_at) > now,
        )
    ).one()
    return KioskState(instrument, running, _open_session(session, instrument_id), next_start)


def _pin_key(instrument_id: int) -> str:
    return f"kiosk-pin:{instrument_id}"


def _pin_wait(session: Session, instrument_id: int, now: datetime) -> int:
    count, oldest = session.exec(
        select(func.count(), func.min(SignInFailure.at)).where(
            SignInFailure.email == _pin_key(instrument_id), col(SignInFailure.at) > now - PIN_WINDOW
        )
    ).one()
    if count < PIN_FAILURES or oldest is None:
        return 0
    if oldest.tzinfo is None:  # SQLite's aggregate loses the column's type
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return max(math.ceil((oldest + PIN_WINDOW - now).total_seconds()), 1)


def _pin_matches(booking: Booking, pin: str) -> bool:
    assert booking.id is not None
    return hmac.compare_digest(booking_pin(booking.id), pin)


def _find_booking(
    session: Session,
    *,
    instrument_id: int,
    user: User | None,
    pin: str | None,
    address: str,
    now: datetime,
) -> Booking:
    """The booking a check-in is for, or CheckInRefused with the reason."""
    candidates = _current_bookings(session, instrument_id, now)
    if pin:
        pin = pin.strip()
        if not (pin.isdigit() and len(pin) == 6):
            raise Invalid("pin: six digits, as your booking shows it")
        wait = _pin_wait(session, instrument_id, now)
        if wait:
            raise TooManyRequests(
                f"too many wrong PINs at this instrument; try again in {max(wait // 60, 1)} minute(s)",
                retry_after=wait,
            )
        found = next((b for b in candidates if _pin_matches(b, pin)), None)
        if found is None:
            # Counted in its own transaction's rows; the refusal rolls back nothing else.
            session.add(SignInFailure(email=_pin_key(instrument_id), address=address[:64], at=now))
            session.flush()
            raise WrongPin("this PIN is not for a booking of this instrument now")
        if user is not None and found.user_id != user.id:
            raise CheckInRefused(
                "this PIN is for someone else's booking; each booker checks in with their own"
            )
        return found
    if user is None:
        raise Invalid("pin: sign in, or give the PIN your booking shows")
    own = [b for b in candidates if b.user_id == user.id]
    if own:
        return own[0]
    later = session.exec(
        select(func.min(Booking.start_at)).where(
            Booking.instrument_id == instrument_id,
            Booking.user_id == user.id,
            Booking.status == BookingStatus.confirmed,
            col(Booking.start_at) > now,
        )
    ).one()
    if later is not None:
        raise CheckInRefused(
            f"your booking has not started: check in from {local_text(later - EARLY_CHECK_IN)}",
            opens_at=(later - EARLY_CHECK_IN).isoformat(),
        )
    raise CheckInRefused("you have no booking of this instrument now")


def check_in(
    session: Session,
    *,
    instrument_id: int,
    user: User | None,
    pin: str | None = None,
    address: str = "",
    now: datetime | None = None,
) -> UsageSession:
    """Start a kiosk session for the booking running now (checking in twice is the same
    check-in); refused, with the reason, when there is nothing to check in to."""
    now = now or utcnow()
    instrument_get(session, instrument_id, for_update=True)
    booking = _find_booking(
        session, instrument_id=instrument_id, user=user, pin=pin, address=address, now=now
    )
    current = _open_session(session, instrument_id)
    if current is not None:
        if current.booking_id == booking.id:
            return current
        raise CheckInRefused("the instrument is in use; the last user checks out first")
    usage = UsageSession(
        instrument_id=instrument_id,
        user_id=booking.user_id,
        start_at=now,
        last_event_at=now,
        booking_id=booking.id,
        kind=UsageKind.booked,
        review=UsageReview.accepted,
        source=UsageSource.kiosk,
        recorded_by_id=user.id if user else None,
    )
    session.add(usage)
    session.flush()
    audit_record(
        session,
        actor_id=user.id if user else None,
        action="usage.check_in",
        entity="usage_session",
        entity_id=usage.id,
        after={"booking_id": booking.id, "instrument_id": instrument_id, "by_pin": bool(pin)},
    )
    return usage


def check_out(
    session: Session,
    *,
    instrument_id: int,
    user: User | None,
    pin: str | None = None,
    now: datetime | None = None,
) -> UsageSession:
    """End the kiosk session open on the instrument: its booker (signed in or with the
    booking's PIN) or a manager of the lab."""
    now = now or utcnow()
    instrument = instrument_get(session, instrument_id, for_update=True)
    usage = _open_session(session, instrument_id)
    if usage is None or usage.source != UsageSource.kiosk:
        raise CheckInRefused("nobody is checked in at this instrument")
    booking = session.get(Booking, usage.booking_id) if usage.booking_id else None
    allowed = (user is not None and (user.id == usage.user_id or manages(user, instrument))) or (
        pin is not None and booking is not None and _pin_matches(booking, pin.strip())
    )
    if not allowed:
        raise CheckInRefused("only the person checked in (or their PIN) checks out")
    close_session(session, usage, at=now, reason="checked_out")
    session.flush()
    audit_record(
        session,
        actor_id=user.id if user else None,
        action="usage.check_out",
        entity="usage_session",
        entity_id=usage.id,
        after={"end": now.isoformat()},
    )
    return usage


def usage_record_manual(
    session: Session,
    *,
    user: User,
    instrument_id: int,
    start: datetime,
    end: datetime,
    reason: str,
    booking_id: int | None = None,
    person_email: str | None = None,
    now: datetime | None = None,
) -> UsageSession:
    """An operator's record of use, for a booking or for a walk-up by a named person."""
    now = now or utcnow()
    instrument = instrument_get(session, instrument_id, for_update=True)
    if not manages(user, instrument):
        raise Forbidden("only a manager of the instrument's lab records use by hand")
    reason = reason.strip()
    if len(reason) < MANUAL_REASON_MIN:
        raise Invalid("reason: say why the use is recorded by hand")
    if end <= start:
        raise Invalid("end: must be after start")
    if end > now + timedelta(minutes=5):
        raise Invalid("end: use is recorded once it has happened, not ahead")
    if end - start > timedelta(days=2):
        raise Invalid("end: at most two days after start")
    booking: Booking | None = None
    if booking_id is not None:
        booking = session.get(Booking, booking_id)
        if booking is None or booking.instrument_id != instrument_id:
            raise NotFound(f"no booking {booking_id} of this instrument")
        person_id = booking.user_id
    elif person_email:
        person = session.exec(
            select(User).where(User.email == person_email.strip().lower())
        ).first()
        if person is None:
            raise Invalid("person_email: no account has this email")
        person_id = person.id or 0
    else:
        raise Invalid("booking_id: give the booking, or the person_email of a walk-up")
    usage = UsageSession(
        instrument_id=instrument_id,
        user_id=person_id,
        start_at=start,
        end_at=end,
        last_event_at=end,
        booking_id=booking.id if booking else None,
        kind=UsageKind.booked if booking else UsageKind.walk_up,
        review=UsageReview.accepted,
        source=UsageSource.manual,
        recorded_by_id=user.id,
        note=reason[:300],
        closed_reason="recorded",
    )
    if booking is not None and end > booking.end_at:
        usage.overtime_minutes = int((end - booking.end_at).total_seconds() // 60)
    session.add(usage)
    session.flush()
    session_closed_event(session, usage)
    audit_record(
        session,
        actor_id=user.id,
        action="usage.record_manual",
        entity="usage_session",
        entity_id=usage.id,
        after={
            "booking_id": usage.booking_id,
            "user_id": person_id,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "reason": reason[:300],
        },
    )
    return usage


# After a booking starts with no check-in, its booker is reminded within this window.
CHECK_IN_NUDGE_AFTER = timedelta(minutes=5)
CHECK_IN_NUDGE_UNTIL = timedelta(minutes=30)


def check_in_nudges(session: Session, now: datetime, out: Reminded) -> None:
    """A reminder pass: a booking that started a few minutes ago with no session of any
    source (kiosk, gateway, operator) reminds its booker to check in, with the PIN and the
    lab's release rule."""
    used = select(UsageSession.id).where(UsageSession.booking_id == Booking.id).exists()
    rows = session.exec(
        select(Booking, Instrument.name, User, Lab.release_unchecked_minutes)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .join(User, col(User.id) == Booking.user_id)
        .where(
            Booking.status == BookingStatus.confirmed,
            col(Booking.start_at) <= now - CHECK_IN_NUDGE_AFTER,
            col(Booking.start_at) > now - CHECK_IN_NUDGE_UNTIL,
            col(Booking.end_at) > now,
            not_training_hold(),
            col(User.is_active).is_(True),
            ~used,
        )
    ).all()
    for booking, instrument_name, person, release in rows:
        if booking.id is None or person.id is None:
            continue
        language = person.language
        values = {
            "instrument": instrument_name,
            "start": local_text(booking.start_at),
            "pin": booking_pin(booking.id),
            "release": text("release", language, minutes=release) if release else "",
        }
        out.count(
            "check_in",
            remind(
                session,
                key=f"reminder:check_in:{booking.id}:{int(booking.start_at.timestamp())}",
                user_id=person.id,
                kind="reminder_check_in",
                subject=text("check_in", language, **values),
                body=text("check_in_body", language, **values),
                data={"booking_id": booking.id},
                booking_id=booking.id,
            ),
        )


register(check_in_nudges)
