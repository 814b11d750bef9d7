"""Request and response shapes of billing."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from billing.models import ChargeBasis
from core.settings import CURRENCY_EXPONENTS
from core.timeutil import UTCDatetime
from instruments.models import CODE_PATTERN, PayerClass, RateUnit

# Anything above a million units of a currency per hour or sample is a typo, not a price.
MAX_PRICE = 100_000_000
MAX_BUDGET = 10**13


def _currency(value: str) -> str:
    value = value.lower()
    if value not in CURRENCY_EXPONENTS:
        raise ValueError(f"unknown currency {value!r}")
    return value


class RateCardIn(BaseModel):
    """A price for one payer class, on an instrument or as a lab's default for a category."""

    model_config = ConfigDict(extra="forbid")

    instrument_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    category: str | None = Field(default=None, pattern=CODE_PATTERN)
    lab: str | None = Field(
        default=None, pattern=CODE_PATTERN, description="For a category default: the lab code"
    )
    payer_class: PayerClass
    unit: RateUnit = RateUnit.hour
    amount: int = Field(ge=0, le=MAX_PRICE, description="Minor units per hour or per sample")
    currency: str | None = Field(default=None, description="ISO 4217; the network's by default")
    minimum_charge: int = Field(default=0, ge=0, le=MAX_PRICE)
    rounding_minutes: int = Field(
        default=1, ge=1, le=1440, description="Billed time is rounded up to this step"
    )
    assisted_surcharge: int = Field(
        default=0, ge=0, le=MAX_PRICE, description="Added per hour or sample when assisted"
    )
    effective_from: UTCDatetime | None = Field(default=None, description="Now by default")
    effective_to: UTCDatetime | None = None

    @field_validator("currency")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _currency(value)

    @model_validator(mode="after")
    def _one_target(self) -> RateCardIn:
        if (self.instrument_id is None) == (self.category is None):
            raise ValueError("give exactly one of instrument_id or category")
        if self.effective_from and self.effective_to and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        return self


class RateCardPublic(BaseModel):
    id: int
    lab: str
    instrument_id: int | None
    category: str | None
    payer_class: PayerClass
    unit: RateUnit
    amount: int
    currency: str
    minimum_charge: int
    rounding_minutes: int
    assisted_surcharge: int
    effective_from: UTCDatetime
    effective_to: UTCDatetime | None


class RateCardEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effective_to: UTCDatetime


class ChargingPolicyIn(BaseModel):
    """How a lab bills: booked time, used time or the larger; fees for no-shows and late cancels."""

    model_config = ConfigDict(extra="forbid")

    basis: ChargeBasis = ChargeBasis.booked
    no_show_fee: int = Field(default=0, ge=0, le=MAX_PRICE)
    late_cancel_window_minutes: int = Field(default=0, ge=0, le=30 * 24 * 60)
    late_cancel_fee: int = Field(default=0, ge=0, le=MAX_PRICE)
    bill_overtime: bool = True
    currency: str | None = None
    effective_from: UTCDatetime | None = Field(
        default=None,
        description="From when it prices bookings and usage; by default as early as "
        "allowed (after the lab's last invoice run and the latest closed month)",
    )

    @field_validator("currency")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _currency(value)


class ChargingPolicyPublic(BaseModel):
    lab: str
    basis: ChargeBasis
    no_show_fee: int
    late_cancel_window_minutes: int
    late_cancel_fee: int
    bill_overtime: bool
    currency: str
    effective_from: UTCDatetime


class AssistedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assisted: bool


class ProgrammeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    currency: str | None = None
    budget: int = Field(gt=0, le=MAX_BUDGET)
    coverage_bp: int = Field(gt=0, le=10000, description="Basis points of eligible lines")
    company_yearly_cap: int = Field(gt=0, le=MAX_BUDGET)
    starts_on: date
    ends_on: date

    @field_validator("currency")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _currency(value)


class ProgrammePublic(BaseModel):
    id: int
    code: str
    name: str
    currency: str
    budget: int
    spent: int
    remaining: int
    committed: int = Field(description="What approved vouchers hold of the budget")
    coverage_bp: int
    company_yearly_cap: int
    starts_on: date
    ends_on: date


