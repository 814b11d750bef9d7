"""Usage sessions derived from events, and matched to bookings (walk-up, overtime, no-show)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from booking.models import Booking, BookingStatus
from core.db import UTCDateTime
from core.events import emit
from core.models import utcnow
from core.timeutil import to_utc_z
from instruments.models import Instrument, Qualification, qualification_in_force
from telemetry.badges import badge_owners
from telemetry.models import (
    EventType,
    InstrumentLiveState,
    InstrumentState,
    UsageKind,
    UsageReview,
    UsageSession,
)

# A session may start this long before its booking and still count as that booking's use.
EARLY_START = timedelta(minutes=15)
# An open session whose gateway has said nothing for this long is closed where it went quiet.
SILENCE = timedelta(minutes=10)
# A session reported this long after it began is held for the lab: a gateway's backlog is
# normal for an hour or two, a backdated day is not.
LATE_REPORT = timedelta(days=1)
_STATE_EVENTS = {EventType.session_start, EventType.session_end, EventType.status}


@dataclass(slots=True)
class StoredEvent:
    """An event just stored (never a duplicate): the input of usage derivation."""

    gateway_id: int
    message_id: str
    instrument_id: int
    ts: datetime
    type: EventType
    user_badge: str | None = None
    data: dict[str, Any] | None = field(default=None)


@dataclass
class _Context:
    """What one batch's state events need, fetched with a few queries instead of many."""

    open_sessions: dict[int, UsageSession | None]
    users: dict[str, int]  # registered badges only
    bookings: dict[int, list[Booking]]
    needs_qualification: set[int]
    qualified: set[tuple[int, int]]  # (instrument, user)
    received_at: datetime


def _prefetch(
    session: Session, events: list[StoredEvent], instrument_ids: list[int], received_at: datetime
) -> _Context:
    open_sessions: dict[int, UsageSession | None] = dict.fromkeys(instrument_ids)
    for usage in session.exec(
        select(UsageSession)
        .where(col(UsageSession.instrument_id).in_(instrument_ids))
        .where(col(UsageSession.end_at).is_(None))
    ):
        open_sessions[usage.instrument_id] = usage
    # A gateway names people by registered badges only: never by user id.
    users = badge_owners(session, {e.user_badge for e in events if e.user_badge})
    first, last = min(e.ts for e in events), max(e.ts for e in events)
    bookings: dict[int, list[Booking]] = {i: [] for i in instrument_ids}
    for booking in session.exec(
        select(Booking)
        .where(col(Booking.instrument_id).in_(instrument_ids))
        .where(col(Booking.status).in_([BookingStatus.confirmed, BookingStatus.pending]))
        .where(Booking.start_at <= last + EARLY_START)
        .where(Booking.end_at > first)
        .order_by(col(Booking.start_at))
    ):
        bookings[booking.instrument_id].append(booking)
    needs = set(
        session.exec(
            select(Instrument.id).where(
                col(Instrument.id).in_(instrument_ids), col(Instrument.qualification_required)
            )
        ).all()
    )
    qualified: set[tuple[int, int]] = set()
    if needs and users:
        qualified = {
            (i, u)
            for i, u in session.exec(
                select(Qualification.instrument_id, Qualification.user_id).where(
                    col(Qualification.instrument_id).in_(needs),
                    col(Qualification.user_id).in_(set(users.values())),
                    qualification_in_force(),
                )
            ).all()
            if u is not None
        }
    return _Context(
        open_sessions, users, bookings, {i for i in needs if i is not None}, qualified, received_at
    )


def hold_reason(ctx: _Context, event: StoredEvent, user_id: int | None) -> str | None:
    """Why a session starting with `event` cannot be billed without the lab's word."""
    if event.user_badge and user_id is None:
        return f"unknown badge {event.user_badge[:40]!r}"
    if (
        user_id is not None
        and event.instrument_id in ctx.needs_qualification
        and (event.instrument_id, user_id) not in ctx.qualified
    ):
        return "the person is not qualified on this instrument"
    late = ctx.received_at - event.ts
    if late > LATE_REPORT:
        return f"reported {late.total_seconds() / 3600:.0f} h after it started"
    return None


def _match_booking(
    ctx: _Context, instrument_id: int, user_id: int | None, at: datetime
) -> Booking | None:
    """The booking that a use starting at `at` belongs to, if any."""
    candidates = [
        b
        for b in ctx.bookings.get(instrument_id, [])
        if b.start_at <= at + EARLY_START and b.end_at > at
    ]
    if user_id is not None:
        # Where we know who used it, only their own booking counts.
        candidates = [b for b in candidates if b.user_id == user_id]
    return candidates[0] if candidates else None


