# ruff: noqa: RUF001  (Chinese text uses full-width punctuation on purpose)
"""Reminders: before a booking, at its start when nobody checked in, to managers before a
pending request expires, and (registered by other domains) before a voucher or a
qualification expires.

A pass (`reminders_due`) finds what is due and adds each reminder to the notification
outbox under a key that names it (`reminder:booking:17:60:1765440000`); the key is unique,
and the row is inserted with ON CONFLICT DO NOTHING, so a reminder is one notification
however many passes, in however many processes, find it due at once. The mailer then
sends it once (`notifications_send_pending`). Each is written in its person's language,
with times in the network's zone as people read them.

A pass that comes late sends only the nearest offset due (a booking made 30 minutes ahead
gets the one-hour reminder, not the one-day one too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from booking.access import lab_managers
from booking.attendance import booking_pin
from booking.models import (
    Booking,
    BookingStatus,
    TrainingSeat,
    TrainingSession,
    TrainingSessionStatus,
    not_training_hold,
)
from booking.notifications.models import Notification
from booking.notifications.outbox import add_producer
from core.errors import Invalid
from core.models import User
from core.timeutil import local_text, utcnow
from instruments.models import Instrument, Qualification

# Offsets a person may choose: at most a week ahead, at most five of them.
MAX_OFFSET_MINUTES = 7 * 24 * 60
MAX_OFFSETS = 5
DEFAULT_OFFSETS = (1440, 60)
# Managers are reminded of a pending request this long before it expires.
APPROVAL_WARNING = timedelta(hours=6)
# People are told this long before a qualification (or a voucher) expires.
EXPIRY_WARNING = timedelta(days=14)
# A seat holder is reminded this long before their training session.
TRAINING_NOTICE = timedelta(hours=24)

TEXTS: dict[str, dict[str, str]] = {
    "booking": {
        "en": "Reminder: {instrument} at {start}",
        "zh": "提醒：{start} 使用 {instrument}",
    },
    "booking_body": {
        "en": "Your booking of {instrument} runs from {start} to {end}. At the instrument, "
        "check in at its kiosk with PIN {pin}.",
        "zh": "您预约的 {instrument} 时间为 {start} 至 {end}。到达仪器后，请在旁边的终端用 PIN {pin} 签到。",
    },
    "check_in": {
        "en": "Your booking of {instrument} has started: check in",
        "zh": "您预约的 {instrument} 已开始：请签到",
    },
    "check_in_body": {
        "en": "Your booking started at {start} and nobody has checked in yet. Check in at "
        "the instrument's kiosk with PIN {pin}.{release}",
        "zh": "您的预约已于 {start} 开始，尚未签到。请在仪器旁的终端用 PIN {pin} 签到。{release}",
    },
    "release": {
        "en": " The lab releases a booking nobody checks into within {minutes} minutes.",
        "zh": "实验室规定：开始后 {minutes} 分钟内无人签到的预约将被释放。",
    },
    "approval": {
        "en": "A booking request for {instrument} expires at {expires}",
        "zh": "{instrument} 的预约申请将于 {expires} 过期",
    },
    "approval_body": {
        "en": "A request for {start} to {end} awaits your decision; without one it expires "
        "at {expires}.",
        "zh": "{start} 至 {end} 的预约申请等待您审批；逾期未审将于 {expires} 自动失效。",
    },
    "training": {
        "en": "Training tomorrow: {title} at {start}",
        "zh": "培训提醒：{start} {title}",
    },
    "training_body": {
        "en": "You have a seat in {title}, starting {start}.",
        "zh": "您已报名 {title}，开始时间 {start}。",
    },
    "qualification": {
        "en": "Your qualification for {instrument} expires on {expires}",
        "zh": "您在 {instrument} 上的使用资格将于 {expires} 到期",
    },
    "qualification_body": {
        "en": "After {expires} you can no longer book {instrument}. Ask the lab for a "
        "refresher training before then.",
        "zh": "{expires} 之后您将不能预约 {instrument}。请在此之前向实验室申请复训。",
    },
}


def text(key: str, language: str, **values: Any) -> str:
    """A reminder's text in the person's language (English where there is none)."""
    table = TEXTS[key]
    return table.get(language, table["en"]).format(**values)


def parse_offsets(raw: str) -> list[int]:
    """A person's offsets, largest first: minutes before a booking ("1440,60")."""
    offsets: set[int] = set()
    for part in raw.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit():
            raise Invalid(f"reminder_minutes: {part!r} is not a number of minutes")
        minutes = int(part)
        if not 5 <= minutes <= MAX_OFFSET_MINUTES:
            raise Invalid(f"reminder_minutes: each between 5 and {MAX_OFFSET_MINUTES} minutes")
        offsets.add(minutes)
    if len(offsets) > MAX_OFFSETS:
        raise Invalid(f"reminder_minutes: at most {MAX_OFFSETS} reminders")
    return sorted(offsets, reverse=True)


