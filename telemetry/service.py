"""Gateways (register, list, revoke, broker files) and reads of usage and live status."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, or_, select

from booking.models import Booking, BookingStatus, status_among
from booking.timeline import LONGEST_BOOKING
from core.db import among, plain_rows
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.models import Role, User, utcnow
from core.timeutil import require_interval
from instruments.models import Instrument, Lab
from telemetry.models import (
    Gateway,
    GatewayInstrument,
    InstrumentLiveState,
    InstrumentState,
    Presence,
    UsageKind,
    UsageReview,
    UsageSession,
)
from telemetry.protocol import TOPIC_ROOT
from telemetry.schemas import (
    BookingRef,
    GatewayPublic,
    InstrumentStatusPublic,
    UsagePublic,
)
from telemetry.usage import SILENCE

# Mosquitto 2's password format: $7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>.
PBKDF2_ITERATIONS = 10_000
USAGE_MAX_DAYS = 366


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """A password hash in the `$7$` format Mosquitto 2 reads from its password file."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def mosquitto_verify(password: str, encoded: str) -> bool:
    """Whether `password` matches a `$7$` hash."""
    try:
        _, kind, iterations, salt, digest = encoded.split("$")
        if kind != "7":
            return False
        mine = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(mine).decode(), digest)


def lab_by_code(session: Session, code: str) -> Lab:
    lab = session.exec(select(Lab).where(Lab.code == code)).first()
    if lab is None:
        raise NotFound(f"no lab with the code {code!r}")
    return lab


def gateway_create(
    session: Session, *, lab_code: str, instrument_codes: list[str] | None = None, name: str = ""
) -> tuple[Gateway, str]:
    """Register a gateway of a lab; returns it and its password (shown once, stored hashed)."""
    lab = lab_by_code(session, lab_code)
    instruments: list[Instrument] = []
    for code in instrument_codes or []:
        instrument = session.exec(select(Instrument).where(Instrument.code == code)).first()
        if instrument is None:
            raise NotFound(f"no instrument with the code {code!r}")
        if instrument.lab_id != lab.id:
            raise Invalid(f"instrument {code} does not belong to lab {lab.code}")
        instruments.append(instrument)
    assert lab.id is not None
    uid = f"gw-{secrets.token_hex(6)}"
    password = secrets.token_urlsafe(24)
    gateway = Gateway(
        uid=uid, lab_id=lab.id, name=name or f"{lab.code} gateway", mqtt_username=uid,
        password_hash=mosquitto_hash(password),
    )  # fmt: skip
    session.add(gateway)
    session.flush()
    assert gateway.id is not None
    for instrument_id in {i.id for i in instruments if i.id is not None}:
        session.add(GatewayInstrument(gateway_id=gateway.id, instrument_id=instrument_id))
    session.flush()
    return gateway, password


def gateway_get(session: Session, uid: str) -> Gateway:
    gateway = session.exec(select(Gateway).where(Gateway.uid == uid)).first()
    if gateway is None:
        raise NotFound(f"no gateway {uid!r}")
    return gateway


def gateway_revoke(session: Session, *, uid: str) -> Gateway:
    """Revoke a gateway: the broker files drop it and the ingest refuses its messages."""
    gateway = gateway_get(session, uid)
    if gateway.revoked_at is not None:
        raise Conflict(f"gateway {uid} was already revoked")
    gateway.revoked_at = utcnow()
    session.add(gateway)
    session.flush()
    return gateway


def gateway_public(session: Session, gateway: Gateway) -> GatewayPublic:
    lab = session.get(Lab, gateway.lab_id)
    codes = session.exec(
        select(Instrument.code)
        .join(GatewayInstrument, col(GatewayInstrument.instrument_id) == Instrument.id)
        .where(GatewayInstrument.gateway_id == gateway.id)
        .order_by(Instrument.code)
    ).all()
    return GatewayPublic(
        gateway_id=gateway.uid, lab=lab.code if lab else "", name=gateway.name,
        instruments=list(codes), presence=gateway.presence, last_seen_at=gateway.last_seen_at,
        created_at=gateway.created_at, revoked_at=gateway.revoked_at,
    )  # fmt: skip


def gateway_list(session: Session, *, lab_id: int | None = None) -> list[GatewayPublic]:
    """Gateways, with presence and when each was last seen (one lab's, or all)."""
    query = select(Gateway).order_by(col(Gateway.id))
    if lab_id is not None:
        query = query.where(Gateway.lab_id == lab_id)
    return [gateway_public(session, g) for g in session.exec(query)]


