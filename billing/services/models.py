"""Tables of the service desk: a lab's services, requests for them, and their files."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import JSON, CheckConstraint, Index
from sqlmodel import Column, Field, SQLModel

import billing.projects.models  # noqa: F401  (a request may be charged to an account)
import booking.models  # noqa: F401  (a request's run is a booking)
from core.db import UTCDateTime, enum_type
from core.models import utcnow

Money = sa.BigInteger


class Service(SQLModel, table=True):
    """Work a lab offers on one of its instruments, priced per unit (a sample, usually) by
    payer class, with the form a requester fills in."""

    __table_args__ = (
        CheckConstraint("turnaround_days >= 0", name="turnaround"),
        CheckConstraint("max_units >= 1", name="max_units"),
        Index("ix_service_lab_id_active", "lab_id", "active"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lab_id: int = Field(foreign_key="lab.id")
    instrument_id: int = Field(foreign_key="instrument.id", index=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=4000)
    unit: str = Field(default="sample", max_length=40)
    # {payer class: minor units per unit}; a class without a price falls back as rate
    # cards do (internal -> academic, small_company -> company).
    prices: dict = Field(sa_column=Column(JSON, nullable=False))
    currency: str = Field(max_length=3)
    turnaround_days: int = 10
    sample_types: str = Field(default="", max_length=500)  # comma-separated, as people write
    # The request form: [{"name", "label", "type": text|number|choice|file, "required",
    # "choices"}]; answers are checked against it (billing.services.forms).
    form: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    max_units: int = 500
    active: bool = True
    created_by_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RequestStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"
    quoted = "quoted"
    accepted = "accepted"
    received = "received"
    in_progress = "in_progress"
    completed = "completed"
    cancelled = "cancelled"
    rejected = "rejected"


OPEN_STATUSES = (
    RequestStatus.draft, RequestStatus.submitted, RequestStatus.quoted, RequestStatus.accepted,
    RequestStatus.received, RequestStatus.in_progress,
)  # fmt: skip


class ServiceRequest(SQLModel, table=True):
    """One person's request for a service: the form, the samples, the quote they accepted,
    the run on the instrument, the results and their rating."""

    __tablename__ = "service_request"
    __table_args__ = (
        CheckConstraint("units >= 1", name="units"),
        CheckConstraint("quote_total IS NULL OR quote_total >= 0", name="quote"),
        CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="rating"),
        Index("ix_service_request_lab_id_status", "lab_id", "status"),
        Index("ix_service_request_requester_id_id", "requester_id", "id"),
        # The charge run's work list: completed requests of a month.
        Index("ix_service_request_status_completed_at", "status", "completed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    service_id: int = Field(foreign_key="service.id", index=True)
    lab_id: int = Field(foreign_key="lab.id")
    instrument_id: int = Field(foreign_key="instrument.id")
    requester_id: int = Field(foreign_key="user.id")
    status: RequestStatus = Field(default=RequestStatus.draft, sa_type=enum_type(RequestStatus))
    units: int = 1
    answers: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    note: str = Field(default="", max_length=2000)
    payer_class: str = Field(max_length=32)
    currency: str = Field(max_length=3)
    # The project account it is charged to (billing.projects; its link holds the approval).
    account_id: int | None = Field(default=None, foreign_key="project_account.id")
    estimate_total: int = Field(default=0, sa_type=Money)
    # The lab's quote: [{"description", "quantity", "unit_amount", "amount"}], its total and
    # what a voucher was expected to pay of it when quoted.
    quote_lines: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    quote_total: int | None = Field(default=None, sa_type=Money)
    quote_voucher: int = Field(default=0, sa_type=Money)
    quote_valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    quote_note: str = Field(default="", max_length=2000)
    # The run: a booking holding the instrument in the operator's name (the lab's own time,
    # never charged as a booking; the request is charged instead).
    booking_id: int | None = Field(default=None, foreign_key="booking.id", index=True)
    operator_id: int | None = Field(default=None, foreign_key="user.id")
    run_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    run_ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reason: str = Field(default="", max_length=1000)  # why cancelled or rejected
    rating: int | None = None
    rating_comment: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 1


class FileKind(StrEnum):
    attachment = "attachment"  # sent by the requester (a form's file field, a sample sheet)
    result = "result"  # uploaded by the lab


class ServiceFile(SQLModel, table=True):
    """A file of a request, stored under LABSHARE_FILES_DIR by a random key; served only to
    the requester and the lab, through the request."""

    __tablename__ = "service_file"

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="service_request.id", index=True)
    kind: FileKind = Field(sa_type=enum_type(FileKind))
    field: str = Field(default="", max_length=64)  # the form's file field it answers, if any
    name: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int = Field(sa_type=sa.BigInteger)
    sha256: str = Field(max_length=64)
    storage_key: str = Field(max_length=64, unique=True)
    uploaded_by_id: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
