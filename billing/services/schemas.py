"""Request and response shapes of services, service requests, quotes and files."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billing.services.models import Service, ServiceFile, ServiceRequest
from core.timeutil import UTCDatetime

Amount = Field(ge=0, lt=10**12)
Text = Field(default="", max_length=2000)


class FormField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", examples=["concentration"])
    label: str = Field(default="", max_length=200, examples=["Concentration (mg/L)"])
    type: Literal["text", "number", "choice", "file"] = "text"
    required: bool = False
    choices: list[str] = Field(default_factory=list, max_length=50)


class Prices(BaseModel):
    """Minor units per unit, by payer class; a class left out falls back (internal pays the
    academic price, a small company the company price)."""

    model_config = ConfigDict(extra="forbid")

    internal: int | None = Field(default=None, ge=0, lt=10**12)
    academic: int | None = Field(default=None, ge=0, lt=10**12)
    company: int | None = Field(default=None, ge=0, lt=10**12)
    small_company: int | None = Field(default=None, ge=0, lt=10**12)

    def given(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ServiceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    unit: str | None = Field(default=None, min_length=1, max_length=40)
    prices: Prices | None = None
    turnaround_days: int | None = Field(default=None, ge=0, le=365)
    sample_types: str | None = Field(default=None, max_length=500)
    form: list[FormField] | None = Field(default=None, max_length=30)
    max_units: int | None = Field(default=None, ge=1, le=10000)
    active: bool | None = None

    def changes(self) -> dict[str, object]:
        data: dict[str, object] = self.model_dump(exclude_none=True, exclude={"prices", "form"})
        if self.prices is not None:
            data["prices"] = self.prices.given()
        if self.form is not None:
            data["form"] = [f.model_dump() for f in self.form]
        return data


class ServiceIn(ServiceChange):
    instrument_id: int = Field(ge=1, le=2**31 - 1)
    name: str = Field(min_length=1, max_length=200, examples=["LC-MS/MS quantitation"])
    prices: Prices = Field(examples=[{"academic": 30000, "company": 60000}])


class ServicePublic(BaseModel):
    id: int
    lab_id: int
    instrument_id: int
    name: str
    description: str
    unit: str
    prices: dict[str, int]
    currency: str
    turnaround_days: int
    sample_types: str
    form: list[FormField]
    max_units: int
    active: bool


def service_public(service: Service) -> ServicePublic:
    return ServicePublic.model_validate(service, from_attributes=True)


Answer = str | int | float | None


class ServiceRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_id: int = Field(ge=1, le=2**31 - 1)
    units: int = Field(default=1, ge=1, le=10000)
    answers: dict[str, Answer] = Field(default_factory=dict, max_length=30)
    note: str = Text
    submit: bool = Field(default=False, description="Send it to the lab at once (else a draft).")
    account_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1,
        description="Charge it to this project account (one you may charge today).",
    )  # fmt: skip


class ServiceRequestChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    units: int | None = Field(default=None, ge=1, le=10000)
    answers: dict[str, Answer] | None = Field(default=None, max_length=30)
    note: str | None = Field(default=None, max_length=2000)


class QuoteLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=0, lt=10**9)
    unit_amount: int = Field(ge=0, lt=10**9)


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[QuoteLine] | None = Field(
        default=None, min_length=1, max_length=50,
        description="Leave out for the service at the requester's price for the units asked.",
    )  # fmt: skip
    note: str = Text
    valid_days: int = Field(default=30, ge=1, le=365)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1000)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: UTCDatetime
    end: UTCDatetime
    operator_email: str | None = Field(default=None, max_length=254)


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    started: UTCDatetime
    ended: UTCDatetime


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5)
    comment: str = Text


class ServiceFilePublic(BaseModel):
    id: int
    kind: str
    field: str
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
    url: str


def file_public(record: ServiceFile) -> ServiceFilePublic:
    return ServiceFilePublic(
        id=record.id or 0, kind=record.kind.value, field=record.field, name=record.name,
        content_type=record.content_type, size=record.size, sha256=record.sha256,
        created_at=record.created_at,
        url=f"/api/v1/service-requests/{record.request_id}/files/{record.id}",
    )  # fmt: skip


class QuoteLinePublic(QuoteLine):
    amount: int


class ServiceRequestPublic(BaseModel):
    id: int
    service_id: int
    lab_id: int
    instrument_id: int
    requester_id: int
    status: str
    units: int
    answers: dict[str, Answer]
    note: str
    payer_class: str
    currency: str
    account_id: int | None
    account_approval: str | None = Field(
        default=None, description="The account's charge: approved, pending (the PI's "
        "approval), declined or released; null without an account.",
    )  # fmt: skip
    estimate_total: int
    quote_lines: list[QuoteLinePublic]
    quote_total: int | None
    quote_voucher: int
    quote_valid_until: datetime | None
    quote_note: str
    booking_id: int | None
    operator_id: int | None
    run_started_at: datetime | None
    run_ended_at: datetime | None
    reason: str
    rating: int | None
    rating_comment: str
    created_at: datetime
    submitted_at: datetime | None
    accepted_at: datetime | None
    received_at: datetime | None
    completed_at: datetime | None
    files: list[ServiceFilePublic] = Field(default_factory=list)


def request_public(
    request: ServiceRequest, files: list[ServiceFile] | None = None, approval: str | None = None
) -> ServiceRequestPublic:
    data = ServiceRequestPublic.model_validate(request, from_attributes=True)
    data.status = request.status.value
    data.account_approval = approval
    data.files = [file_public(f) for f in files or []]
    return data


class Estimate(BaseModel):
    payer_class: str
    unit_amount: int
    units: int
    total: int
    voucher_pays: int
    you_pay: int
    currency: str
