"""Gateways, raw telemetry events, dead letters, usage sessions and live instrument state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import JSON, CheckConstraint, Index, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Column, Field, SQLModel

from core.db import UTCDateTime, enum_type
from core.models import utcnow

# 64-bit ids on PostgreSQL; SQLite only auto-increments a plain INTEGER primary key.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSONB on PostgreSQL (smaller, indexable), JSON text on SQLite.
JsonData = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

GATEWAY_UID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class Presence(StrEnum):
    unknown = "unknown"  # never reported a presence message
    online = "online"
    offline = "offline"


class EventType(StrEnum):
    session_start = "session_start"
    session_end = "session_end"
    status = "status"
    meter = "meter"
    heartbeat = "heartbeat"


class InstrumentLiveState(StrEnum):
    idle = "idle"
    in_use = "in_use"
    fault = "fault"
    offline = "offline"


class UsageKind(StrEnum):
    booked = "booked"  # matched a booking of the same instrument (and person, where known)
    walk_up = "walk_up"  # used without a booking


class UsageSource(StrEnum):
    """Who recorded a session: a gateway's telemetry, the booker at the instrument's kiosk,
    or an operator by hand (with a reason). A gateway's session on a booking outranks the
    others: where one exists, billing ignores the kiosk's and the operator's."""

    gateway = "gateway"
    kiosk = "kiosk"
    manual = "manual"


class UsageReview(StrEnum):
    """Whether a session may be billed: the ingest accepts what it can vouch for and holds
    the rest (an unknown badge, a person without the qualification, a late report) for the
    lab to confirm, choosing the person, or dismiss. Held and dismissed sessions are never
    charged."""

    accepted = "accepted"
    held = "held"
    confirmed = "confirmed"
    dismissed = "dismissed"


BILLABLE_REVIEWS = (UsageReview.accepted, UsageReview.confirmed)


class Badge(SQLModel, table=True):
    """A card or tag a gateway reports when someone uses an instrument; the network knows
    whose it is only because a lab manager or an administrator registered it."""

    __table_args__ = (Index("ix_badge_user_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="user.id")
    # The lab that registered it (None: a network administrator did).
    lab_id: int | None = Field(default=None, foreign_key="lab.id", index=True)
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Gateway(SQLModel, table=True):
    """A box beside the instruments that reports over MQTT; `uid` is its id in topics."""

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=64, unique=True, index=True)
    lab_id: int = Field(foreign_key="lab.id", index=True)
    name: str = Field(default="", max_length=200)
    # The broker login: username (the uid by default) and a PBKDF2 hash of the password.
    mqtt_username: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=300)
    presence: Presence = Field(default=Presence.unknown, sa_type=enum_type(Presence))
    presence_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class GatewayInstrument(SQLModel, table=True):
    """An instrument a gateway serves; a gateway with none listed serves all its lab's."""

    __tablename__ = "gateway_instrument"

    gateway_id: int = Field(foreign_key="gateway.id", primary_key=True, ondelete="CASCADE")
    instrument_id: int = Field(
        foreign_key="instrument.id", primary_key=True, index=True, ondelete="CASCADE"
    )


class TelemetryEvent(SQLModel, table=True):
    """One stored message; a redelivered (gateway, message id) is stored once."""

    __tablename__ = "telemetry_event"
    __table_args__ = (
        UniqueConstraint("gateway_id", "message_id", name="uq_telemetry_event_gateway_message"),
        Index("ix_telemetry_event_instrument_id_ts", "instrument_id", "ts"),
        Index("ix_telemetry_event_received_at", "received_at"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    gateway_id: int = Field(foreign_key="gateway.id")
    message_id: str = Field(max_length=128)
    instrument_id: int = Field(foreign_key="instrument.id")
    ts: datetime = Field(sa_type=UTCDateTime)
    type: EventType = Field(sa_type=enum_type(EventType))
    user_badge: str | None = Field(default=None, max_length=64)
    data: dict | None = Field(default=None, sa_column=Column(JsonData, nullable=True))
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeadLetter(SQLModel, table=True):
    """A message the ingest could not accept, kept with the reason."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    topic: str = Field(max_length=500)
    # Raw bytes (possibly not UTF-8), truncated to a sane size by the ingest.
    payload: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    gateway_uid: str | None = Field(default=None, max_length=64, index=True)
    reason: str = Field(max_length=500)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class UsageSession(SQLModel, table=True):
    """A stretch of real use of an instrument, derived from events, matched to a booking."""

    __tablename__ = "usage_session"
    __table_args__ = (
        CheckConstraint("end_at IS NULL OR end_at >= start_at", name="ordered"),
        CheckConstraint("overtime_minutes >= 0", name="overtime_nonnegative"),
        Index("ix_usage_session_instrument_id_start_at", "instrument_id", "start_at"),
        Index(
            "ix_usage_session_held",
            "instrument_id",
            sqlite_where=sa.text("review = 'held'"),
            postgresql_where=sa.text("review = 'held'"),
        ),
        # At most one open session per instrument.
        Index(
            "uq_usage_session_open_instrument",
            "instrument_id",
            unique=True,
            sqlite_where=sa.text("end_at IS NULL"),
            postgresql_where=sa.text("end_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id")
    gateway_id: int | None = Field(default=None, foreign_key="gateway.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    user_badge: str | None = Field(default=None, max_length=64)
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Time of the latest event seen while open: a silent gateway's sessions close there.
    last_event_at: datetime = Field(sa_type=UTCDateTime)
    booking_id: int | None = Field(default=None, foreign_key="booking.id", index=True)
    kind: UsageKind = Field(default=UsageKind.walk_up, sa_type=enum_type(UsageKind))
    overtime_minutes: int = 0
    samples: int = 0
    kwh: float = 0.0
    closed_reason: str | None = Field(default=None, max_length=32)
    review: UsageReview = Field(default=UsageReview.accepted, sa_type=enum_type(UsageReview))
    hold_reason: str | None = Field(default=None, max_length=200)
    source: UsageSource = Field(
        default=UsageSource.gateway,
        sa_type=enum_type(UsageSource),
        sa_column_kwargs={"server_default": "gateway"},
    )
    # Who recorded a kiosk or manual session, and why (an operator's reason).
    recorded_by_id: int | None = Field(default=None, foreign_key="user.id")
    note: str | None = Field(default=None, max_length=300)
    reviewed_by_id: int | None = Field(default=None, foreign_key="user.id")
    reviewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InstrumentState(SQLModel, table=True):
    """The live state of one instrument, as its gateway last told us."""

    __tablename__ = "instrument_state"

    instrument_id: int = Field(foreign_key="instrument.id", primary_key=True, ondelete="CASCADE")
    state: InstrumentLiveState = Field(
        default=InstrumentLiveState.idle, sa_type=enum_type(InstrumentLiveState)
    )
    since: datetime = Field(sa_type=UTCDateTime)
    last_event_at: datetime = Field(sa_type=UTCDateTime)
    last_event_type: EventType | None = Field(default=None, sa_type=enum_type(EventType))
    gateway_id: int | None = Field(default=None, foreign_key="gateway.id")
    user_badge: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
