"""The demo history: bookings and usage on the seeded network, then a month's invoice run."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from billing.invoices import invoice_run
from billing.models import Invoice, InvoiceStatus
from booking.intervals import on_grid
from booking.models import ACTIVE_STATUSES, Booking, BookingStatus
from core.models import User
from core.periods import last_month
from core.settings import get_settings
from instruments.models import Instrument, OpeningHours
from instruments.seed import seed_network
from labshare.cli import app
from labshare.demo_history import DEMO_MAX, PAST_DAYS, seed_history
from telemetry.models import UsageKind, UsageSession
from tests.conftest import _empty_all_tables

NOW = datetime(2026, 3, 18, 6, 30, tzinfo=UTC)


def _seeded(engine: Engine, instruments: int = 150) -> None:
    with Session(engine) as session:
        seed_network(session, instruments=instruments, seed=11, researchers=60)
        session.commit()


def _signature(session: Session) -> list[tuple]:
    rows = session.exec(
        select(
            Booking.instrument_id, Booking.user_id, Booking.start_at, Booking.end_at, Booking.status
        ).order_by(col(Booking.instrument_id), col(Booking.start_at))
    ).all()
    return [tuple(r) for r in rows]


def test_history_is_plausible_and_never_overlaps(engine: Engine, session: Session) -> None:
    _seeded(engine)
    summary = seed_history(session, seed=11, now=NOW)
    session.commit()
    bookings = session.exec(select(Booking).order_by(col(Booking.id))).all()
    assert summary.bookings == len(bookings) > 100
    active = {i.id for i in session.exec(select(Instrument)).all() if i.status == "active"}
    assert 0.2 * len(active) <= summary.instruments <= 0.45 * len(active)

    # On each instrument, one booking after another: not even cancelled ones overlap.
    by_instrument: dict[int, list[Booking]] = {}
    for b in bookings:
        by_instrument.setdefault(b.instrument_id, []).append(b)
    tz = get_settings().zone
    instruments = {i.id: i for i in session.exec(select(Instrument)).all()}
    hours: dict[int, list[OpeningHours]] = {}
    for h in session.exec(select(OpeningHours)).all():
        hours.setdefault(h.instrument_id, []).append(h)
    for iid, items in by_instrument.items():
        items.sort(key=lambda b: b.start_at)
        for a, b in itertools.pairwise(items):
            assert a.end_at <= b.start_at, (a.id, b.id)
        step = instruments[iid].slot_step_minutes
        for b in items:
            assert on_grid(b.start_at, step, tz) and on_grid(b.end_at, step, tz)
            start, end = b.start_at.astimezone(tz), b.end_at.astimezone(tz)
            assert any(
                h.weekday == start.weekday() and h.opens <= start.time() and end.time() <= h.closes
                for h in hours[iid]
            ), b.id

    # Statuses follow time: the past is settled, the future is still to come.
    for b in bookings:
        if b.status in (BookingStatus.completed, BookingStatus.no_show):
            assert b.end_at <= NOW
        if b.status == BookingStatus.pending:
            assert b.start_at > NOW and instruments[b.instrument_id].approval_required
            assert b.expires_at is not None and b.expires_at > NOW
        if b.status == BookingStatus.cancelled:
            assert b.cancelled_at is not None and b.cancelled_at <= NOW
        if b.end_at <= NOW:
            assert b.status not in ACTIVE_STATUSES
        assert b.created_at <= NOW
    statuses = {b.status for b in bookings}
    assert {BookingStatus.completed, BookingStatus.no_show, BookingStatus.cancelled} <= statuses
    assert BookingStatus.confirmed in statuses
    past = [b for b in bookings if b.end_at <= NOW and b.status != BookingStatus.cancelled]
    completed = sum(b.status == BookingStatus.completed for b in past)
    assert 0.75 < completed / len(past) < 0.95
    assert min(b.start_at for b in bookings) >= NOW - timedelta(days=PAST_DAYS + 1)
    assert max(b.start_at for b in bookings) <= NOW + timedelta(days=15)

    # The demo logins have bookings of their own, some past, some ahead.
    mine = session.exec(
        select(User.email, Booking.start_at, Booking.end_at)
        .join(User, col(User.id) == Booking.user_id)
        .where(col(User.email).in_(["researcher@demo.labshare", "engineer@demo.labshare"]))
    ).all()
    assert any(s < NOW for _, s, _ in mine) and any(s > NOW for _, s, _ in mine)
    for email in ("researcher@demo.labshare", "engineer@demo.labshare"):
        spans = sorted((s, e) for who, s, e in mine if who == email)
        assert 0 < len(spans) <= DEMO_MAX
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))

    # Usage: booked sessions belong to completed bookings of the same instrument and person.
    by_id = {b.id: b for b in bookings}
    usage = session.exec(select(UsageSession)).all()
    booked = [u for u in usage if u.kind == UsageKind.booked]
    walk_ups = [u for u in usage if u.kind == UsageKind.walk_up]
    assert booked and walk_ups and summary.usage_sessions == len(usage)
    for u in booked:
        b = by_id[u.booking_id]
        assert b.status == BookingStatus.completed
        assert (u.instrument_id, u.user_id) == (b.instrument_id, b.user_id)
        assert u.end_at is not None and b.start_at <= u.start_at <= u.end_at <= NOW
        assert u.overtime_minutes == max(0, int((u.end_at - b.end_at).total_seconds() // 60))
    assert any(u.overtime_minutes > 0 for u in booked)
    assert all(u.booking_id is None and u.end_at and u.end_at <= NOW for u in walk_ups)
    completed_ids = {b.id for b in bookings if b.status == BookingStatus.completed}
    assert {u.booking_id for u in booked} == completed_ids
    # Nobody's usage overlaps another's on one instrument.
    for iid in {u.instrument_id for u in usage}:
        spans = sorted((u.start_at, u.end_at) for u in usage if u.instrument_id == iid)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_same_seed_same_history(engine: Engine) -> None:
    _seeded(engine, instruments=80)
    signatures = []
    for seed in (5, 5, 6):
        with Session(engine) as session:
            seed_history(session, seed=seed, now=NOW)
            signatures.append(_signature(session))
            session.rollback()
    assert signatures[0] == signatures[1] and signatures[0]
    assert signatures[0] != signatures[2]


def test_invoice_run_after_history_makes_draft_invoices(engine: Engine, session: Session) -> None:
    _seeded(engine, instruments=100)
    seed_history(session, seed=3, now=NOW)
    session.commit()
    period = last_month(NOW)
    assert period == "2026-02"
    report = invoice_run(session, period=period)
    session.commit()
    assert report.charges.booking > 0 and report.invoices > 0
    statuses = session.exec(select(Invoice.status).where(Invoice.period == period)).all()
    assert statuses and set(statuses) == {InvoiceStatus.draft}


def test_seed_command_seeds_history_unless_told_not_to(engine: Engine, session: Session) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["seed", "--instruments", "60", "--seed", "4", "--no-history"])
    assert result.exit_code == 0, result.output
    assert session.exec(select(func.count()).select_from(Booking)).one() == 0

    session.rollback()  # end the read before the tables are emptied
    _empty_all_tables(engine)
    result = runner.invoke(app, ["seed", "--instruments", "60", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "seeded history on" in result.stdout and "invoice run" in result.stdout
    assert session.exec(select(func.count()).select_from(Booking)).one() > 0
    assert session.exec(select(func.count()).select_from(Invoice)).one() > 0
