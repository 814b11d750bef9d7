"""Writing a batch of MQTT messages: validate, de-duplicate, store in one statement, derive usage."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from core.db import writer
from instruments.models import Instrument
from telemetry.models import DeadLetter, Gateway, GatewayInstrument, Presence, TelemetryEvent
from telemetry.protocol import (
    TOPIC_ROOT,
    EventTopic,
    ProtocolError,
    parse_payload,
    parse_presence,
    parse_topic,
)
from telemetry.usage import (
    StoredEvent,
    apply_events,
    gateway_went_offline,
    instruments_of_gateway,
)

DEAD_PAYLOAD_MAX = 16 * 1024
_COLUMNS = ("gateway_id", "message_id", "instrument_id", "ts", "type", "user_badge", "data")


@dataclass(slots=True)
class Incoming:
    """A message as received, before it is stored and acknowledged."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int = 0  # which broker connection delivered it (acks go back on that one)


@dataclass(slots=True)
class GatewayInfo:
    id: int
    lab_id: int
    revoked: bool
    instruments: frozenset[int] | None  # None: all of its lab's


@dataclass(slots=True)
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    presence: int = 0
    lags: list[float] = field(default_factory=list)


class Directory:
    """Cached look-ups of gateways and instruments, refreshed every `ttl` seconds."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._gateways: dict[str, tuple[float, GatewayInfo | None]] = {}
        self._instruments: dict[str, tuple[float, tuple[int, int] | None]] = {}

    def gateway(self, engine: Engine, uid: str) -> GatewayInfo | None:
        hit = self._gateways.get(uid)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        with engine.connect() as conn:
            info = self._load_gateway(conn, uid)
        self._gateways[uid] = (time.monotonic(), info)
        return info

    def _load_gateway(self, conn: Connection, uid: str) -> GatewayInfo | None:
        row = conn.execute(
            sa.select(col(Gateway.id), col(Gateway.lab_id), col(Gateway.revoked_at)).where(
                col(Gateway.uid) == uid
            )
        ).first()
        info = None
        if row is not None:
            served = conn.execute(
                sa.select(col(GatewayInstrument.instrument_id)).where(
                    GatewayInstrument.gateway_id == row.id
                )
            ).scalars()
            ids = frozenset(served)
            info = GatewayInfo(row.id, row.lab_id, row.revoked_at is not None, ids or None)
        return info

    def forget_revoked(self, engine: Engine, uids: set[str]) -> None:
        """Drop from the cache those of `uids` that were revoked since they were cached, so a
        revocation holds from the next batch on, not after the cache's `ttl`: one indexed
        query a batch."""
        cached = [
            u for u in uids if (hit := self._gateways.get(u)) and hit[1] and not hit[1].revoked
        ]
        if not cached:
            return
        with engine.connect() as conn:
            revoked = conn.execute(
                sa.select(col(Gateway.uid)).where(
                    col(Gateway.uid).in_(cached), col(Gateway.revoked_at).is_not(None)
                )
            ).scalars()
            for uid in revoked:
                self._gateways.pop(uid, None)

    def instrument(self, engine: Engine, code: str) -> tuple[int, int] | None:
        """(instrument id, lab id) for a code."""
        hit = self._instruments.get(code)
        if hit and time.monotonic() - hit[0] < self.ttl * 10:
            return hit[1]
        with engine.connect() as conn:
            return self._load_instrument(conn, code)

    def _load_instrument(self, conn: Connection, code: str) -> tuple[int, int] | None:
        if not self._instruments:
            # The first look-up loads the whole catalog: one query instead of thousands.
            now = time.monotonic()
            rows = conn.execute(
                sa.select(col(Instrument.code), col(Instrument.id), col(Instrument.lab_id))
            )
            for row in rows:
                self._instruments[row.code] = (now, (row.id, row.lab_id))
            if code in self._instruments:
                return self._instruments[code][1]
        found = conn.execute(
            sa.select(col(Instrument.id), col(Instrument.lab_id)).where(
                col(Instrument.code) == code
            )
        ).first()
        value = (found.id, found.lab_id) if found else None
        self._instruments[code] = (time.monotonic(), value)
        return value


def _dead(topic: str, payload: bytes, reason: str, uid: str | None, now: datetime) -> dict:
    return {
        "topic": topic[:500],
        "payload": payload[:DEAD_PAYLOAD_MAX],
        "gateway_uid": uid[:64] if uid else None,
        "reason": reason[:500],
        "received_at": now,
    }


@dataclass(slots=True)
class Prepared:
    """A parsed and checked batch, ready to be written."""

    events: dict[tuple[int, str], StoredEvent]
    dead: list[dict]
    presence: list[tuple[int, str]]
    duplicates: int
    now: datetime


def _gateway_of(topic: str, root: str) -> str:
    """The gateway id a topic names, or "" (parse_topic says what is wrong with it)."""
    prefix = root + "/"
    return topic[len(prefix) :].split("/", 1)[0] if topic.startswith(prefix) else ""


def prepare_batch(
    engine: Engine, directory: Directory, batch: list[Incoming], *, root: str = TOPIC_ROOT
) -> Prepared:
    """Parse and check every message (no writes; the database only on a directory miss)."""
    now = datetime.now(UTC)
    prepared = Prepared({}, [], [], 0, now)
    events = prepared.events
    directory.forget_revoked(engine, {_gateway_of(item.topic, root) for item in batch})
    for item in batch:
        uid = None
        try:
            topic = parse_topic(item.topic, root)
            uid = topic.gateway_uid
            gateway = directory.gateway(engine, uid)
            if gateway is None:
                raise ProtocolError(f"gateway: unknown gateway {uid!r}")
            if gateway.revoked:
                raise ProtocolError(f"gateway: {uid!r} is revoked")
            if not isinstance(topic, EventTopic):
                prepared.presence.append((gateway.id, parse_presence(item.payload)))
                continue
            instrument = directory.instrument(engine, topic.instrument_code)
            serves = instrument is not None and (
                instrument[0] in gateway.instruments
                if gateway.instruments is not None
                else instrument[1] == gateway.lab_id
            )
            if instrument is None or not serves:
                raise ProtocolError(
                    f"instrument: gateway {uid!r} does not serve {topic.instrument_code!r}"
                )
            message = parse_payload(item.payload, now=now)
        except ProtocolError as exc:
            prepared.dead.append(_dead(item.topic, item.payload, str(exc), uid, now))
            continue
        key = (gateway.id, message.id)
        if key in events:
            prepared.duplicates += 1
            continue
        events[key] = StoredEvent(
            gateway.id, message.id, instrument[0], message.ts, message.type,
            message.user, message.data,
        )  # fmt: skip
    return prepared


def commit_batch(engine: Engine, prepared: Prepared) -> BatchResult:
    """Write a prepared batch in one transaction; raises on database errors (nothing changed)."""
    now = prepared.now
    events = prepared.events
    result = BatchResult(duplicates=prepared.duplicates)
    with Session(writer(engine), expire_on_commit=False) as session:
        inserted = _insert_events(session, list(events.values()), now)
        result.stored = len(inserted)
        result.duplicates += len(events) - len(inserted)
        if prepared.dead:
            session.execute(sa.insert(DeadLetter), prepared.dead)
        result.dead = len(prepared.dead)
        fresh = [events[k] for k in inserted]
        offline = {g for g, state in prepared.presence if state == Presence.offline}
        also = set().union(*(instruments_of_gateway(session, g) for g in offline))
        apply_events(session, fresh, also_lock=also, received_at=now)
        _touch_gateways(session, {e.gateway_id for e in events.values()}, now)
        for gateway_id, state in prepared.presence:
            _apply_presence(session, gateway_id, state, now)
        result.presence = len(prepared.presence)
        session.commit()
    done = datetime.now(UTC)
    result.lags = [(done - e.ts).total_seconds() for e in fresh]
    return result


def write_batch(
    engine: Engine, directory: Directory, batch: list[Incoming], *, root: str = TOPIC_ROOT
) -> BatchResult:
    """Store one batch in one transaction; raises on database errors (nothing then changed)."""
    return commit_batch(engine, prepare_batch(engine, directory, batch, root=root))


def _insert_events(
    session: Session, events: list[StoredEvent], now: datetime
) -> list[tuple[int, str]]:
    """Insert what is new; return the (gateway, message id) keys actually inserted."""
    if not events:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _insert_events_pg(session, events, now)
    table = TelemetryEvent.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    # SQLite holds the write lock (BEGIN IMMEDIATE), so what exists now stays true until commit.
    existing: set[tuple[int, str]] = set()
    by_gateway: dict[int, list[str]] = {}
    for e in events:
        by_gateway.setdefault(e.gateway_id, []).append(e.message_id)
    for gateway_id, ids in by_gateway.items():
        for i in range(0, len(ids), 500):
            rows = conn.execute(
                sa.select(table.c.gateway_id, table.c.message_id)
                .where(table.c.gateway_id == gateway_id)
                .where(table.c.message_id.in_(ids[i : i + 500]))
            )
            existing.update((r[0], r[1]) for r in rows)
    new = [e for e in events if (e.gateway_id, e.message_id) not in existing]
    if new:
        conn.execute(
            table.insert().prefix_with("OR IGNORE"),
            [
                {c: getattr(e, c) for c in _COLUMNS} | {"type": e.type.value, "received_at": now}
                for e in new
            ],
        )
    return [(e.gateway_id, e.message_id) for e in new]


def _insert_events_pg(
    session: Session, events: list[StoredEvent], now: datetime
) -> list[tuple[int, str]]:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _ingest_event (gateway_id int, message_id text,"
            " instrument_id int, ts timestamptz, type text, user_badge text, data jsonb)"
            " ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY _ingest_event ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for e in events:
                copy.write_row((
                    e.gateway_id, e.message_id, e.instrument_id, e.ts, e.type.value,
                    e.user_badge, None if e.data is None else json.dumps(e.data),
                ))  # fmt: skip
        cur.execute(
            f"INSERT INTO telemetry_event ({', '.join(_COLUMNS)}, received_at)"
            f" SELECT {', '.join(_COLUMNS)}, %s FROM _ingest_event"
            " ON CONFLICT (gateway_id, message_id) DO NOTHING"
            " RETURNING gateway_id, message_id",
            (now,),
        )
        return [(r[0], r[1]) for r in cur.fetchall()]


_last_touch: dict[int, float] = {}


def _touch_gateways(session: Session, gateway_ids: set[int], now: datetime) -> None:
    # last_seen_at is for people: a few seconds of staleness saves a write per batch.
    mono = time.monotonic()
    due = [g for g in sorted(gateway_ids) if mono - _last_touch.get(g, 0.0) > 5.0]
    if not due:
        return
    table = Gateway.__table__  # type: ignore[attr-defined]
    session.connection().execute(table.update().where(table.c.id.in_(due)).values(last_seen_at=now))
    for g in due:
        _last_touch[g] = mono


def _apply_presence(session: Session, gateway_id: int, state: str, now: datetime) -> None:
    gateway = session.get(Gateway, gateway_id)
    if gateway is None:
        return
    gateway.presence = Presence(state)
    gateway.presence_at = now
    if state == Presence.online:
        gateway.last_seen_at = now
    session.add(gateway)
    if state == Presence.offline:
        gateway_went_offline(session, gateway_id=gateway_id, at=now)


def dead_letter_raw(engine: Engine, item: Incoming, reason: str) -> None:
    """Keep one message the database refused to store, in its own transaction."""
    # Best effort: the gateway's part of the topic, for finding its dead letters later.
    parts = item.topic.split("/")
    uid = parts[-4] if parts[-1] == "events" and len(parts) >= 4 else None
    with Session(writer(engine)) as session:
        session.execute(
            sa.insert(DeadLetter), [_dead(item.topic, item.payload, reason, uid, datetime.now(UTC))]
        )
        session.commit()