def _open(session: Session, ctx: _Context, event: StoredEvent) -> UsageSession:
    user_id = ctx.users.get(event.user_badge) if event.user_badge else None
    held = hold_reason(ctx, event, user_id)
    # A held session is nobody's booking until the lab says whose it is.
    booking = None if held else _match_booking(ctx, event.instrument_id, user_id, event.ts)
    usage = UsageSession(
        instrument_id=event.instrument_id,
        gateway_id=event.gateway_id,
        user_id=user_id if user_id is not None else (booking.user_id if booking else None),
        user_badge=event.user_badge,
        start_at=event.ts,
        last_event_at=event.ts,
        booking_id=booking.id if booking else None,
        kind=UsageKind.booked if booking else UsageKind.walk_up,
        review=UsageReview.held if held else UsageReview.accepted,
        hold_reason=held,
    )
    session.add(usage)
    ctx.open_sessions[event.instrument_id] = usage
    return usage


def close_session(session: Session, usage: UsageSession, *, at: datetime, reason: str) -> None:
    """Close an open session at `at`, and note any overtime past its booking (not flushed)."""
    usage.end_at = max(at, usage.start_at)
    usage.closed_reason = reason
    if usage.booking_id is not None:
        booking = session.get(Booking, usage.booking_id)
        if booking is not None and usage.end_at > booking.end_at:
            usage.overtime_minutes = int((usage.end_at - booking.end_at).total_seconds() // 60)
    session.add(usage)
    session_closed_event(session, usage)


def session_closed_event(session: Session, usage: UsageSession) -> None:
    """Tell the world outside a usage session closed (`usage.session_closed`)."""
    instrument = session.get(Instrument, usage.instrument_id)
    if usage.id is None:
        session.flush()
    emit(
        session,
        "usage.session_closed",
        lab_id=instrument.lab_id if instrument else None,
        data={
            "usage_session_id": usage.id,
            "instrument_id": usage.instrument_id,
            "booking_id": usage.booking_id,
            "user_id": usage.user_id,
            "start": to_utc_z(usage.start_at),
            "end": to_utc_z(usage.end_at) if usage.end_at else None,
            "kind": usage.kind.value,
            "source": usage.source.value,
            "samples": usage.samples,
            "closed_reason": usage.closed_reason,
        },
    )


def _ensure_states(session: Session, instrument_ids: list[int], at: datetime) -> None:
    """Create the missing live-state rows of these instruments (inserted in id order)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    rows = [
        {"instrument_id": i, "since": at, "last_event_at": at, "updated_at": at}
        for i in sorted(instrument_ids)
    ]
    session.execute(insert(InstrumentState).values(rows).on_conflict_do_nothing())


def _states(session: Session, instrument_ids: list[int]) -> dict[int, InstrumentState]:
    query = select(InstrumentState).where(col(InstrumentState.instrument_id).in_(instrument_ids))
    return {s.instrument_id: s for s in session.exec(query)}


def lock_instruments(session: Session, instrument_ids: set[int]) -> None:
    """Hold the live-state rows of every instrument a unit of work will touch, in id order.

    Two ingest workers may hold events of the same instruments, and the meters' bulk
    update, the state events' updates and a gateway going offline each touch usage rows:
    taking every instrument's state row first, always in the same order, means two workers
    queue instead of each waiting for the other (a deadlock). SQLite's writers take turns.
    """
    if not instrument_ids or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        select(InstrumentState.instrument_id)
        .where(col(InstrumentState.instrument_id).in_(sorted(instrument_ids)))
        .order_by(col(InstrumentState.instrument_id))
        .with_for_update()
    ).all()


def instruments_of_gateway(session: Session, gateway_id: int) -> set[int]:
    """The instruments whose open sessions or live state a gateway going offline changes."""
    open_on = select(UsageSession.instrument_id).where(
        UsageSession.gateway_id == gateway_id, col(UsageSession.end_at).is_(None)
    )
    stated = select(InstrumentState.instrument_id).where(InstrumentState.gateway_id == gateway_id)
    return set(session.exec(open_on).all()) | set(session.exec(stated).all())


def _apply_one(session: Session, ctx: _Context, state: InstrumentState, event: StoredEvent) -> None:
    usage = ctx.open_sessions.get(event.instrument_id)
    new_state: InstrumentLiveState | None = None
    if event.type == EventType.session_start:
        if usage is not None and usage.user_badge != event.user_badge:
            close_session(session, usage, at=event.ts, reason="superseded")
            usage = None
        if usage is None:
            usage = _open(session, ctx, event)
        new_state = InstrumentLiveState.in_use
    elif event.type == EventType.session_end:
        if usage is not None and event.ts >= usage.start_at:
            close_session(session, usage, at=event.ts, reason="session_end")
            ctx.open_sessions[event.instrument_id] = usage = None
        new_state = InstrumentLiveState.idle
    elif event.type == EventType.status:
        new_state = InstrumentLiveState((event.data or {}).get("state", "idle"))
        if new_state == InstrumentLiveState.in_use and usage is None:
            usage = _open(session, ctx, event)
        elif (
            new_state != InstrumentLiveState.in_use
            and usage is not None
            and event.ts >= usage.start_at
        ):
            close_session(session, usage, at=event.ts, reason=f"status_{new_state.value}")
            ctx.open_sessions[event.instrument_id] = usage = None
    elif event.type == EventType.meter and usage is not None:
        data = event.data or {}
        usage.samples += int(data.get("samples", 0) or 0)
        usage.kwh += float(data.get("kwh", 0.0) or 0.0)
    if usage is not None and event.ts > usage.last_event_at:
        usage.last_event_at = event.ts
        session.add(usage)
    # An event older than the state we hold (a late redelivery) does not turn the clock back.
    if new_state is not None and event.ts >= state.since:
        if new_state != state.state:
            state.state = new_state
            state.since = event.ts
        state.user_badge = event.user_badge if new_state == InstrumentLiveState.in_use else None
    if event.ts >= state.last_event_at:
        state.last_event_at = event.ts
        state.last_event_type = event.type
        state.gateway_id = event.gateway_id
    state.updated_at = utcnow()
    session.add(state)


def apply_events(
    session: Session,
    events: list[StoredEvent],
    *,
    also_lock: Iterable[int] = (),
    received_at: datetime | None = None,
) -> None:
    """Derive usage from newly stored events (duplicates must already be removed).

    `also_lock`: other instruments the same transaction changes next (gateways gone offline).
    """
    received_at = received_at or utcnow()
    by_instrument: dict[int, list[StoredEvent]] = defaultdict(list)
    for event in events:
        by_instrument[event.instrument_id].append(event)
    detailed = sorted(
        i for i, evs in by_instrument.items() if any(e.type in _STATE_EVENTS for e in evs)
    )
    if detailed:
        # New state rows first (their inserts queue in id order), then every instrument's
        # row, in id order (see lock_instruments).
        _ensure_states(session, detailed, min(e.ts for i in detailed for e in by_instrument[i]))
    lock_instruments(session, set(by_instrument) | set(also_lock))
    if detailed:
        states = _states(session, detailed)
        ctx = _prefetch(
            session, [e for i in detailed for e in by_instrument[i]], detailed, received_at
        )
        for instrument_id in detailed:
            for event in sorted(by_instrument[instrument_id], key=lambda e: e.ts):
                _apply_one(session, ctx, states[instrument_id], event)
        session.flush()
    # Instruments with only meters and heartbeats: one statement for all of them.
    bulk = []
    skip = set(detailed)
    for instrument_id, evs in by_instrument.items():
        if instrument_id in skip:
            continue
        meters = [e.data or {} for e in evs if e.type == EventType.meter]
        samples = sum(int(d.get("samples", 0) or 0) for d in meters)
        kwh = sum((float(d.get("kwh", 0) or 0) for d in meters), 0.0)
        bulk.append({"i": instrument_id, "ts": max(e.ts for e in evs), "s": samples, "k": kwh})
    if bulk:
        _bulk_update(session, sorted(bulk, key=lambda r: r["i"]))


def _bulk_update(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add meter readings to, and keep alive, the open sessions of many instruments at once."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # One statement for the whole batch; the partial unique index finds open sessions.
        conn.exec_driver_sql(
            "UPDATE usage_session AS u SET samples = u.samples + v.s, kwh = u.kwh + v.k,"
            " last_event_at = GREATEST(u.last_event_at, to_timestamp(v.ts))"
            " FROM unnest(%(i)s::int[], %(s)s::int[], %(k)s::float8[], %(ts)s::float8[])"
            " AS v(i, s, k, ts) WHERE u.instrument_id = v.i AND u.end_at IS NULL",
            {
                "i": [r["i"] for r in rows],
                "s": [r["s"] for r in rows],
                "k": [r["k"] for r in rows],
                # Epoch seconds: psycopg dumps a float array much faster than datetimes.
                "ts": [r["ts"].timestamp() for r in rows],
            },
        )
        return
    table = UsageSession.__table__  # type: ignore[attr-defined]
    ts_param = sa.bindparam("ts", type_=UTCDateTime())
    stmt = (
        sa.update(table)
        .where(table.c.instrument_id == sa.bindparam("i"))
        .where(table.c.end_at.is_(None))
        .values(
            samples=table.c.samples + sa.bindparam("s"),
            kwh=table.c.kwh + sa.bindparam("k"),
            last_event_at=sa.case(
                (table.c.last_event_at < ts_param, ts_param), else_=table.c.last_event_at
            ),
        )
    )
    conn.execute(stmt, rows)


def gateway_went_offline(session: Session, *, gateway_id: int, at: datetime) -> int:
    """Close the open sessions a gateway was reporting, where they last showed activity."""
    open_sessions = session.exec(
        select(UsageSession)
        .where(UsageSession.gateway_id == gateway_id)
        .where(col(UsageSession.end_at).is_(None))
    ).all()
    for usage in open_sessions:
        close_session(session, usage, at=min(usage.last_event_at, at), reason="gateway_offline")
    states = session.exec(select(InstrumentState).where(InstrumentState.gateway_id == gateway_id))
    for state in states:
        if state.state != InstrumentLiveState.offline:
            state.state = InstrumentLiveState.offline
            state.since = at
            state.user_badge = None
            session.add(state)
    session.flush()
    return len(open_sessions)
