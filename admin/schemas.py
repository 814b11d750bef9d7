"""Request and response shapes of network administration."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from admin.models import EvaluationResult, PayoutStatus, SettlementStatus
from core.models import Role
from core.periods import PERIOD_PATTERN
from core.timeutil import UTCDatetime
from instruments.models import CODE_PATTERN, InstitutionKind


class InstitutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: InstitutionKind
    is_small_company: bool = False


class InstitutionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: InstitutionKind | None = None
    is_small_company: bool | None = None


class InstitutionPublic(BaseModel):
    id: int
    code: str
    name: str
    kind: InstitutionKind
    is_small_company: bool


class LabIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    institution: str = Field(pattern=CODE_PATTERN, description="the institution's code")
    is_key_lab: bool = False
    no_show_grace_minutes: int = Field(default=30, ge=0, le=24 * 60)


class LabPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    is_key_lab: bool | None = None
    no_show_grace_minutes: int | None = Field(default=None, ge=0, le=24 * 60)


class LabPublic(BaseModel):
    id: int
    code: str
    name: str
    institution_id: int
    is_key_lab: bool
    no_show_grace_minutes: int


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254)
    password: str = Field(min_length=8, max_length=200)
    name: str = Field(default="", max_length=200)
    role: Role = Role.researcher
    institution_id: int | None = None
    lab_id: int | None = None


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    role: Role | None = None
    institution_id: int | None = None
    lab_id: int | None = None
    is_active: bool | None = None


class UserAdminPublic(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    institution_id: int | None
    lab_id: int | None
    is_active: bool
    created_at: UTCDatetime


class AuditEntryPublic(BaseModel):
    id: int
    at: UTCDatetime
    actor_id: int | None
    action: str
    entity: str
    entity_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class EvaluationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: EvaluationResult
    note: str = Field(default="", max_length=1000)


class EvaluationPublic(BaseModel):
    instrument_id: int
    result: EvaluationResult
    note: str
    evaluated_at: UTCDatetime


class ConnectedAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stripe_account_id: str = Field(pattern=r"^acct_[A-Za-z0-9]{1,200}$")


class PolicyPublic(BaseModel):
    id: int
    name: str
    document: dict[str, Any]
    created_at: UTCDatetime
    created_by_id: int | None


class SettlementCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(pattern=PERIOD_PATTERN, description="YYYY-MM")
    policy_id: int | None = Field(default=None, description="defaults to the newest policy")
    note: str = Field(default="", max_length=1000)


class SettlementPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: int | None = None
    note: str | None = Field(default=None, max_length=1000)


class SettlementInstitutionPublic(BaseModel):
    institution_id: int
    code: str
    name: str
    instruments: int
    eligible_instruments: int
    used_hours: float
    external_hours: float
    external_revenue: int
    vouchers_redeemed: int
    claim: int
    capped: bool
    reward: int
    voucher_reimbursement: int


class SettlementInstrumentPublic(BaseModel):
    instrument_id: int
    institution_id: int
    eligible: bool
    reason: str | None
    asset_value: int
    evaluation_failed: bool
    used_hours: float
    open_hours: float
    utilisation: float
    external_hours: float
    external_revenue: int
    outside_users: int
    vouchers_redeemed: int
    score: str
    reward: int
    voucher_reimbursement: int


class SettlementPublic(BaseModel):
    id: int
    period: str
    status: SettlementStatus
    policy_id: int
    currency: str
    budget: int
    total_claim: int
    scale: str
    total_reward: int
    total_voucher_reimbursement: int
    instruments: int
    inputs_hash: str
    note: str
    journal_entry_id: int | None
    created_at: UTCDatetime
    finalized_at: UTCDatetime | None
    institutions: list[SettlementInstitutionPublic] = []


class PayoutPublic(BaseModel):
    id: int
    settlement_id: int
    institution_id: int
    amount: int
    currency: str
    status: PayoutStatus
    stripe_transfer_id: str | None
    error: str | None


class KpiGroup(BaseModel):
    id: int
    code: str
    name: str
    instruments: int
    open_hours: float
    used_hours: float
    external_hours: float
    utilisation: float


class KpisPublic(BaseModel):
    period: str
    currency: str
    # When these figures were computed: the dashboard keeps them a few minutes.
    computed_at: UTCDatetime | None = None
    instruments: int
    idle_instruments: int
    idle_share: float
    booked_hours: float
    used_hours: float
    open_hours: float
    external_hours: float
    external_share: float
    utilisation: float
    revenue: int
    external_revenue: int
    vouchers_used: int
    bookings: int
    no_shows: int
    no_show_rate: float
    people_trained: int
    by_category: list[KpiGroup]
    by_institution: list[KpiGroup]
    by_lab: list[KpiGroup]


class TrendMonth(BaseModel):
    period: str
    booked_hours: float
    used_hours: float
    open_hours: float
    external_hours: float
    utilisation: float


class KpiTrendPublic(BaseModel):
    """The network's hours and utilisation month by month (oldest first)."""

    months: list[TrendMonth]


class InstrumentKpiPublic(BaseModel):
    id: int
    code: str
    name: str
    lab_id: int
    institution_id: int
    category_id: int
    open_hours: float
    used_hours: float
    booked_hours: float
    external_hours: float
    utilisation: float
    idle: bool
    bookings: int
    no_shows: int
    revenue: int
    external_revenue: int
    people_trained: int


class WebhookEndpointIn(BaseModel):
    url: str = Field(
        min_length=8, max_length=2000, examples=["https://erp.example.org/labshare-hooks"]
    )
    events: list[str] = Field(
        min_length=1,
        max_length=40,
        description='event types, or a family ("booking.*"), or "*" for every one',
        examples=[["booking.*", "invoice.paid"]],
    )
    description: str = Field(default="", max_length=300)
    lab_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="a network administrator's endpoint for one lab; a lab manager's is "
        "always their own lab's; none: every event of the network",
    )


class WebhookEndpointPatch(BaseModel):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=40)
    description: str | None = Field(default=None, max_length=300)
    is_active: bool | None = None


class WebhookEndpointPublic(BaseModel):
    id: int
    lab_id: int | None
    url: str
    description: str
    events: list[str]
    is_active: bool
    created_at: UTCDatetime
    secret: str | None = Field(
        default=None,
        description="the signing secret: in the answer to the one who registers or reads it",
    )


class WebhookDeliveryPublic(BaseModel):
    id: int
    endpoint_id: int
    event_id: int
    event_type: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    next_attempt_at: UTCDatetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: UTCDatetime | None
    created_at: UTCDatetime


class WebhookAttemptPublic(BaseModel):
    attempted_at: UTCDatetime
    status_code: int | None
    response: str = Field(description="the start of the endpoint's answer")
    error: str | None
    duration_ms: int


class WebhookDeliveryDetail(WebhookDeliveryPublic):
    payload: dict
    attempts_made: list[WebhookAttemptPublic]
