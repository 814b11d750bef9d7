"""Lists of service requests: a person's own, a lab's queue, and what a list shows of each."""

from __future__ import annotations

from sqlmodel import Session, col, select

from billing.services.models import OPEN_STATUSES, RequestStatus, Service, ServiceRequest
from billing.services.requests import is_lab_side
from core.errors import Forbidden
from core.models import User
from instruments.models import Instrument

S = RequestStatus


def requests_mine(session: Session, *, user: User, limit: int = 200) -> list[ServiceRequest]:
    return list(session.exec(
        select(ServiceRequest).where(ServiceRequest.requester_id == user.id)
        .order_by(col(ServiceRequest.id).desc()).limit(limit)
    ).all())  # fmt: skip


def requests_of_lab(
    session: Session, *, user: User, lab_id: int, status: RequestStatus | None = None,
    limit: int = 500,
) -> list[ServiceRequest]:  # fmt: skip
    """The lab's queue: open requests first (oldest first), then the rest, newest first;
    drafts are the requester's own and not shown."""
    if not is_lab_side(user, lab_id):
        raise Forbidden("only the lab sees its requests")
    query = select(ServiceRequest).where(
        ServiceRequest.lab_id == lab_id, ServiceRequest.status != S.draft
    )
    if status is not None:
        query = query.where(ServiceRequest.status == status)
    rows = list(session.exec(query.order_by(col(ServiceRequest.id)).limit(limit)).all())
    open_ = [r for r in rows if r.status in OPEN_STATUSES]
    done = [r for r in rows if r.status not in OPEN_STATUSES]
    return open_ + done[::-1]


def describe(
    session: Session, requests: list[ServiceRequest]
) -> dict[int, tuple[Service, Instrument, User]]:
    """Each request's service, instrument and requester, read in three queries."""
    services = {
        s.id: s
        for s in session.exec(
            select(Service).where(col(Service.id).in_({r.service_id for r in requests}))
        )
    }
    instruments = {
        i.id: i
        for i in session.exec(
            select(Instrument).where(col(Instrument.id).in_({r.instrument_id for r in requests}))
        )
    }
    people = {u.id: u for u in session.exec(
        select(User).where(col(User.id).in_({r.requester_id for r in requests})))}  # fmt: skip
    return {r.id or 0: (services[r.service_id], instruments[r.instrument_id],
                        people[r.requester_id]) for r in requests}  # fmt: skip
