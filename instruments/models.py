"""The catalog: institutions, labs, categories, instruments, and what labs publish about them."""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Index,
    UniqueConstraint,
    and_,
    false,
    or_,
    text,
)
from sqlmodel import Field, SQLModel, col

from core.db import UTCDateTime, enum_type
from core.models import utcnow

CODE_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
# A code of the national classification of research instruments: 2, 4 or 6 digits.
CLASSIFICATION_PATTERN = r"^\d{2}(\d{2}){0,2}$"


class InstitutionKind(StrEnum):
    university = "university"
    institute = "institute"
    hospital = "hospital"
    company = "company"
    small_company = "small_company"


class PayerClass(StrEnum):
    """Who pays, relative to the instrument's institution."""

    internal = "internal"  # same institution
    academic = "academic"  # another university, institute or hospital
    company = "company"
    small_company = "small_company"


class InstrumentStatus(StrEnum):
    active = "active"
    maintenance = "maintenance"
    retired = "retired"


class Institution(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    kind: InstitutionKind = Field(sa_type=enum_type(InstitutionKind))
    # Flag set by administrators: eligible for innovation vouchers.
    is_small_company: bool = False
    # The unified social credit code (统一社会信用代码) of a company, checked by its last
    # character (instruments.credit_code); a voucher application records it.
    credit_code: str | None = Field(default=None, max_length=18, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Lab(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    institution_id: int = Field(foreign_key="institution.id", index=True)
    is_key_lab: bool = False
    # Minutes after a booking starts with no usage before it counts as a no-show.
    no_show_grace_minutes: int = 30
    # When staff are in (local time, Monday to Friday): outside them, a qualified person
    # books only with the out-of-hours level.
    staffed_from: time = Field(default=time(8, 30), sa_column_kwargs={"server_default": "08:30:00"})
    staffed_until: time = Field(
        default=time(17, 30), sa_column_kwargs={"server_default": "17:30:00"}
    )
    # Minutes after a booking starts with nobody checked in (at the kiosk or by a gateway)
    # before its time is released to the waitlist as a no-show; null: never released.
    release_unchecked_minutes: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Category(SQLModel, table=True):
    """A two-level taxonomy: groups (parent_id null) and leaves."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    name_zh: str = Field(default="", max_length=200)
    parent_id: int | None = Field(default=None, foreign_key="category.id", index=True)


class Instrument(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint("slot_step_minutes > 0", name="slot_step_positive"),
        CheckConstraint("min_minutes > 0 AND max_minutes >= min_minutes", name="length_bounds"),
        CheckConstraint("lead_minutes >= 0 AND horizon_days > 0", name="window_bounds"),
        CheckConstraint("asset_value >= 0", name="asset_value_nonnegative"),
        Index("ix_instrument_lab_id_id", "lab_id", "id"),
        Index("ix_instrument_category_id_id", "category_id", "id"),
        # The newest change to any instrument, read from one index entry: what the
        # per-process caches of instrument rules check they are current against
        # (booking.elsewhere).
        Index("ix_instrument_updated_at", "updated_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    category_id: int = Field(foreign_key="category.id")
    lab_id: int = Field(foreign_key="lab.id")
    model: str = Field(default="", max_length=200)
    manufacturer: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=4000)
    location: str = Field(default="", max_length=200)
    # Purchase value in minor units of the network currency: a cryo-EM's 45 million CNY
    # is 4.5e9 fen, past a 32-bit integer, hence BIGINT.
    asset_value: int = Field(default=0, sa_type=BigInteger)
    # For the yearly sharing assessment (开放共享评价考核): when it entered service, and its
    # code in the national classification of research facilities and instruments
    # (科研设施与仪器分类与代码): two digits per level, two or three levels.
    commissioned_on: date | None = None
    classification_code: str | None = Field(default=None, max_length=6)
    # No index on status: three values, and an index on it misleads SQLite's planner into
    # sorting most of the table for `status=active ORDER BY id LIMIT n`.
    status: InstrumentStatus = Field(
        default=InstrumentStatus.active, sa_type=enum_type(InstrumentStatus)
    )
    # Booking rules.
    slot_step_minutes: int = 30
    min_minutes: int = 30
    max_minutes: int = 8 * 60
    lead_minutes: int = 60
    horizon_days: int = 90
    approval_required: bool = False
    qualification_required: bool = False
    # The lab's safety induction must be done before training on (and booking) it.
    induction_required: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Hours per person per ISO week on this instrument; null means no quota.
    weekly_quota_hours: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OpeningHours(SQLModel, table=True):
    """One open interval on a weekday (0 = Monday), in the network's time zone."""

    __tablename__ = "opening_hours"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday_range"),
        CheckConstraint("opens < closes", name="opens_before_closes"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id", index=True, ondelete="CASCADE")
    weekday: int
    opens: time
    closes: time


class BlackoutKind(StrEnum):
    maintenance = "maintenance"
    internal = "internal"
    imported = "imported"  # busy time from a lab's own calendar


class Blackout(SQLModel, table=True):
    """Time the instrument is not bookable: maintenance, internal use, or imported busy time."""

    __table_args__ = (
        CheckConstraint("end_at > start_at", name="nonempty"),
        Index("ix_blackout_instrument_id_start_at", "instrument_id", "start_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id", ondelete="CASCADE")
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    kind: BlackoutKind = Field(default=BlackoutKind.maintenance, sa_type=enum_type(BlackoutKind))
    reason: str = Field(default="", max_length=500)
    # For imported busy time: the calendar it came from and the event's UID.
    source_id: int | None = Field(default=None, index=True)
    source_uid: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class QualificationLevel(StrEnum):
    """What a qualification lets its holder do. Supervised and independent use is within
    the lab's staffed hours (supervised: staff stand by); out-of-hours use needs its own."""

    supervised = "supervised"
    independent = "independent"
    out_of_hours = "out_of_hours"


class Qualification(SQLModel, table=True):
    """A person trained and allowed to use an instrument on their own.

    A lab grants it by email: to an account (user_id), or to an address that has none yet
    (user_id null), which the account claims when it is created. A revoked one stays on
    record with its reason; only grants in force (`revoked_at` null) let anyone book.
    """

    __table_args__ = (
        # One grant in force per person (and per address still without an account).
        Index(
            "uq_qualification_in_force_user",
            "user_id",
            "instrument_id",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
        Index(
            "uq_qualification_in_force_email",
            "email",
            "instrument_id",
            unique=True,
            sqlite_where=text("revoked_at IS NULL AND user_id IS NULL"),
            postgresql_where=text("revoked_at IS NULL AND user_id IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(default=None, foreign_key="user.id", index=True, ondelete="CASCADE")
    instrument_id: int = Field(foreign_key="instrument.id", index=True, ondelete="CASCADE")
    email: str | None = Field(default=None, max_length=254)
    granted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    granted_by_id: int | None = Field(default=None, foreign_key="user.id")
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by_id: int | None = Field(default=None, foreign_key="user.id")
    revoke_reason: str | None = Field(default=None, max_length=500)
    # Grants made before levels existed, and grants that name none, let their holder book
    # any open time, as they always did: out_of_hours.
    level: QualificationLevel = Field(
        default=QualificationLevel.out_of_hours,
        sa_type=enum_type(QualificationLevel),
        sa_column_kwargs={"server_default": "out_of_hours"},
    )
    # After this the holder can no longer book (null: it does not expire); renewed by a
    # new grant, which updates this row.
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def qualification_in_force(now: datetime | None = None) -> ColumnElement[bool]:
    """The SQL condition of a grant that holds at `now` (default: this moment)."""
    return and_(
        col(Qualification.revoked_at).is_(None),
        or_(
            col(Qualification.expires_at).is_(None),
            col(Qualification.expires_at) > (now or utcnow()),
        ),
    )


def qualification_not_revoked() -> ColumnElement[bool]:
    """A grant not revoked, expired or not: the one row per person a renewal updates."""
    return col(Qualification.revoked_at).is_(None)


class RateUnit(StrEnum):
    hour = "hour"
    sample = "sample"


class Rate(SQLModel, table=True):
    """A published price for one payer class; billing's rate cards build on these."""

    __table_args__ = (
        UniqueConstraint(
            "instrument_id", "payer_class", "unit", name="uq_rate_instrument_class_unit"
        ),
        CheckConstraint("amount >= 0", name="amount_nonnegative"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instrument_id: int = Field(foreign_key="instrument.id", index=True, ondelete="CASCADE")
    payer_class: PayerClass = Field(sa_type=enum_type(PayerClass))
    unit: RateUnit = Field(default=RateUnit.hour, sa_type=enum_type(RateUnit))
    amount: int  # minor units
    currency: str = Field(max_length=3)