def broker_files(
    session: Session,
    *,
    ingest_user: str | None = None,
    ingest_password: str | None = None,
    root: str = TOPIC_ROOT,
) -> tuple[str, str]:
    """Mosquitto's password file and ACL file: each gateway may use only its own prefix."""
    gateways = session.exec(
        select(Gateway).where(col(Gateway.revoked_at).is_(None)).order_by(col(Gateway.id))
    ).all()
    passwd = [f"{g.mqtt_username}:{g.password_hash}" for g in gateways]
    acl = ["# Written by `labshare gateways acl`; regenerate after creating or revoking."]
    if ingest_user:
        if ingest_password:
            passwd.insert(0, f"{ingest_user}:{mosquitto_hash(ingest_password)}")
        acl += [f"user {ingest_user}", f"topic read {root}/#", ""]
    for g in gateways:
        acl += [f"user {g.mqtt_username}", f"topic readwrite {root}/{g.uid}/#", ""]
    return "\n".join(passwd) + ("\n" if passwd else ""), "\n".join(acl) + "\n"


def _require_usage_reader(user: User, lab_id: int) -> None:
    if user.role == Role.network_admin:
        return
    if user.role == Role.lab_manager and user.lab_id == lab_id:
        return
    raise Forbidden("usage is visible to the lab's managers and network administrators")


def usage_public(session: Session, usage: UsageSession) -> UsagePublic:
    booking = session.get(Booking, usage.booking_id) if usage.booking_id else None
    ref = None
    if booking is not None and booking.id is not None:
        ref = BookingRef(
            id=booking.id, start=booking.start_at, end=booking.end_at, status=booking.status,
            user_id=booking.user_id,
        )  # fmt: skip
    assert usage.id is not None
    return UsagePublic(
        id=usage.id, instrument_id=usage.instrument_id, start=usage.start_at, end=usage.end_at,
        user_id=usage.user_id, user_badge=usage.user_badge, kind=usage.kind, booking=ref,
        overtime_minutes=usage.overtime_minutes, samples=usage.samples, kwh=usage.kwh,
        closed_reason=usage.closed_reason, review=usage.review, hold_reason=usage.hold_reason,
        source=usage.source, note=usage.note,
    )  # fmt: skip


def _check_window(start: datetime, end: datetime) -> None:
    require_interval(start, end)
    if (end - start).days > USAGE_MAX_DAYS:
        raise Invalid(f"ask for at most {USAGE_MAX_DAYS} days at a time")


def usage_list(
    session: Session,
    *,
    user: User,
    instrument_ids: list[int],
    lab_id: int,
    start: datetime | None,
    end: datetime | None,
    held_only: bool = False,
) -> list[UsagePublic]:
    """Usage sessions overlapping [start, end) (or every held one), each with the booking
    it matched or none."""
    _require_usage_reader(user, lab_id)
    if not instrument_ids:
        return []
    query = select(UsageSession).where(col(UsageSession.instrument_id).in_(instrument_ids))
    if held_only:
        query = query.where(UsageSession.review == UsageReview.held)
    else:
        assert start is not None and end is not None
        _check_window(start, end)
        query = query.where(UsageSession.start_at < end).where(
            (col(UsageSession.end_at).is_(None)) | (col(UsageSession.end_at) > start)
        )
    rows = session.exec(
        query.order_by(col(UsageSession.start_at), col(UsageSession.id)).limit(10_000)
    ).all()
    return _publics(session, rows)


def usage_list_by_ids(session: Session, ids: list[int]) -> list[UsagePublic]:
    """These sessions as the API shows them (no permission check: the caller did it)."""
    rows = session.exec(select(UsageSession).where(col(UsageSession.id).in_(ids))).all()
    return _publics(session, rows)


def _publics(session: Session, rows: Sequence[UsageSession]) -> list[UsagePublic]:
    """The sessions as the API shows them, their matched bookings loaded in one query
    (held in `loaded`: the ORM session keeps only weak references)."""
    matched = {u.booking_id for u in rows if u.booking_id}
    loaded = (
        session.exec(select(Booking).where(col(Booking.id).in_(matched))).all() if matched else []
    )
    out = [usage_public(session, u) for u in rows]
    del loaded
    return out


def instrument_usage(
    session: Session, *, user: User, instrument_id: int, start: datetime, end: datetime
) -> list[UsagePublic]:
    """One instrument's usage sessions (its lab's managers, network administrators)."""
    instrument = session.get(Instrument, instrument_id)
    if instrument is None:
        raise NotFound(f"no instrument {instrument_id}")
    return usage_list(
        session, user=user, instrument_ids=[instrument_id], lab_id=instrument.lab_id,
        start=start, end=end,
    )  # fmt: skip


