"""A service request's run on the instrument: scheduled as the lab's own time (held like a
booking in the operator's name), moved, recorded, and the request completed with its
results (billing.services.requests holds the steps before it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from billing.services.models import FileKind, RequestStatus, ServiceFile, ServiceRequest
from billing.services.requests import as_lab, expect_status, moved, request_get
from booking import waitlist
from booking.access import lab_person
from booking.models import Booking, BookingStatus
from booking.placement import lab_hold, lab_hold_release
from core.errors import Conflict, Invalid
from core.models import User
from core.timeutil import local_text, utcnow
from instruments.service import instrument_get
from telemetry.models import UsageSession

S = RequestStatus
MAX_RUN = timedelta(days=7)


def request_schedule(
    session: Session,
    *,
    user: User,
    request_id: int,
    start: datetime,
    end: datetime,
    operator_email: str | None = None,
    now: datetime | None = None,
) -> ServiceRequest:
    """Put the run on the instrument: the lab's own time, held like a booking in the
    operator's name (409 with alternatives when taken). Again to move it."""
    now = now or utcnow()
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    as_lab(user, request, "schedule the work")
    expect_status(request, "schedule", S.received, S.in_progress)
    if end <= start:
        raise Invalid("end: must be after start")
    if end - start > MAX_RUN:
        raise Invalid("end: a run lasts at most 7 days")
    if end <= now:
        raise Invalid("end: a run is scheduled ahead (record a past run instead)")
    operator = user
    if operator_email:
        found = lab_person(session, request.lab_id, operator_email)
        if found is None:
            raise Invalid("operator_email: the operator is one of the lab's people")
        operator = found
    instrument = instrument_get(session, request.instrument_id, for_update=True)
    freed = _release(session, request, user, now)
    hold = lab_hold(session, instrument, user_id=operator.id or 0, start=start, end=end,
                    purpose=f"Service request SR-{request.id}", now=now)  # fmt: skip
    if freed is not None:
        # After the new hold, so a move to an overlapping time keeps what it asked for;
        # what the run no longer needs goes to those waiting, as a cancellation's does.
        waitlist.promote(session, instrument_id=instrument.id or 0, start=freed.start_at,
                         end=freed.end_at, now=now)  # fmt: skip
    request.booking_id = hold.id
    request.operator_id = operator.id
    moved(session, request, actor=user, to=S.in_progress, now=now,
           subject=f"work scheduled for {local_text(start)}",
           extra={"booking_id": hold.id, "operator_id": operator.id})  # fmt: skip
    return request


def _release(
    session: Session, request: ServiceRequest, user: User, now: datetime
) -> Booking | None:
    """Cancel the request's earlier hold that has not started (a run moved); the hold
    cancelled, if any."""
    if request.booking_id is None:
        return None
    hold = session.get(Booking, request.booking_id)
    if hold is None or hold.status != BookingStatus.confirmed or hold.start_at <= now:
        return None
    lab_hold_release(session, hold, by_id=user.id, now=now)
    return hold


def request_record_run(
    session: Session, *, user: User, request_id: int, started: datetime, ended: datetime,
    now: datetime | None = None,
) -> ServiceRequest:  # fmt: skip
    """Record when the work ran (when no gateway watched it, or to correct it)."""
    now = now or utcnow()
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    as_lab(user, request, "record the run")
    expect_status(request, "record the run of", S.in_progress)
    if ended <= started:
        raise Invalid("ended: must be after started")
    if ended > now + timedelta(minutes=5):
        raise Invalid("ended: a run is recorded once it has happened")
    request.run_started_at, request.run_ended_at = started, ended
    moved(session, request, actor=user, to=S.in_progress, now=now, subject="run recorded",
           extra={"started": started.isoformat(), "ended": ended.isoformat()})  # fmt: skip
    return request


def run_from_telemetry(
    session: Session, request: ServiceRequest
) -> tuple[datetime, datetime] | None:
    """The run as the instrument's gateway saw it: the usage matched to the run's booking."""
    if request.booking_id is None:
        return None
    first, last = session.exec(
        select(func.min(UsageSession.start_at), func.max(UsageSession.end_at)).where(
            UsageSession.booking_id == request.booking_id
        )
    ).one()
    return (first, last) if first is not None and last is not None else None


def request_complete(
    session: Session, *, user: User, request_id: int, now: datetime | None = None
) -> ServiceRequest:
    """The work is done and its results are attached: the requester is told to download
    them, and the charge run will charge the accepted quote."""
    now = now or utcnow()
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    as_lab(user, request, "complete the request")
    expect_status(request, "complete", S.in_progress)
    results = session.exec(
        select(func.count())
        .select_from(ServiceFile)
        .where(ServiceFile.request_id == request_id, ServiceFile.kind == FileKind.result)
    ).one()
    if not results:
        raise Conflict("upload the results before completing the request",
                       status=request.status.value)  # fmt: skip
    if request.run_started_at is None:
        seen = run_from_telemetry(session, request)
        if seen is not None:
            request.run_started_at, request.run_ended_at = seen
    request.completed_at = now
    moved(session, request, actor=user, to=S.completed, now=now,
           subject="results ready to download",
           body="Download them from the request, and rate the service.")  # fmt: skip
    return request
