"""Request and response shapes of project accounts, their members and approvals."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Amount = Field(ge=0, lt=10**13)


class AccountChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    grant_number: str | None = Field(default=None, max_length=100)
    cost_centre: str | None = Field(default=None, max_length=100)
    po_number: str | None = Field(default=None, max_length=100)
    budget: int | None = Field(default=None, ge=0, lt=10**13)
    valid_from: date | None = None
    valid_until: date | None = None
    approval: Literal["never", "always", "above"] | None = None
    approval_threshold: int | None = Field(default=None, ge=0, lt=10**13)
    allow_overspend: bool | None = None
    active: bool | None = None


class AccountIn(AccountChange):
    name: str = Field(min_length=1, max_length=200, examples=["NSFC 22175123: perovskite films"])
    budget: int = Field(ge=0, lt=10**13, examples=[5_000_000])
    valid_from: date
    valid_until: date


class Position(BaseModel):
    budget: int
    spent: int
    committed: int
    remaining: int
    used_share: float
    alert: bool = Field(description="80% or more of the budget is spent or committed.")


class AccountPublic(BaseModel):
    id: int
    institution_id: int
    owner_id: int
    name: str
    grant_number: str
    cost_centre: str
    po_number: str
    budget: int
    currency: str
    valid_from: date
    valid_until: date
    approval: str
    approval_threshold: int
    allow_overspend: bool
    active: bool
    position: Position | None = None
    members: list[int] = Field(default_factory=list)


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)


class LinkPublic(BaseModel):
    id: int
    account_id: int
    kind: str
    source_id: int
    chosen_by_id: int
    estimate: int
    status: str
    reason: str
    created_at: datetime
    decided_at: datetime | None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
    reason: str = Field(default="", max_length=1000)


class ChargeTo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: int = Field(ge=1, le=2**31 - 1)