def lab_usage(
    session: Session,
    *,
    user: User,
    lab_code: str,
    start: datetime | None,
    end: datetime | None,
    held_only: bool = False,
) -> list[UsagePublic]:
    """All usage sessions of a lab's instruments (or its held ones, whenever they were)."""
    lab = lab_by_code(session, lab_code)
    ids = session.exec(select(Instrument.id).where(Instrument.lab_id == lab.id)).all()
    assert lab.id is not None
    return usage_list(
        session, user=user, instrument_ids=[i for i in ids if i is not None], lab_id=lab.id,
        start=start, end=end, held_only=held_only,
    )  # fmt: skip


def _statuses(session: Session, instruments: list[Instrument]) -> list[InstrumentStatusPublic]:
    ids = [i.id for i in instruments]
    states = {
        s.instrument_id: s
        for s in session.exec(
            select(InstrumentState).where(col(InstrumentState.instrument_id).in_(ids))
        )
    }
    lab_ids = {i.lab_id for i in instruments}
    gateways = session.exec(
        select(Gateway)
        .where(col(Gateway.lab_id).in_(lab_ids))
        .where(col(Gateway.revoked_at).is_(None))
    ).all()
    by_id = {g.id: g for g in gateways}
    served: dict[int, set[int]] = {}
    for link in session.exec(
        select(GatewayInstrument).where(col(GatewayInstrument.gateway_id).in_(list(by_id)))
    ):
        served.setdefault(link.gateway_id, set()).add(link.instrument_id)
    now = utcnow()
    out = []
    for instrument in instruments:
        assert instrument.id is not None
        state = states.get(instrument.id)
        gateway = by_id.get(state.gateway_id) if state and state.gateway_id else None
        if gateway is None:
            # The gateway that serves it (explicitly, or all of its lab's) if any reports.
            gateway = next(
                (g for g in gateways if g.lab_id == instrument.lab_id
                 and (instrument.id in served[g.id] if g.id in served else True)),
                None,
            )  # fmt: skip
        alive = (
            gateway is not None
            and gateway.presence != Presence.offline
            and gateway.last_seen_at is not None
            and now - gateway.last_seen_at < SILENCE
        )
        live = InstrumentLiveState.offline
        if alive:
            live = state.state if state else InstrumentLiveState.idle
        out.append(
            InstrumentStatusPublic(
                instrument_id=instrument.id,
                code=instrument.code,
                state=live,
                since=state.since if state else None,
                last_event_at=state.last_event_at if state else None,
                gateway_id=gateway.uid if gateway else None,
                gateway_presence=gateway.presence if gateway else None,
            )
        )
    return out


def instrument_status(session: Session, *, instrument_id: int) -> InstrumentStatusPublic:
    """Live state from telemetry: idle, in_use, fault or offline (silent or no gateway)."""
    instrument = session.get(Instrument, instrument_id)
    if instrument is None:
        raise NotFound(f"no instrument {instrument_id}")
    return _statuses(session, [instrument])[0]


def lab_status(session: Session, *, lab_code: str) -> list[InstrumentStatusPublic]:
    """Live state of every instrument of a lab."""
    lab = lab_by_code(session, lab_code)
    instruments = session.exec(
        select(Instrument).where(Instrument.lab_id == lab.id).order_by(col(Instrument.id))
    ).all()
    return _statuses(session, list(instruments))


def telemetry_counts(session: Session) -> dict[str, float]:
    """Figures for the API's /metrics, read from the database (shared by all workers)."""
    from sqlalchemy import func, text

    from telemetry.models import DeadLetter, TelemetryEvent

    def scalar(query) -> float:  # type: ignore[no-untyped-def]
        return float(session.exec(query).one() or 0)

    if session.get_bind().dialect.name == "postgresql":
        # An exact count of a large event table is a full scan; the planner's estimate is free.
        events = float(
            session.execute(
                text(
                    "SELECT GREATEST(reltuples, 0) FROM pg_class WHERE relname = 'telemetry_event'"
                )
            ).scalar()
            or 0
        )
    else:
        events = scalar(select(func.count()).select_from(TelemetryEvent))
    last = session.exec(select(func.max(TelemetryEvent.received_at))).one()
    return {
        "events_stored": events,
        "dead_letters": scalar(select(func.count()).select_from(DeadLetter)),
        "gateways_online": scalar(
            select(func.count()).select_from(Gateway).where(Gateway.presence == Presence.online)
        ),
        "gateways_offline": scalar(
            select(func.count()).select_from(Gateway).where(Gateway.presence == Presence.offline)
        ),
        "usage_sessions_open": scalar(
            select(func.count()).select_from(UsageSession).where(col(UsageSession.end_at).is_(None))
        ),
        "seconds_since_last_event": (utcnow() - last).total_seconds() if last else -1.0,
    }