class InvoiceLine(BaseModel):
    line_no: int
    description: str
    kind: str
    instrument: str
    lab: str
    user: str | None
    start: UTCDatetime
    end: UTCDatetime
    quantity: int
    unit: str
    unit_amount: int
    surcharge_amount: int
    amount: int
    voucher_eligible: bool


class LabCharge(InvoiceLine):
    """A charge for a lab's instrument, as the lab sees it: who pays, on which invoice."""

    payer: str
    payer_class: str
    invoice: str | None


class VoucherLine(BaseModel):
    programme: str
    name: str
    amount: int


class InvoicePublic(BaseModel):
    id: int
    number: str
    period: str
    payer: dict[str, object]
    account_id: int | None = Field(
        default=None, description="The project account whose charges this invoice bills."
    )
    status: str
    currency: str
    # The whole invoice's figures are for the payer's admins (and network admins): null in a
    # view of one's own lines ("lines_scope": "own"), which carries `own_subtotal` instead.
    subtotal: int | None
    voucher_total: int | None
    total: int | None
    amount_paid: int | None
    line_count: int
    vouchers: list[VoucherLine]
    lines: list[InvoiceLine]
    # "all", or "own" when a researcher sees only their own lines of the institution's bill.
    lines_scope: str
    own_subtotal: int | None = None
    stripe_invoice_id: str | None
    finalized_at: UTCDatetime | None
    paid_at: UTCDatetime | None


class RunOut(BaseModel):
    period: str
    charges: dict[str, int]
    invoices_created: int
    lines_added: int
    vouchers_granted: int
    invoices: int


class VoucherApply(BaseModel):
    """An application for an innovation voucher (申领)."""

    model_config = ConfigDict(extra="forbid")

    programme_id: int = Field(ge=1, le=2**31 - 1)
    amount: int = Field(gt=0, le=MAX_BUDGET, description="Minor units")
    needs: str = Field(min_length=1, max_length=2000, description="What needs testing")
    credit_code: str = Field(
        min_length=1, max_length=40, description="The company's unified social credit code"
    )


class VoucherApprove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int | None = Field(
        default=None, gt=0, le=MAX_BUDGET, description="Minor units; what was asked by default"
    )
    note: str = Field(default="", max_length=1000)


class VoucherReject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class VoucherPublic(BaseModel):
    id: int
    programme: str
    programme_id: int
    institution: str
    year: int
    requested: int
    needs: str
    status: str
    amount: int
    used: int
    balance: int
    reason: str
    expires_on: date | None
    decided_at: UTCDatetime | None
    created_at: UTCDatetime


class VoucherUse(BaseModel):
    """One use of a voucher: the part of an invoice it paid (minor units)."""

    voucher_id: int
    invoice_id: int
    invoice_number: str
    period: str
    eligible: int
    amount: int
    at: UTCDatetime


PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programme_id: int = Field(ge=1, le=2**31 - 1)
    period: str = Field(pattern=PERIOD_PATTERN, description="YYYY-MM")


class ClaimUse(BaseModel):
    """A voucher's share of one charge of your services (minor units)."""

    charge_id: int
    voucher_id: int
    invoice_id: int
    amount: int


class ClaimDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
    line_ids: list[int] | None = Field(
        default=None, max_length=10_000, description="All undecided lines when left out"
    )
    reason: str = Field(default="", max_length=1000)


class ClaimLinePublic(BaseModel):
    id: int
    charge_id: int
    voucher_id: int
    invoice_id: int
    amount: int
    evidence_digest: str
    decision: str
    reason: str
    decided_at: UTCDatetime | None


class ClaimPublic(BaseModel):
    id: int
    programme: str
    programme_id: int
    provider: str
    period: str
    status: str
    lines: int
    claimed: int
    approved: int
    digest: str
    notice_id: int | None
    created_at: UTCDatetime
    line_items: list[ClaimLinePublic]


class NoticeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programme_id: int = Field(ge=1, le=2**31 - 1)
    days: int = Field(default=7, ge=1, le=90, description="How long the notice runs")


class NoticeClaim(BaseModel):
    provider: str
    period: str
    lines: int
    approved: int
    digest: str


class NoticePublic(BaseModel):
    id: int
    programme: str
    programme_name: str
    currency: str
    published_at: UTCDatetime
    ends_on: date
    approved: int
    digest: str
    claims: list[NoticeClaim]


class VoucherChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voucher_id: int = Field(ge=1, le=2**31 - 1)
