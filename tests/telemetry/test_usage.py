"""Usage derived from stored events and matched to bookings, on both databases (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from booking.models import Booking, BookingStatus
from core.models import User
from telemetry.models import (
    DeadLetter,
    Gateway,
    InstrumentLiveState,
    InstrumentState,
    TelemetryEvent,
    UsageKind,
    UsageSession,
)
from telemetry.protocol import encode, events_topic, presence_topic
from telemetry.reconcile import usage_reconcile
from telemetry.store import Directory, Incoming, write_batch
from tests.factories import create_badge, create_instrument, create_user
from tests.telemetry.conftest import Net

NOW = datetime.now(UTC).replace(microsecond=0)
_seq = iter(range(1, 10**6))


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def send(engine: Engine, net: Net, code_index: int, *events: tuple) -> None:
    """Store events (type, minutes ago, user, data) for one instrument, as one batch."""
    batch = []
    for type_, minutes, *rest in events:
        user = rest[0] if rest else None
        data = rest[1] if len(rest) > 1 else None
        payload = encode(id=f"m{next(_seq)}", ts=ago(minutes), type=type_, user=user, data=data)
        batch.append(Incoming(0, 1, events_topic(net.gateway.uid, net.codes[code_index]), payload))
    result = write_batch(engine, Directory(), batch)
    assert result.dead == 0, result


def badge_user(session: Session, badge: str) -> User:
    user = create_user(session)
    create_badge(session, user, badge)
    return user


def book(
    session: Session, net: Net, user: User, start: datetime, end: datetime, i: int = 0
) -> Booking:
    booking = Booking(
        instrument_id=net.instrument_ids[i], user_id=user.id, start_at=start, end_at=end
    )
    session.add(booking)
    session.commit()
    return booking


def fresh(session: Session) -> None:
    """End the test's read transaction (SQLite WAL keeps a snapshot) and forget loaded rows."""
    session.commit()
    session.expire_all()


def sessions(session: Session) -> list[UsageSession]:
    fresh(session)
    return list(session.exec(select(UsageSession).order_by(col(UsageSession.id))))


def test_a_session_during_ones_own_booking_is_booked(
    engine: Engine, session: Session, net: Net
) -> None:
    alice = badge_user(session, "B-ALICE")
    booking = book(session, net, alice, ago(30), ago(-30))
    send(
        engine,
        net,
        0,
        ("session_start", 20, "B-ALICE"),
        ("meter", 15, None, {"samples": 2, "kwh": 0.5}),
    )
    send(engine, net, 0, ("meter", 10, None, {"samples": 1}), ("session_end", 5, "B-ALICE"))
    [usage] = sessions(session)
    assert usage.kind == UsageKind.booked and usage.booking_id == booking.id
    assert usage.user_id == alice.id
    assert (usage.start_at, usage.end_at) == (ago(20), ago(5))
    assert (usage.samples, usage.kwh, usage.overtime_minutes) == (3, 0.5, 0)
    assert usage.closed_reason == "session_end"


def test_overtime_walk_up_and_someone_elses_booking(
    engine: Engine, session: Session, net: Net
) -> None:
    alice = badge_user(session, "B-ALICE")
    badge_user(session, "B-BOB")
    book(session, net, alice, ago(90), ago(30), i=0)
    book(session, net, alice, ago(60), ago(0), i=1)
    send(engine, net, 0, ("session_start", 80, "B-ALICE"), ("session_end", 10, "B-ALICE"))
    send(engine, net, 1, ("session_start", 50, "B-BOB"), ("session_end", 40, "B-BOB"))
    send(engine, net, 2, ("session_start", 30), ("session_end", 25))
    overtime, bob, walk_up = sessions(session)
    assert overtime.kind == UsageKind.booked and overtime.overtime_minutes == 20
    assert bob.kind == UsageKind.walk_up and bob.booking_id is None  # not his booking
    assert walk_up.kind == UsageKind.walk_up and walk_up.user_id is None


def test_status_transitions_and_live_state(engine: Engine, session: Session, net: Net) -> None:
    send(engine, net, 0, ("status", 30, "B1", {"state": "in_use"}), ("heartbeat", 25))
    [usage] = sessions(session)
    assert usage.end_at is None and usage.last_event_at == ago(25)
    send(engine, net, 0, ("status", 20, None, {"state": "fault"}))
    [usage] = sessions(session)
    assert usage.end_at == ago(20) and usage.closed_reason == "status_fault"
    state = session.get(InstrumentState, net.instrument_ids[0])
    assert state is not None and state.state == InstrumentLiveState.fault and state.since == ago(20)


def test_redelivery_changes_nothing(engine: Engine, session: Session, net: Net) -> None:
    topic = events_topic(net.gateway.uid, net.codes[0])
    start = encode(id="s1", ts=ago(10), type="session_start")
    meter = encode(id="m1", ts=ago(9), type="meter", data={"samples": 5})
    for _ in range(3):
        write_batch(
            engine, Directory(), [Incoming(0, 1, topic, start), Incoming(0, 1, topic, meter)]
        )
    assert session.exec(select(func.count()).select_from(TelemetryEvent)).one() == 2
    [usage] = sessions(session)
    assert usage.samples == 5


