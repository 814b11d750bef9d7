"""The notification outbox: a person lists and reads theirs; a mailer sends those not yet sent.

`booking.notify.notify()` adds the rows; this module reads them and delivers them.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from booking.notifications.mailer import Mailer, MailerUnavailable, build_message, parse_smtp_url
from booking.notifications.models import Notification
from core.db import get_engine, session_scope
from core.errors import NotFound
from core.models import User
from core.timeutil import utcnow

log = logging.getLogger(__name__)

# A message a server refused this often is not tried again (its row says why).
MAX_ATTEMPTS = 5
SEND_BATCH = 50
# How long a SQLite sender holds the rows it is sending (it marks them sent well before).
SEND_LEASE = timedelta(minutes=5)


class NotificationNotFound(NotFound):
    def __init__(self, notification_id: int) -> None:
        super().__init__(f"no notification {notification_id}")


def notification_list(
    session: Session, *, user: User, unread: bool | None, before: int | None, limit: int
) -> tuple[list[Notification], int | None]:
    """The user's notifications, newest first; returns the page and the id to continue below."""
    query = select(Notification).where(Notification.user_id == user.id)
    if unread is True:
        query = query.where(col(Notification.read_at).is_(None))
    elif unread is False:
        query = query.where(col(Notification.read_at).is_not(None))
    if before is not None:
        query = query.where(col(Notification.id) < before)
    rows = session.exec(query.order_by(col(Notification.id).desc()).limit(limit + 1)).all()
    items = list(rows[:limit])
    more = len(rows) > limit and items
    return items, (items[-1].id if more else None)


def notification_unread_count(session: Session, *, user: User) -> int:
    """How many of the user's notifications are unread."""
    return session.exec(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user.id, col(Notification.read_at).is_(None))
    ).one()


def notification_mark_read(
    session: Session, *, user: User, notification_id: int, now: datetime | None = None
) -> Notification:
    """Mark one of the user's notifications read (again is fine); others' are not found."""
    note = session.get(Notification, notification_id)
    if note is None or note.user_id != user.id:
        raise NotificationNotFound(notification_id)
    if note.read_at is None:
        note.read_at = now or utcnow()
        session.add(note)
        session.flush()
    return note


def notifications_mark_all_read(
    session: Session, *, user: User, now: datetime | None = None
) -> int:
    """Mark all the user's unread notifications read; returns how many."""
    result = session.exec(  # type: ignore[call-overload]
        update(Notification)
        .where(col(Notification.user_id) == user.id, col(Notification.read_at).is_(None))
        .values(read_at=now or utcnow())
    )
    return int(result.rowcount or 0)


def notifications_pending_count(session: Session) -> int:
    """Notifications not sent yet (whatever their attempts)."""
    return session.exec(
        select(func.count()).select_from(Notification).where(col(Notification.sent_at).is_(None))
    ).one()


# ----------------------------------------------------------------------------------- sending


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    failures: dict[int, str] = field(default_factory=dict)


def _attempts(note: Notification) -> int:
    delivery = (note.data or {}).get("delivery") or {}
    return int(delivery.get("attempts", 0)) if isinstance(delivery, dict) else 0


def _claim(
    session: Session, *, after: int, batch: int, lock: bool, now: datetime | None = None
) -> Sequence[tuple[Notification, str]]:
    query = (
        select(Notification, User.email)
        .join(User, col(User.id) == Notification.user_id)
        .where(
            col(Notification.sent_at).is_(None),
            col(Notification.id) > after,
            col(User.is_active).is_(True),
        )
        .order_by(col(Notification.id))
        .limit(batch)
    )
    if lock:
        # Two senders on PostgreSQL split the outbox instead of sending twice.
        query = query.with_for_update(of=Notification, skip_locked=True)  # type: ignore[arg-type]
        return session.exec(query).all()
    # SQLite: this runs in a write transaction (one writer at a time), so the rows found
    # free here are this sender's alone once leased; another sender skips them.
    assert now is not None
    query = query.where(
        or_(col(Notification.lease_until).is_(None), col(Notification.lease_until) < now)
    )
    rows = session.exec(query).all()
    if rows:
        session.exec(  # type: ignore[call-overload]
            update(Notification)
            .where(col(Notification.id).in_([note.id for note, _ in rows]))
            .values(lease_until=now + SEND_LEASE)
        )
    return rows


