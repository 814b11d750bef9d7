"""Network administration tables: subsidy policies, settlements and their lines, payouts,
instrument evaluations and the providers' Stripe Connect accounts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import JSON, CheckConstraint, Index, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

import billing.models  # noqa: F401  (a finalized settlement refers to its journal entry)
from core.db import UTCDateTime, enum_type
from core.models import utcnow

Money = sa.BigInteger
# Seconds of a month across a whole institution pass 2**31 easily.
Seconds = sa.BigInteger


class SubsidyPolicy(SQLModel, table=True):
    """A subsidy policy as submitted; never edited (a change is a new policy)."""

    __tablename__ = "subsidy_policy"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    document: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user.id")


class SettlementStatus(StrEnum):
    preview = "preview"
    finalized = "finalized"


class Settlement(SQLModel, table=True):
    """One month's sharing rewards and voucher reimbursements; immutable once finalized."""

    __table_args__ = (
        CheckConstraint("total_reward >= 0 AND total_voucher_reimbursement >= 0", name="totals"),
        CheckConstraint("total_reward <= budget", name="within_budget"),
        # At most one finalized settlement per month.
        Index(
            "uq_settlement_finalized_period",
            "period",
            unique=True,
            sqlite_where=sa.text("status = 'finalized'"),
            postgresql_where=sa.text("status = 'finalized'"),
        ),
        Index("ix_settlement_period_id", "period", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=7)  # YYYY-MM
    policy_id: int = Field(foreign_key="subsidy_policy.id", index=True)
    status: SettlementStatus = Field(
        default=SettlementStatus.preview, sa_type=enum_type(SettlementStatus)
    )
    currency: str = Field(max_length=3)
    budget: int = Field(sa_type=Money)
    # The sum of capped claims before pro-rata scaling, rounded to the cent for display.
    total_claim: int = Field(default=0, sa_type=Money)
    # The pro-rata factor as an exact fraction "p/q" ("1/1" when the budget covers all).
    scale: str = Field(default="1/1", max_length=200)
    total_reward: int = Field(default=0, sa_type=Money)
    total_voucher_reimbursement: int = Field(default=0, sa_type=Money)
    instruments: int = 0
    institutions: int = 0
    # SHA-256 of the canonical inputs: policy and every instrument's figures.
    inputs_hash: str = Field(max_length=64)
    note: str = Field(default="", max_length=1000)
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    finalized_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finalized_by_id: int | None = Field(default=None, foreign_key="user.id")


class SettlementInstitution(SQLModel, table=True):
    """One institution's figures and outcome in a settlement."""

    __tablename__ = "settlement_institution"

    settlement_id: int = Field(foreign_key="settlement.id", primary_key=True, ondelete="CASCADE")
    institution_id: int = Field(foreign_key="institution.id", primary_key=True)
    instruments: int = 0
    eligible_instruments: int = 0
    used_seconds: int = Field(default=0, sa_type=Seconds)
    external_seconds: int = Field(default=0, sa_type=Seconds)
    external_revenue: int = Field(default=0, sa_type=Money)
    vouchers_redeemed: int = Field(default=0, sa_type=Money)
    claim: int = Field(default=0, sa_type=Money)
    capped: bool = False
    reward: int = Field(default=0, sa_type=Money)
    voucher_reimbursement: int = Field(default=0, sa_type=Money)


class SettlementInstrument(SQLModel, table=True):
    """One instrument's figures, score and outcome in a settlement."""

    __tablename__ = "settlement_instrument"
    __table_args__ = (
        Index(
            "ix_settlement_instrument_settlement_id_institution_id",
            "settlement_id",
            "institution_id",
        ),
    )

    settlement_id: int = Field(foreign_key="settlement.id", primary_key=True, ondelete="CASCADE")
    instrument_id: int = Field(foreign_key="instrument.id", primary_key=True)
    institution_id: int = Field(foreign_key="institution.id")
    eligible: bool
    reason: str | None = Field(default=None, max_length=100)
    asset_value: int = Field(default=0, sa_type=Money)
    evaluation_failed: bool = False
    used_seconds: int = 0
    open_seconds: int = 0
    external_seconds: int = 0
    external_revenue: int = Field(default=0, sa_type=Money)
    outside_users: int = 0
    vouchers_redeemed: int = Field(default=0, sa_type=Money)
    utilisation_bp: int = 0  # basis points, for display
    score: str = Field(default="0", max_length=40)  # exact decimal text, 4 places
    reward: int = Field(default=0, sa_type=Money)
    voucher_reimbursement: int = Field(default=0, sa_type=Money)


class EvaluationResult(StrEnum):
    passed = "passed"
    failed = "failed"


class InstrumentEvaluation(SQLModel, table=True):
    """The instrument's latest sharing evaluation; a failed one bars it from rewards."""

    __tablename__ = "instrument_evaluation"

    instrument_id: int = Field(foreign_key="instrument.id", primary_key=True, ondelete="CASCADE")
    result: EvaluationResult = Field(sa_type=enum_type(EvaluationResult))
    note: str = Field(default="", max_length=1000)
    evaluated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    recorded_by_id: int | None = Field(default=None, foreign_key="user.id")


class ConnectedAccount(SQLModel, table=True):
    """The Stripe Connect account a provider institution is paid into."""

    __tablename__ = "connected_account"

    institution_id: int = Field(foreign_key="institution.id", primary_key=True)
    stripe_account_id: str = Field(max_length=255, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PayoutStatus(StrEnum):
    recorded = "recorded"  # Stripe not configured: to be paid by bank transfer
    paid = "paid"  # a Stripe transfer was created
    failed = "failed"


class Payout(SQLModel, table=True):
    """What a finalized settlement pays one institution: reward plus voucher reimbursement."""

    __table_args__ = (
        UniqueConstraint(
            "settlement_id", "institution_id", name="uq_payout_settlement_institution"
        ),
        CheckConstraint("amount > 0", name="positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    settlement_id: int = Field(foreign_key="settlement.id", index=True)
    institution_id: int = Field(foreign_key="institution.id")
    amount: int = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    status: PayoutStatus = Field(sa_type=enum_type(PayoutStatus))
    stripe_transfer_id: str | None = Field(default=None, max_length=255, unique=True)
    error: str | None = Field(default=None, max_length=500)
    # Each try has its own idempotency key: Stripe replays a failed key's error forever.
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SettlementClaim(SQLModel, table=True):
    """A voucher claim a settlement pays: recorded when the settlement is finalized, so a
    claim is paid once."""

    __tablename__ = "settlement_claim"

    settlement_id: int = Field(foreign_key="settlement.id", primary_key=True)
    claim_id: int = Field(foreign_key="voucher_claim.id", primary_key=True, unique=True)


class WebhookEndpoint(SQLModel, table=True):
    """An address outside labshare that hears chosen events: a lab's (its own events) or the
    network's (`lab_id` null: every event). Deliveries are signed with `secret`."""

    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    lab_id: int | None = Field(default=None, foreign_key="lab.id", index=True)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=300)
    # Event types, or a family such as "booking.*".
    events: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret: str = Field(max_length=100)
    is_active: bool = True
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeliveryStatus(StrEnum):
    pending = "pending"  # to be sent (again) at next_attempt_at
    delivered = "delivered"  # the endpoint answered 2xx
    failed = "failed"  # every attempt failed; a person may replay it


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: sent until the endpoint answers 2xx, with backoff."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
        Index("ix_webhook_delivery_endpoint", "endpoint_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoint.id", ondelete="CASCADE")
    event_id: int = Field(foreign_key="event.id")
    status: DeliveryStatus = Field(
        default=DeliveryStatus.pending, sa_type=enum_type(DeliveryStatus)
    )
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # A sender holds a delivery until then while it posts it, so a second sender skips it.
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=300)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    """One try at a delivery, as the endpoint answered it (the start of its body)."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_delivery.id", index=True, ondelete="CASCADE")
    attempted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status_code: int | None = None
    response: str = Field(default="", max_length=1000)
    error: str | None = Field(default=None, max_length=300)
    duration_ms: int = 0
