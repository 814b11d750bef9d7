"""Tables of project accounts: the account, its members, and what is charged to it."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

import booking.models  # noqa: F401  (bookings are charged to accounts)
from core.db import UTCDateTime, enum_type
from core.models import utcnow

Money = sa.BigInteger


class ApprovalRule(StrEnum):
    never = "never"  # members charge it freely (within the budget)
    always = "always"  # the PI approves each booking and service request
    above = "above"  # the PI approves what is estimated above `approval_threshold`


class ProjectAccount(SQLModel, table=True):
    """A PI's project account (grant, cost centre) at their institution."""

    __tablename__ = "project_account"
    __table_args__ = (
        CheckConstraint("budget >= 0 AND approval_threshold >= 0", name="amounts"),
        CheckConstraint("valid_until >= valid_from", name="validity"),
        Index("ix_project_account_institution_id_name", "institution_id", "name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    institution_id: int = Field(foreign_key="institution.id")
    owner_id: int = Field(foreign_key="user.id", index=True)  # the PI
    name: str = Field(max_length=200)
    grant_number: str = Field(default="", max_length=100)
    cost_centre: str = Field(default="", max_length=100)
    po_number: str = Field(default="", max_length=100)
    budget: int = Field(sa_type=Money)
    currency: str = Field(max_length=3)
    valid_from: date
    valid_until: date
    approval: ApprovalRule = Field(default=ApprovalRule.never, sa_type=enum_type(ApprovalRule))
    approval_threshold: int = Field(default=0, sa_type=Money)
    allow_overspend: bool = False
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProjectMember(SQLModel, table=True):
    """A person who may charge the account (the PI always may)."""

    __tablename__ = "project_member"

    account_id: int = Field(foreign_key="project_account.id", primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True, index=True)
    added_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LinkStatus(StrEnum):
    approved = "approved"  # charged to the account
    pending = "pending"  # waiting for the PI; billed to the institution if still waiting
    declined = "declined"  # the PI said no: billed to the institution as anything else
    released = "released"  # the work was called off: nothing to charge or commit


class LinkKind(StrEnum):
    booking = "booking"
    service_request = "service_request"


class AccountLink(SQLModel, table=True):
    """A booking or a service request charged to an account, with what it was estimated at
    when chosen (the budget counts it as committed until it is charged) and the PI's
    approval where the account asks for it."""

    __tablename__ = "account_link"
    __table_args__ = (
        UniqueConstraint("kind", "source_id", name="uq_account_link_source"),
        CheckConstraint("estimate >= 0", name="estimate"),
        Index("ix_account_link_account_id_status", "account_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="project_account.id")
    kind: LinkKind = Field(sa_type=enum_type(LinkKind))
    source_id: int  # the booking's or the service request's id
    chosen_by_id: int = Field(foreign_key="user.id")
    estimate: int = Field(default=0, sa_type=Money)
    status: LinkStatus = Field(sa_type=enum_type(LinkStatus))
    decided_by_id: int | None = Field(default=None, foreign_key="user.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reason: str = Field(default="", max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