@dataclass(frozen=True)
class Utilisation:
    """One instrument over a window: hours booked (time people held) and hours used (time
    the gateway saw it in use), each clipped to the window."""

    instrument_id: int
    name: str
    booked_hours: float
    used_hours: float


def lab_utilisation(
    session: Session, *, lab_id: int, start: datetime, end: datetime, now: datetime | None = None
) -> list[Utilisation]:
    """Booked against used hours per instrument of a lab, the busiest first."""
    now = now or utcnow()
    names = dict(
        session.exec(
            select(Instrument.id, Instrument.name).where(Instrument.lab_id == lab_id)
        ).all()
    )
    ids = [i for i in names if i is not None]

    def clipped(rows: Sequence[tuple[int, datetime, datetime | None]]) -> dict[int, float]:
        hours: dict[int, float] = {}
        for instrument_id, s, e in rows:
            span = (min(e or now, end) - max(s, start)).total_seconds() / 3600
            if span > 0:
                hours[instrument_id] = hours.get(instrument_id, 0.0) + span
        return hours

    held = (BookingStatus.confirmed, BookingStatus.completed, BookingStatus.no_show)
    # Plain rows, and the ids as one array on PostgreSQL: a lab's few dozen instruments
    # over two weeks are a few hundred rows, read on every view of the usage page.
    booked = clipped(
        plain_rows(
            session,
            sa_select(col(Booking.instrument_id), col(Booking.start_at), col(Booking.end_at)).where(
                among(session, col(Booking.instrument_id), ids),
                status_among(held),
                col(Booking.start_at) < end,
                # A lower bound for the (instrument, start) index: without it the scan
                # reads every booking since the lab opened.
                col(Booking.start_at) > start - LONGEST_BOOKING,
                col(Booking.end_at) > start,
            ),
        )
    )
    used = clipped(
        plain_rows(
            session,
            sa_select(
                col(UsageSession.instrument_id),
                col(UsageSession.start_at),
                col(UsageSession.end_at),
            ).where(
                among(session, col(UsageSession.instrument_id), ids),
                col(UsageSession.start_at) < end,
                or_(col(UsageSession.end_at).is_(None), col(UsageSession.end_at) > start),
            ),
        )
    )
    out = [
        Utilisation(i, names[i], round(booked.get(i, 0.0), 1), round(used.get(i, 0.0), 1))
        for i in ids
        if booked.get(i) or used.get(i)
    ]
    return sorted(out, key=lambda u: (-(u.booked_hours + u.used_hours), u.name))


@dataclass(frozen=True)
class UsageSummary:
    """A lab's usage over a window as its desk shows it: counts over every session, and the
    newest sessions themselves."""

    sessions: int
    walk_ups: int
    overtime: int
    newest: list[UsagePublic]


def lab_usage_summary(
    session: Session, *, user: User, lab_id: int, start: datetime, end: datetime, newest: int
) -> UsageSummary:
    """Counts in SQL over the window; only the `newest` sessions are loaded (newest first)."""
    _require_usage_reader(user, lab_id)
    _check_window(start, end)
    in_window = (
        col(UsageSession.instrument_id).in_(
            select(Instrument.id).where(Instrument.lab_id == lab_id)
        ),
        col(UsageSession.start_at) < end,
        or_(col(UsageSession.end_at).is_(None), col(UsageSession.end_at) > start),
    )
    total, walk_ups, overtime = session.exec(
        select(
            func.count(),
            func.coalesce(
                func.sum(case((col(UsageSession.kind) == UsageKind.walk_up, 1), else_=0)), 0
            ),
            func.coalesce(func.sum(case((col(UsageSession.overtime_minutes) > 0, 1), else_=0)), 0),
        ).where(*in_window)
    ).one()
    ids = session.exec(
        select(UsageSession.id)
        .where(*in_window)
        .order_by(col(UsageSession.start_at).desc(), col(UsageSession.id).desc())
        .limit(newest)
    ).all()
    rows = {u.id: u for u in usage_list_by_ids(session, [i for i in ids if i is not None])}
    return UsageSummary(
        int(total), int(walk_ups), int(overtime), [rows[i] for i in ids if i in rows]
    )