def _offsets(user: User) -> list[int]:
    try:
        return parse_offsets(user.reminder_minutes)
    except Invalid:
        return list(DEFAULT_OFFSETS)


def remind(
    session: Session,
    *,
    key: str,
    user_id: int,
    kind: str,
    subject: str,
    body: str,
    data: dict[str, Any],
    booking_id: int | None = None,
) -> bool:
    """Add one reminder under `key` unless it is there already; True when added now."""
    table = Notification.__table__  # type: ignore[attr-defined]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(table)
        .values(
            user_id=user_id,
            kind=kind,
            subject=subject[:300],
            body=body[:10000],
            data=data,
            booking_id=booking_id,
            dedupe_key=key[:200],
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    result = session.connection().execute(statement)
    return bool(result.rowcount)


@dataclass
class Reminded:
    added: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, added: bool) -> None:
        if added:
            self.added[kind] = self.added.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.added.values())


def _booking_reminders(session: Session, now: datetime, out: Reminded) -> None:
    rows = session.exec(
        select(Booking, Instrument.name, User)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .join(User, col(User.id) == Booking.user_id)
        .where(
            Booking.status == BookingStatus.confirmed,
            col(Booking.start_at) > now,
            col(Booking.start_at) <= now + timedelta(minutes=MAX_OFFSET_MINUTES),
            not_training_hold(),
            col(User.is_active).is_(True),
        )
    ).all()
    for booking, instrument_name, person in rows:
        due = [m for m in _offsets(person) if now >= booking.start_at - timedelta(minutes=m)]
        if not due or booking.id is None or person.id is None:
            continue
        nearest = min(due)
        # The start is part of the key: a booking moved later is reminded again.
        key = f"reminder:booking:{booking.id}:{nearest}:{int(booking.start_at.timestamp())}"
        values = {
            "instrument": instrument_name,
            "start": local_text(booking.start_at),
            "end": local_text(booking.end_at, with_date=False),
            "pin": booking_pin(booking.id),
        }
        out.count(
            "booking",
            remind(
                session,
                key=key,
                user_id=person.id,
                kind="reminder_booking",
                subject=text("booking", person.language, **values),
                body=text("booking_body", person.language, **values),
                data={"booking_id": booking.id, "minutes_before": nearest},
                booking_id=booking.id,
            ),
        )