def _deliver(
    mailer: Mailer, sender: str, rows: Sequence[tuple[Notification, str]]
) -> tuple[list[int], dict[int, str], MailerUnavailable | None]:
    sent: list[int] = []
    failed: dict[int, str] = {}
    for note, email in rows:
        assert note.id is not None
        if _attempts(note) >= MAX_ATTEMPTS:
            continue
        message = build_message(
            sender=sender,
            to=email,
            subject=f"[labshare] {note.subject}",
            body=note.body,
            message_id=f"<notification-{note.id}.{int(note.created_at.timestamp())}@labshare>",
        )
        try:
            mailer.send(message)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            failed[note.id] = str(exc)[:300]
            continue
        except MailerUnavailable as exc:
            return sent, failed, exc
        sent.append(note.id)
    return sent, failed, None


def _record(session: Session, *, sent: list[int], failed: dict[int, str], now: datetime) -> None:
    if sent:
        session.exec(  # type: ignore[call-overload]
            update(Notification)
            .where(col(Notification.id).in_(sent), col(Notification.sent_at).is_(None))
            .values(sent_at=now)
        )
    for note_id, error in failed.items():
        note = session.get(Notification, note_id)
        if note is not None:
            attempts = _attempts(note) + 1
            note.data = {**(note.data or {}), "delivery": {"attempts": attempts, "error": error}}
            session.add(note)


def notifications_send_pending(
    *,
    smtp_url: str,
    engine: Engine | None = None,
    limit: int | None = None,
    batch: int = SEND_BATCH,
) -> SendReport:
    """Send unsent notifications over SMTP and mark them sent; MailerUnavailable stops the run
    (what was sent before it is marked)."""
    config = parse_smtp_url(smtp_url)
    engine = engine or get_engine()
    postgres = engine.dialect.name == "postgresql"
    report = SendReport()
    after = 0
    with Mailer(config) as mailer:
        while limit is None or report.sent + report.failed < limit:
            size = batch if limit is None else min(batch, limit - report.sent - report.failed)
            if postgres:
                # Rows stay locked while their batch is sent, then are marked in the same
                # transaction.
                with session_scope(engine=engine) as session:
                    rows = _claim(session, after=after, batch=size, lock=True)
                    sent, failed, stop = _deliver(mailer, config.sender, rows)
                    _record(session, sent=sent, failed=failed, now=utcnow())
            else:
                # SQLite has one writer: lease the rows, send with no lock held, then mark.
                with session_scope(engine=engine) as session:
                    rows = _claim(session, after=after, batch=size, lock=False, now=utcnow())
                sent, failed, stop = _deliver(mailer, config.sender, rows)
                with session_scope(engine=engine) as session:
                    _record(session, sent=sent, failed=failed, now=utcnow())
                    # What this pass did not send (refused, or the server went away) is
                    # free again for the next pass.
                    session.exec(  # type: ignore[call-overload]
                        update(Notification)
                        .where(
                            col(Notification.id).in_([note.id for note, _ in rows]),
                            col(Notification.sent_at).is_(None),
                        )
                        .values(lease_until=None)
                    )
            report.sent += len(sent)
            report.failed += len(failed)
            report.failures.update(failed)
            if stop is not None:
                raise MailerUnavailable(f"{stop} (sent {report.sent} before it failed)")
            if len(rows) < size:
                break
            after = max(note.id or 0 for note, _ in rows)
    return report