def test_unserved_instrument_and_revoked_gateway_are_dead_letters(
    engine: Engine, session: Session, net: Net
) -> None:
    from telemetry.service import gateway_create, gateway_revoke
    from tests.factories import create_instrument

    other = create_instrument(session)
    narrow, _ = gateway_create(session, lab_code=net.lab_code, instrument_codes=[net.codes[0]])
    session.commit()
    ok = encode(id="a", ts=ago(1), type="heartbeat")
    batch = [
        Incoming(0, 1, events_topic(net.gateway.uid, other.code), ok),  # another lab's
        Incoming(0, 1, events_topic(narrow.uid, net.codes[1]), ok),  # not in its list
        Incoming(0, 1, events_topic(narrow.uid, net.codes[0]), ok),  # fine
        Incoming(0, 1, events_topic("gw-nobody", net.codes[0]), ok),
        Incoming(0, 1, events_topic(net.gateway.uid, "NO-SUCH"), ok),
    ]
    result = write_batch(engine, Directory(), batch)
    assert (result.stored, result.dead) == (1, 4)
    fresh(session)
    gateway_revoke(session, uid=narrow.uid)
    session.commit()
    result = write_batch(
        engine,
        Directory(),
        [Incoming(0, 1, batch[2].topic, encode(id="b", ts=ago(1), type="heartbeat"))],
    )
    assert result.dead == 1
    reasons = session.exec(select(DeadLetter.reason)).all()
    assert sum("does not serve" in r for r in reasons) == 3
    assert any("unknown gateway" in r for r in reasons) and any("revoked" in r for r in reasons)


def test_offline_gateway_closes_its_sessions(engine: Engine, session: Session, net: Net) -> None:
    send(engine, net, 0, ("session_start", 10, "B1"), ("heartbeat", 3))
    write_batch(engine, Directory(), [Incoming(0, 1, presence_topic(net.gateway.uid), b"offline")])
    [usage] = sessions(session)
    assert usage.closed_reason == "gateway_offline" and usage.end_at == ago(3)
    assert session.get(InstrumentState, net.instrument_ids[0]).state == InstrumentLiveState.offline


def test_reconcile_no_show_completed_and_silence(
    engine: Engine, session: Session, net: Net
) -> None:
    alice = badge_user(session, "B-ALICE")
    gateway = session.get(Gateway, net.gateway.id)
    gateway.created_at = ago(24 * 60)  # it was reporting before these bookings began
    session.add(gateway)
    unwatched_instrument = create_instrument(session)  # another lab, with no gateway
    unwatched = Booking(instrument_id=unwatched_instrument.id, user_id=alice.id,
                        start_at=ago(45), end_at=ago(15))  # fmt: skip
    session.add(unwatched)
    used = book(session, net, alice, ago(120), ago(60), i=0)
    no_show = book(session, net, alice, ago(45), ago(15), i=1)
    in_grace = book(session, net, alice, ago(10), ago(-50), i=2)
    send(engine, net, 0, ("session_start", 118, "B-ALICE"), ("session_end", 65, "B-ALICE"))
    send(engine, net, 2, ("session_start", 12, "B-X"))  # someone else, then silence
    with Session(engine) as s:
        # Make the last one go quiet long ago.
        u = s.exec(
            select(UsageSession).where(UsageSession.instrument_id == net.instrument_ids[2])
        ).one()
        u.last_event_at = u.start_at = ago(30)
        s.add(u)
        s.commit()
        result = usage_reconcile(s)
        s.commit()
    # Completed: the used one, and the ended one no gateway watched (nobody could tell).
    assert (result.no_shows, result.completed, result.closed_silent) == (1, 2, 1)
    fresh(session)
    assert session.get(Booking, used.id).status == BookingStatus.completed
    assert session.get(Booking, no_show.id).status == BookingStatus.no_show
    assert session.get(Booking, in_grace.id).status == BookingStatus.confirmed
    assert session.get(Booking, unwatched.id).status == BookingStatus.completed
    silent = sessions(session)[-1]
    assert silent.closed_reason == "silence" and silent.end_at == ago(30)


def test_meters_alone_add_up_on_the_open_session(
    engine: Engine, session: Session, net: Net
) -> None:
    """Batches of only meters and heartbeats take the one-statement path (ints and floats mixed)."""
    send(engine, net, 0, ("session_start", 10, "B1"))
    send(
        engine, net, 0,
        ("meter", 9, None, {"samples": 2}), ("meter", 8, None, {"kwh": 0.25}),
        ("heartbeat", 7), ("meter", 6, None, {"samples": 1, "kwh": 1}),
    )  # fmt: skip
    send(engine, net, 1, ("meter", 5, None, {"samples": 7}))  # no open session there: ignored
    [usage] = sessions(session)
    assert (usage.samples, usage.kwh, usage.last_event_at) == (3, 1.25, ago(6))