def _approval_reminders(session: Session, now: datetime, out: Reminded) -> None:
    rows = session.exec(
        select(Booking, Instrument)
        .join(Instrument, col(Instrument.id) == Booking.instrument_id)
        .where(
            Booking.status == BookingStatus.pending,
            col(Booking.expires_at) > now,
            col(Booking.expires_at) <= now + APPROVAL_WARNING,
        )
    ).all()
    managers: dict[int, list[User]] = {}
    for booking, instrument in rows:
        if instrument.lab_id not in managers:
            managers[instrument.lab_id] = lab_managers(session, instrument.lab_id)
        for manager in managers[instrument.lab_id]:
            if booking.id is None or manager.id is None or booking.expires_at is None:
                continue
            values = {
                "instrument": instrument.name,
                "start": local_text(booking.start_at),
                "end": local_text(booking.end_at, with_date=False),
                "expires": local_text(booking.expires_at),
            }
            out.count(
                "approval",
                remind(
                    session,
                    key=f"reminder:approval:{booking.id}:{manager.id}",
                    user_id=manager.id,
                    kind="reminder_approval",
                    subject=text("approval", manager.language, **values),
                    body=text("approval_body", manager.language, **values),
                    data={"booking_id": booking.id, "instrument_id": instrument.id},
                    booking_id=booking.id,
                ),
            )


def _qualification_reminders(session: Session, now: datetime, out: Reminded) -> None:
    rows = session.exec(
        select(Qualification, Instrument.name, User)
        .join(Instrument, col(Instrument.id) == Qualification.instrument_id)
        .join(User, col(User.id) == Qualification.user_id)
        .where(
            col(Qualification.revoked_at).is_(None),
            col(Qualification.expires_at).is_not(None),
            col(Qualification.expires_at) > now,
            col(Qualification.expires_at) <= now + EXPIRY_WARNING,
            col(User.is_active).is_(True),
        )
    ).all()
    for grant, instrument_name, person in rows:
        if grant.expires_at is None or person.id is None:
            continue
        values = {"instrument": instrument_name, "expires": local_text(grant.expires_at)}
        out.count(
            "qualification",
            remind(
                session,
                key=f"reminder:qualification:{grant.id}:{int(grant.expires_at.timestamp())}",
                user_id=person.id,
                kind="reminder_qualification",
                subject=text("qualification", person.language, **values),
                body=text("qualification_body", person.language, **values),
                data={"qualification_id": grant.id, "instrument_id": grant.instrument_id},
            ),
        )


def _training_reminders(session: Session, now: datetime, out: Reminded) -> None:
    rows = session.exec(
        select(TrainingSeat, TrainingSession, User)
        .join(TrainingSession, col(TrainingSession.id) == TrainingSeat.session_id)
        .join(User, col(User.id) == TrainingSeat.user_id)
        .where(
            TrainingSession.status == TrainingSessionStatus.scheduled,
            col(TrainingSession.start_at) > now,
            col(TrainingSession.start_at) <= now + TRAINING_NOTICE,
            col(User.is_active).is_(True),
        )
    ).all()
    for seat, training, person in rows:
        if person.id is None:
            continue
        values = {"title": training.title, "start": local_text(training.start_at)}
        out.count(
            "training",
            remind(
                session,
                key=f"reminder:training:{seat.id}:{int(training.start_at.timestamp())}",
                user_id=person.id,
                kind="reminder_training",
                subject=text("training", person.language, **values),
                body=text("training_body", person.language, **values),
                data={"training_session_id": training.id},
            ),
        )


ReminderPass = Callable[[Session, datetime, Reminded], None]
# Domains to the right add their passes at start-up: telemetry's nudge to check in, which
# needs its usage sessions, and billing's vouchers.
PASSES: list[ReminderPass] = [
    _booking_reminders,
    _approval_reminders,
    _qualification_reminders,
    _training_reminders,
]


def register(reminder_pass: ReminderPass) -> None:
    """Add a pass that finds another domain's due reminders (it calls `remind`)."""
    if reminder_pass not in PASSES:
        PASSES.append(reminder_pass)


def reminders_due(session: Session, *, now: datetime | None = None) -> Reminded:
    """Add every reminder now due to the outbox (each once, ever); returns what was added."""
    now = now or utcnow()
    out = Reminded()
    for reminder_pass in PASSES:
        reminder_pass(session, now, out)
    return out


def _produce(session: Session) -> dict[str, int]:
    return reminders_due(session).added


# The mailer's command adds due reminders before each send.
add_producer(_produce)
