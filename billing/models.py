"""Billing tables: rate cards, charging policies, charges, invoices, vouchers, ledger, Stripe."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import JSON, CheckConstraint, Index, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

import billing.projects.models  # noqa: F401  (an invoice may be a project account's)
import booking.models  # noqa: F401  (charges refer to bookings)
import telemetry.models  # noqa: F401  (and to usage sessions)
from core.db import UTCDateTime, enum_type
from core.models import utcnow
from instruments.models import PayerClass, RateUnit

# Money is an integer of minor units; sums of a month easily pass 2**31 fen.
Money = sa.BigInteger


class ChargeBasis(StrEnum):
    """What time a lab bills for a completed booking."""

    booked = "booked"
    used = "used"
    larger = "larger"


# The start of every lab's first policy: everything, until its first change.
POLICY_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ChargingPolicy(SQLModel, table=True):
    """A lab's rules for turning bookings and usage into charges."""

    __tablename__ = "charging_policy"
    __table_args__ = (
        CheckConstraint("no_show_fee >= 0 AND late_cancel_fee >= 0", name="fees_nonnegative"),
        CheckConstraint("late_cancel_window_minutes >= 0", name="window_nonnegative"),
    )

    lab_id: int = Field(foreign_key="lab.id", primary_key=True)
    basis: ChargeBasis = Field(default=ChargeBasis.booked, sa_type=enum_type(ChargeBasis))
    no_show_fee: int = Field(default=0, sa_type=Money)
    late_cancel_window_minutes: int = 0
    late_cancel_fee: int = Field(default=0, sa_type=Money)
    # With basis `booked`, bill the matched usage that ran past the booking's end.
    bill_overtime: bool = True
    currency: str = Field(max_length=3)
    # The policy prices what happened from this moment on; what came before keeps the
    # terms of the version in force then (charging_policy_version).
    effective_from: datetime = Field(default=POLICY_EPOCH, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by_id: int | None = Field(default=None, foreign_key="user.id")


class ChargingPolicyVersion(SQLModel, table=True):
    """A lab's earlier charging policy, with the span it was in force: a change never
    reprices what happened before it (a no-show last week keeps last week's fee)."""

    __tablename__ = "charging_policy_version"
    __table_args__ = (
        CheckConstraint("effective_to > effective_from", name="span"),
        Index("ix_charging_policy_version_lab_id_effective_from", "lab_id", "effective_from"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lab_id: int = Field(foreign_key="lab.id")
    basis: ChargeBasis = Field(sa_type=enum_type(ChargeBasis))
    no_show_fee: int = Field(sa_type=Money)
    late_cancel_window_minutes: int
    late_cancel_fee: int = Field(sa_type=Money)
    bill_overtime: bool
    currency: str = Field(max_length=3)
    effective_from: datetime = Field(sa_type=UTCDateTime)
    effective_to: datetime = Field(sa_type=UTCDateTime)
    updated_by_id: int | None = Field(default=None, foreign_key="user.id")


class RateCard(SQLModel, table=True):
    """A price for one payer class on one instrument, or a lab's default for a category.

    Cards are never rewritten: a new price is a new card from its effective date; the
    open-ended card it follows is closed at that date. PostgreSQL also refuses
    overlapping periods with an exclusion constraint (migration 0004).
    """

    __tablename__ = "rate_card"
    __table_args__ = (
        CheckConstraint(
            "(instrument_id IS NULL) <> (category_id IS NULL)", name="instrument_or_category"
        ),
        CheckConstraint("amount >= 0 AND minimum_charge >= 0", name="amounts_nonnegative"),
        CheckConstraint("assisted_surcharge >= 0", name="surcharge_nonnegative"),
        CheckConstraint("rounding_minutes >= 1 AND rounding_minutes <= 1440", name="rounding"),
        CheckConstraint("effective_to IS NULL OR effective_to > effective_from", name="period"),
        Index("ix_rate_card_instrument_id_effective_from", "instrument_id", "effective_from"),
        Index("ix_rate_card_lab_id_category_id", "lab_id", "category_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lab_id: int = Field(foreign_key="lab.id")
    instrument_id: int | None = Field(default=None, foreign_key="instrument.id")
    category_id: int | None = Field(default=None, foreign_key="category.id")
    payer_class: PayerClass = Field(sa_type=enum_type(PayerClass))
    unit: RateUnit = Field(default=RateUnit.hour, sa_type=enum_type(RateUnit))
    amount: int = Field(sa_type=Money)  # per hour or per sample, minor units
    currency: str = Field(max_length=3)
    minimum_charge: int = Field(default=0, sa_type=Money)
    # Billed time is rounded up to a multiple of this many minutes.
    rounding_minutes: int = 1
    # Added per unit when the lab's staff assisted (see AssistedUse).
    assisted_surcharge: int = Field(default=0, sa_type=Money)
    effective_from: datetime = Field(sa_type=UTCDateTime)
    effective_to: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user.id")


class AssistedUse(SQLModel, table=True):
    """A booking the lab's staff assisted with: its charge carries the card's surcharge."""

    __tablename__ = "assisted_use"

    booking_id: int = Field(foreign_key="booking.id", primary_key=True)
    marked_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PeriodStatus(StrEnum):
    open = "open"
    closed = "closed"


class BillingPeriod(SQLModel, table=True):
    """A month of billing; once closed its invoices are final and it cannot be re-run."""

    __tablename__ = "billing_period"

    period: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    status: PeriodStatus = Field(default=PeriodStatus.open, sa_type=enum_type(PeriodStatus))
    runs: int = 0
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ChargeKind(StrEnum):
    booking = "booking"  # a completed booking (and its matched usage)
    overtime = "overtime"  # matched usage past the booking's end
    no_show = "no_show"
    late_cancel = "late_cancel"
    walk_up = "walk_up"  # a usage session without a booking
    service = "service"  # a completed service request, at its accepted quote


class ChargeUnit(StrEnum):
    minute = "minute"
    sample = "sample"
    fee = "fee"


class Charge(SQLModel, table=True):
    """What one source (a booking or a walk-up session) costs; charged once, ever.

    A snapshot written in bulk (half a million rows a month): the ids it copies from its
    source (payer, provider, lab, instrument, user, booking, usage session, rate card) carry
    no foreign keys, because PostgreSQL checks each one per inserted row with a row lock,
    which would cost more than the rest of the invoice run. Only the invoice is enforced.
    """

    __table_args__ = (
        UniqueConstraint("kind", "source_id", name="uq_charge_kind_source"),
        # Also the index for an invoice's lines.
        UniqueConstraint("invoice_id", "line_no", name="uq_charge_invoice_line"),
        CheckConstraint("amount >= 0 AND quantity >= 0", name="nonnegative"),
        Index("ix_charge_period_payer", "period", "payer_institution_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: ChargeKind = Field(sa_type=enum_type(ChargeKind))
    # The booking id, or the usage session id for walk-ups.
    source_id: int
    period: str = Field(max_length=7)
    payer_institution_id: int
    provider_institution_id: int
    lab_id: int
    instrument_id: int
    user_id: int | None = None
    booking_id: int | None = None
    usage_session_id: int | None = None
    payer_class: PayerClass = Field(sa_type=enum_type(PayerClass))
    unit: ChargeUnit = Field(sa_type=enum_type(ChargeUnit))
    quantity: int  # billed minutes, samples, or 1 for a fee
    unit_amount: int = Field(sa_type=Money)  # per hour, per sample, or the fee
    surcharge_amount: int = Field(default=0, sa_type=Money)
    amount: int = Field(sa_type=Money)  # the line total, surcharge and minimum included
    currency: str = Field(max_length=3)
    rate_card_id: int | None = None
    voucher_eligible: bool = False
    # The project account it is charged to (billing.projects), when the PI's approval holds.
    account_id: int | None = None
    service_start_at: datetime = Field(sa_type=UTCDateTime)
    service_end_at: datetime = Field(sa_type=UTCDateTime)
    invoice_id: int | None = Field(default=None, foreign_key="invoice.id")
    line_no: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InvoiceStatus(StrEnum):
    draft = "draft"  # still collecting the month's charges
    finalized = "finalized"  # closed; kept locally
    sent = "sent"  # finalized on Stripe, awaiting payment
    partially_paid = "partially_paid"  # some of the total has come in
    paid = "paid"
    payment_failed = "payment_failed"


class Invoice(SQLModel, table=True):
    """One payer institution's bill for one month and currency; a project account's charges
    have their own invoice (`account_id`), addressed to the same institution."""

    __table_args__ = (
        # One per payer, account (none: 0), month and currency.
        Index(
            "uq_invoice_payer_account",
            "payer_institution_id",
            sa.text("COALESCE(account_id, 0)"),
            "period",
            "currency",
            unique=True,
        ),
        CheckConstraint("voucher_total >= 0 AND voucher_total <= subtotal", name="voucher"),
        CheckConstraint("total = subtotal - voucher_total", name="total"),
        Index("ix_invoice_period_status", "period", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=100, unique=True)
    payer_institution_id: int = Field(foreign_key="institution.id")
    account_id: int | None = Field(default=None, foreign_key="project_account.id")
    period: str = Field(max_length=7)
    currency: str = Field(max_length=3)
    status: InvoiceStatus = Field(default=InvoiceStatus.draft, sa_type=enum_type(InvoiceStatus))
    line_count: int = 0
    subtotal: int = Field(default=0, sa_type=Money)
    voucher_total: int = Field(default=0, sa_type=Money)
    total: int = Field(default=0, sa_type=Money)
    amount_paid: int = Field(default=0, sa_type=Money)
    stripe_invoice_id: str | None = Field(default=None, max_length=255, unique=True)
    stripe_hosted_url: str | None = Field(default=None, max_length=2000)
    payment_failures: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finalized_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class StripeCustomer(SQLModel, table=True):
    """The Stripe customer of a payer institution."""

    __tablename__ = "stripe_customer"

    institution_id: int = Field(foreign_key="institution.id", primary_key=True)
    stripe_customer_id: str = Field(max_length=255, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StripeEvent(SQLModel, table=True):
    """A webhook event, stored once by Stripe's id: a repeat changes nothing."""

    __tablename__ = "stripe_event"

    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=100)
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    result: str = Field(default="", max_length=200)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class VoucherProgramme(SQLModel, table=True):
    """A public programme paying part of small companies' bills, within a budget."""

    __tablename__ = "voucher_programme"
    __table_args__ = (
        CheckConstraint("budget > 0 AND spent >= 0 AND spent <= budget", name="budget"),
        CheckConstraint("committed >= 0 AND committed <= budget", name="committed"),
        CheckConstraint("coverage_bp > 0 AND coverage_bp <= 10000", name="coverage"),
        CheckConstraint("company_yearly_cap > 0", name="cap_positive"),
        CheckConstraint("ends_on >= starts_on", name="dates"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    currency: str = Field(max_length=3)
    budget: int = Field(sa_type=Money)
    coverage_bp: int  # basis points of an eligible line the programme pays
    company_yearly_cap: int = Field(sa_type=Money)
    starts_on: date
    ends_on: date
    spent: int = Field(default=0, sa_type=Money)
    # What approved vouchers hold of the budget (less what expired unused): approvals stop
    # at the budget.
    committed: int = Field(default=0, sa_type=Money)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class VoucherAllowance(SQLModel, table=True):
    """What one company has used of a programme in one year, and what its vouchers were
    approved for; the database keeps both <= cap."""

    __tablename__ = "voucher_allowance"
    __table_args__ = (
        CheckConstraint("used >= 0 AND used <= cap", name="cap"),
        CheckConstraint("approved >= 0 AND approved <= cap", name="approved_cap"),
    )

    programme_id: int = Field(foreign_key="voucher_programme.id", primary_key=True)
    institution_id: int = Field(foreign_key="institution.id", primary_key=True)
    year: int = Field(primary_key=True)
    cap: int = Field(sa_type=Money)
    used: int = Field(default=0, sa_type=Money)
    approved: int = Field(default=0, sa_type=Money)


class VoucherStatus(StrEnum):
    pending = "pending"  # applied for, awaiting the bureau's review
    approved = "approved"  # issued: `amount`, to be used by `expires_on`
    rejected = "rejected"  # with the reviewer's reason
    expired = "expired"  # past `expires_on`; what was unused went back to the programme


class Voucher(SQLModel, table=True):
    """A small company's innovation voucher (创新券): applied for (申领) with an amount and
    what it needs tested, then approved for an amount within the programme's per-company
    cap, or rejected with a reason."""

    __tablename__ = "voucher"
    __table_args__ = (
        CheckConstraint("requested > 0", name="requested_positive"),
        CheckConstraint("amount >= 0 AND used >= 0 AND used <= amount", name="balance"),
        CheckConstraint("status <> 'approved' OR amount > 0", name="approved_amount"),
        Index("ix_voucher_institution_id_id", "institution_id", "id"),
        Index("ix_voucher_status_id", "status", "id"),
        # One application waiting per company and programme, even when two are sent at once.
        Index(
            "uq_voucher_one_pending",
            "institution_id",
            "programme_id",
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    programme_id: int = Field(foreign_key="voucher_programme.id", index=True)
    institution_id: int = Field(foreign_key="institution.id")
    applicant_id: int = Field(foreign_key="user.id")
    year: int
    requested: int = Field(sa_type=Money)
    needs: str = Field(max_length=2000)  # what the company needs tested, in its words
    status: VoucherStatus = Field(default=VoucherStatus.pending, sa_type=enum_type(VoucherStatus))
    amount: int = Field(default=0, sa_type=Money)  # approved
    used: int = Field(default=0, sa_type=Money)
    reason: str = Field(default="", max_length=1000)  # why rejected, or a reviewer's note
    expires_on: date | None = None
    decided_by_id: int | None = Field(default=None, foreign_key="user.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    @property
    def balance(self) -> int:
        return self.amount - self.used if self.status == VoucherStatus.approved else 0


class VoucherRedemption(SQLModel, table=True):
    """Part of an invoice a programme pays; appended per run, never edited."""

    __tablename__ = "voucher_redemption"
    __table_args__ = (CheckConstraint("amount > 0", name="positive"),)

    id: int | None = Field(default=None, primary_key=True)
    programme_id: int = Field(foreign_key="voucher_programme.id", index=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    institution_id: int = Field(foreign_key="institution.id")
    # The company's voucher that paid it (each use of a voucher is one such row).
    voucher_id: int | None = Field(default=None, foreign_key="voucher.id", index=True)
    year: int
    eligible_amount: int = Field(sa_type=Money)
    amount: int = Field(sa_type=Money)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AccountKind(StrEnum):
    payer_receivable = "payer_receivable"  # what a payer institution owes
    provider_revenue = "provider_revenue"  # what a provider institution earned
    voucher_programme = "voucher_programme"  # what a programme has paid for
    reimbursement = "reimbursement"  # what the programme owes providers for vouchers
    cash = "cash"  # money received (Stripe or bank)


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_account"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=200, unique=True)  # e.g. payer_receivable:INST1:cny
    kind: AccountKind = Field(sa_type=enum_type(AccountKind))
    institution_id: int | None = Field(default=None, foreign_key="institution.id")
    programme_id: int | None = Field(default=None, foreign_key="voucher_programme.id")
    currency: str = Field(max_length=3)


class JournalEntry(SQLModel, table=True):
    """One movement of money: postings that sum to zero. Never edited; corrections are new."""

    __tablename__ = "journal_entry"

    id: int | None = Field(default=None, primary_key=True)
    # Idempotency: one entry per business event (e.g. invoice:12:finalize).
    ref: str = Field(max_length=200, unique=True)
    memo: str = Field(default="", max_length=500)
    invoice_id: int | None = Field(default=None, foreign_key="invoice.id", index=True)
    reverses_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Posting(SQLModel, table=True):
    """A signed amount on one account: debits positive, credits negative."""

    __table_args__ = (CheckConstraint("amount <> 0", name="nonzero"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="journal_entry.id", index=True)
    account_id: int = Field(foreign_key="ledger_account.id", index=True)
    amount: int = Field(sa_type=Money)
    currency: str = Field(max_length=3)


class ClaimStatus(StrEnum):
    submitted = "submitted"  # lines waiting for the bureau's review
    reviewed = "reviewed"  # every line approved or rejected
    noticed = "noticed"  # on a published notice (公示): its decisions are final


class LineDecision(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class VoucherClaim(SQLModel, table=True):
    """A provider's claim for reimbursement of the voucher share of its services (兑付):
    one line per use, each with a digest of its evidence; the claim's digest covers its
    lines' digests (billing.voucher_claims)."""

    __tablename__ = "voucher_claim"

    id: int | None = Field(default=None, primary_key=True)
    programme_id: int = Field(foreign_key="voucher_programme.id", index=True)
    provider_institution_id: int = Field(foreign_key="institution.id", index=True)
    period: str = Field(max_length=7)
    status: ClaimStatus = Field(default=ClaimStatus.submitted, sa_type=enum_type(ClaimStatus))
    lines: int = 0
    claimed: int = Field(default=0, sa_type=Money)
    approved: int = Field(default=0, sa_type=Money)
    digest: str = Field(max_length=64)
    notice_id: int | None = Field(default=None, foreign_key="voucher_notice.id", index=True)
    submitted_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class VoucherClaimLine(SQLModel, table=True):
    """One use claimed: the voucher's share of one charge, and the digest of its evidence
    (the charge, its booking, the matched usage session with its telemetry events, the
    invoice and its payment) as it stood when the claim was submitted."""

    __tablename__ = "voucher_claim_line"
    __table_args__ = (
        # A use is claimed once.
        UniqueConstraint("charge_id", "voucher_id", name="uq_voucher_claim_line_use"),
        CheckConstraint("amount > 0", name="positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    claim_id: int = Field(foreign_key="voucher_claim.id", index=True)
    charge_id: int = Field(foreign_key="charge.id")
    voucher_id: int = Field(foreign_key="voucher.id")
    invoice_id: int = Field(foreign_key="invoice.id")
    amount: int = Field(sa_type=Money)
    evidence_digest: str = Field(max_length=64)
    decision: LineDecision = Field(default=LineDecision.pending, sa_type=enum_type(LineDecision))
    reason: str = Field(default="", max_length=1000)
    decided_by_id: int | None = Field(default=None, foreign_key="user.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class VoucherNotice(SQLModel, table=True):
    """A published list of approved claims, open to anyone for `ends_on` (公示); the
    settlement pays a claim only after its notice has run."""

    __tablename__ = "voucher_notice"

    id: int | None = Field(default=None, primary_key=True)
    programme_id: int = Field(foreign_key="voucher_programme.id", index=True)
    published_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ends_on: date
    claims: int = 0
    approved: int = Field(default=0, sa_type=Money)
    digest: str = Field(max_length=64)  # of its claims' digests
    published_by_id: int | None = Field(default=None, foreign_key="user.id")


class BookingVoucher(SQLModel, table=True):
    """The voucher a small company chose to pay a booking's share with: the invoice draws
    that booking's share from it first."""

    __tablename__ = "booking_voucher"

    booking_id: int = Field(foreign_key="booking.id", primary_key=True)
    voucher_id: int = Field(foreign_key="voucher.id", index=True)
    chosen_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
