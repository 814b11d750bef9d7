"""Request and response shapes of the catalog."""

from __future__ import annotations

from datetime import date, time

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.timeutil import UTCDatetime
from instruments.models import (
    CLASSIFICATION_PATTERN,
    CODE_PATTERN,
    InstrumentStatus,
    PayerClass,
    RateUnit,
)


class Ref(BaseModel):
    id: int
    code: str
    name: str


class BookingRules(BaseModel):
    slot_step_minutes: int = Field(ge=5, le=24 * 60)
    min_minutes: int = Field(ge=5, le=7 * 24 * 60)
    max_minutes: int = Field(ge=5, le=31 * 24 * 60)
    lead_minutes: int = Field(ge=0, le=365 * 24 * 60)
    horizon_days: int = Field(ge=1, le=3 * 365)
    approval_required: bool
    qualification_required: bool
    weekly_quota_hours: int | None = Field(default=None, ge=1, le=168)

    @model_validator(mode="after")
    def _consistent(self) -> BookingRules:
        if self.max_minutes < self.min_minutes:
            raise ValueError("max_minutes must be at least min_minutes")
        if self.min_minutes % self.slot_step_minutes or self.max_minutes % self.slot_step_minutes:
            raise ValueError("min_minutes and max_minutes must be multiples of slot_step_minutes")
        return self


class RatePublic(BaseModel):
    payer_class: PayerClass
    unit: RateUnit
    amount: int
    currency: str


class OpeningInterval(BaseModel):
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    opens: time
    closes: time

    @model_validator(mode="after")
    def _ordered(self) -> OpeningInterval:
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise ValueError("opening hours are local times in LABSHARE_TIMEZONE, without offset")
        if self.opens >= self.closes:
            raise ValueError("opens must be before closes")
        return self


class OpeningHoursIn(BaseModel):
    intervals: list[OpeningInterval] = Field(max_length=7 * 12)


class InstrumentSummary(BaseModel):
    id: int
    code: str
    name: str
    category: str
    model: str
    manufacturer: str
    status: InstrumentStatus
    lab: Ref
    institution: Ref


class InstrumentPublic(InstrumentSummary):
    category_name: str
    description: str
    location: str
    asset_value: int
    commissioned_on: date | None = None
    classification_code: str | None = None
    currency: str
    rules: BookingRules
    rates: list[RatePublic]
    opening_hours: list[OpeningInterval]
    updated_at: UTCDatetime


class InstrumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(pattern=CODE_PATTERN, description="a leaf category code")
    lab: str | None = Field(default=None, pattern=CODE_PATTERN, description="defaults to yours")
    model: str = Field(default="", max_length=200)
    manufacturer: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=4000)
    location: str = Field(default="", max_length=200)
    asset_value: int = Field(default=0, ge=0, le=10**13)
    commissioned_on: date | None = None
    classification_code: str | None = Field(
        default=None, pattern=CLASSIFICATION_PATTERN, description="national classification"
    )
    status: InstrumentStatus = InstrumentStatus.active
    rules: BookingRules | None = None


class InstrumentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, pattern=CODE_PATTERN)
    model: str | None = Field(default=None, max_length=200)
    manufacturer: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    location: str | None = Field(default=None, max_length=200)
    asset_value: int | None = Field(default=None, ge=0, le=10**13)
    commissioned_on: date | None = None
    classification_code: str | None = Field(
        default=None, pattern=CLASSIFICATION_PATTERN, description="national classification"
    )
    status: InstrumentStatus | None = None
    rules: BookingRules | None = None


class CategoryPublic(BaseModel):
    code: str
    name: str
    name_zh: str
    parent: str | None
    instruments: int
