"""Incidents: a problem someone reports with an instrument (it broke, it was left dirty,
results looked wrong), from the instrument's page or its kiosk.

The lab's managers are told at once and see the open reports; they may block the
instrument from a report (a maintenance blackout, which displaces the bookings it hits as
any blackout does) and close it with a note, which the reporter reads. A kiosk report needs
no account; a few per instrument an hour are taken, so a tablet cannot flood a lab.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from booking.access import lab_managers, manages, require_manages
from booking.blackouts import blackout_create
from booking.models import Incident, IncidentKind, IncidentStatus
from booking.notifications.outbox import notify
from booking.schemas import BlackoutCreate, BlackoutCreated
from core.audit import audit_record
from core.errors import Conflict, Invalid, NotFound, TooManyRequests
from core.events import emit
from core.models import Role, User
from core.timeutil import utcnow
from instruments.service import instrument_get

# Reports without an account, per instrument, per hour.
ANONYMOUS_PER_HOUR = 5


class IncidentNotFound(NotFound):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"no incident {incident_id}")


def _event(session: Session, type: str, incident: Incident, lab_id: int) -> None:
    emit(
        session,
        type,
        lab_id=lab_id,
        data={
            "incident_id": incident.id,
            "instrument_id": incident.instrument_id,
            "kind": incident.kind.value,
            "status": incident.status.value,
            "blackout_id": incident.blackout_id,
        },
    )


def incident_report(
    session: Session,
    *,
    user: User | None,
    instrument_id: int,
    kind: IncidentKind,
    description: str,
    now: datetime | None = None,
) -> Incident:
    """Report a problem; the lab's managers are told."""
    now = now or utcnow()
    # Anonymous reports are counted under the instrument's lock, so a burst cannot pass
    # the hourly limit between the count and the insert.
    instrument = instrument_get(session, instrument_id, for_update=user is None)
    description = description.strip()
    if len(description) < 3:
        raise Invalid("description: say what happened")
    if user is None:
        recent = session.exec(
            select(func.count())
            .select_from(Incident)
            .where(
                Incident.instrument_id == instrument_id,
                col(Incident.reporter_id).is_(None),
                col(Incident.created_at) > now - timedelta(hours=1),
            )
        ).one()
        if recent >= ANONYMOUS_PER_HOUR:
            raise TooManyRequests(
                "this instrument has several reports from its kiosk in the last hour; "
                "sign in to report another",
                retry_after=600,
            )
    incident = Incident(
        instrument_id=instrument_id,
        reporter_id=user.id if user else None,
        kind=kind,
        description=description[:2000],
        created_at=now,
    )
    session.add(incident)
    session.flush()
    for manager in lab_managers(session, instrument.lab_id):
        notify(
            session,
            user_id=manager.id or 0,
            kind="incident_reported",
            subject=f"Problem reported with {instrument.name}: {kind.value}",
            body=description[:2000],
            data={"incident_id": incident.id, "instrument_id": instrument_id},
        )
    _event(session, "incident.reported", incident, instrument.lab_id)
    audit_record(
        session,
        actor_id=user.id if user else None,
        action="incident.report",
        entity="incident",
        entity_id=incident.id,
        after={"instrument_id": instrument_id, "kind": kind.value},
    )
    return incident


def incidents_list(
    session: Session, *, user: User, status: IncidentStatus | None = None, limit: int = 200
) -> list[Incident]:
    """The incidents of the lab's instruments (a network administrator: all); a researcher
    sees their own reports."""
    from instruments.models import Instrument

    query = select(Incident).order_by(col(Incident.id).desc()).limit(limit)
    if user.role == Role.lab_manager and user.lab_id is not None:
        query = query.join(Instrument, col(Instrument.id) == Incident.instrument_id).where(
            Instrument.lab_id == user.lab_id
        )
    elif user.role != Role.network_admin:
        query = query.where(Incident.reporter_id == user.id)
    if status is not None:
        query = query.where(Incident.status == status)
    return list(session.exec(query).all())


def incident_get(session: Session, *, user: User, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise IncidentNotFound(incident_id)
    instrument = instrument_get(session, incident.instrument_id)
    if not (manages(user, instrument) or incident.reporter_id == user.id):
        raise IncidentNotFound(incident_id)
    return incident


def incident_block(
    session: Session,
    *,
    user: User,
    incident_id: int,
    start: datetime,
    end: datetime,
    reason: str = "",
) -> tuple[Incident, BlackoutCreated]:
    """Open a maintenance blackout from an open report (its lab's managers)."""
    incident = incident_get(session, user=user, incident_id=incident_id)
    instrument = instrument_get(session, incident.instrument_id)
    require_manages(user, instrument)
    if incident.status != IncidentStatus.open:
        raise Conflict(
            f"incident {incident_id} is {incident.status.value}", status=incident.status.value
        )
    if incident.blackout_id is not None:
        raise Conflict(f"incident {incident_id} already has blackout {incident.blackout_id}")
    created = blackout_create(
        session,
        user=user,
        instrument_id=incident.instrument_id,
        data=BlackoutCreate(
            start=start,
            end=end,
            kind="maintenance",
            reason=(reason or f"{incident.kind.value}: {incident.description}")[:500],
        ),
    )
    incident.blackout_id = created.id
    session.add(incident)
    session.flush()
    return incident, created


def incident_close(
    session: Session, *, user: User, incident_id: int, note: str, now: datetime | None = None
) -> Incident:
    """Close a report with a note its reporter reads (its lab's managers)."""
    incident = incident_get(session, user=user, incident_id=incident_id)
    instrument = instrument_get(session, incident.instrument_id)
    require_manages(user, instrument)
    note = note.strip()
    if not note:
        raise Invalid("note: say what was done")
    if incident.status == IncidentStatus.closed:
        raise Conflict(f"incident {incident_id} is closed", status=incident.status.value)
    incident.status = IncidentStatus.closed
    incident.closing_note = note[:1000]
    incident.closed_by_id = user.id
    incident.closed_at = now or utcnow()
    session.add(incident)
    session.flush()
    if incident.reporter_id is not None:
        notify(
            session,
            user_id=incident.reporter_id,
            kind="incident_closed",
            subject=f"Your report about {instrument.name} was closed",
            body=note[:1000],
            data={"incident_id": incident.id, "instrument_id": instrument.id},
        )
    _event(session, "incident.closed", incident, instrument.lab_id)
    audit_record(
        session,
        actor_id=user.id,
        action="incident.close",
        entity="incident",
        entity_id=incident.id,
        after={"note": note[:1000]},
    )
    return incident
