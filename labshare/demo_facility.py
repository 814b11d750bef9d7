"""The demo's daily work of a facility: the demo lab releases bookings nobody checks into,
trains people (a request waiting, a session with a seat taken), has problems reported,
and the demo researcher holds a booking running now, to check in at its kiosk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from billing.projects.accounts import account_create
from billing.services.catalog import service_create
from billing.services.requests import request_create, request_quote
from booking.incidents import incident_close, incident_report
from booking.models import Booking, BookingStatus, IncidentKind
from booking.timeline import load_timeline
from booking.training import training_request_create, training_seat_take, training_session_create
from core.errors import AppError
from core.models import User
from core.timeutil import utcnow
from instruments.models import Instrument, Lab, QualificationLevel
from instruments.seed import DEMO_DOMAIN, DEMO_LAB
from telemetry.models import GatewayInstrument

RELEASE_MINUTES = 15


@dataclass
class FacilitySeeded:
    training_session: int | None = None
    kiosk_instrument: int | None = None
    incidents: int = 0
    service: int | None = None
    account: int | None = None


def _person(session: Session, name: str) -> User:
    return session.exec(select(User).where(User.email == f"{name}@{DEMO_DOMAIN}")).one()


def seed_facility(session: Session) -> FacilitySeeded:
    """For a fresh demo database, once, after the history."""
    out = FacilitySeeded()
    now = utcnow()
    lab = session.exec(select(Lab).where(Lab.code == DEMO_LAB)).one()
    lab.release_unchecked_minutes = RELEASE_MINUTES
    session.add(lab)
    manager, researcher, engineer = (
        _person(session, "manager"),
        _person(session, "researcher"),
        _person(session, "engineer"),
    )
    instruments = list(
        session.exec(
            select(Instrument).where(Instrument.lab_id == lab.id).order_by(col(Instrument.id))
        )
    )
    watched = set(session.exec(select(GatewayInstrument.instrument_id)).all())
    trained = next((i for i in instruments if i.qualification_required), instruments[0])
    trained.qualification_required = True
    session.add(trained)
    session.flush()

    # Training: the engineer asks; a session in two days at 10:00 local holds the time.
    training_request_create(
        session, user=engineer, instrument_id=trained.id,
        level=QualificationLevel.independent, note="for our coating samples",
    )  # fmt: skip
    day = (now + timedelta(days=2)).replace(hour=2, minute=0, second=0, microsecond=0)
    for shift in range(10):
        start = day + timedelta(days=shift)
        try:
            created = training_session_create(
                session, user=manager, title=f"{trained.name}: first steps", start=start,
                end=start + timedelta(hours=2), capacity=4, instrument_id=trained.id,
                level=QualificationLevel.independent, valid_days=365, now=now,
            )  # fmt: skip
        except AppError:
            continue
        out.training_session = created.id
        training_seat_take(session, user=researcher, session_id=created.id or 0, now=now)
        break

    # The kiosk: a booking of the researcher's running now on an instrument no gateway
    # watches, so it can be checked into with its PIN.
    hour = now.replace(minute=0, second=0, microsecond=0)
    for instrument in instruments:
        if instrument.id in watched or instrument.qualification_required:
            continue
        timeline = load_timeline(session, instrument, hour, hour + timedelta(hours=2))
        if [c for c in timeline.conflicts(hour, hour + timedelta(hours=2)) if c.kind != "closed"]:
            continue
        session.add(
            Booking(
                instrument_id=instrument.id or 0, user_id=researcher.id or 0, start_at=hour,
                end_at=hour + timedelta(hours=2), status=BookingStatus.confirmed,
                purpose="Demo: check in at the kiosk",
            )
        )  # fmt: skip
        out.kiosk_instrument = instrument.id
        break

    # Incidents: one open, one closed with its note.
    target = instruments[min(1, len(instruments) - 1)]
    incident_report(session, user=researcher, instrument_id=target.id or 0,
                    kind=IncidentKind.dirty, description="Sample residue left in the holder.")  # fmt: skip
    closed = incident_report(session, user=engineer, instrument_id=trained.id or 0,
                             kind=IncidentKind.broken, description="The cooling fan is loud.")  # fmt: skip
    incident_close(session, user=manager, incident_id=closed.id or 0,
                   note="Fan replaced; tested for an hour.")  # fmt: skip
    out.incidents = 2

    # The service desk: the lab analyses samples sent to it; the engineer's company asked
    # for six and the lab has quoted, so the engineer can accept and follow it.
    analysed = instruments[0]
    service = service_create(session, user=manager, instrument_id=analysed.id or 0, data={
        "name": f"Sample analysis on {analysed.name}, per sample",
        "description": "Send the samples with the sheet; the report comes as PDF and CSV.",
        "prices": {"internal": 15000, "academic": 20000, "company": 40000},
        "turnaround_days": 7, "sample_types": "powder, thin film, solution",
        "form": [
            {"name": "material", "label": "Material", "type": "text", "required": True},
            {"name": "hazard", "label": "Hazard class", "type": "choice", "required": True,
             "choices": ["none", "irritant", "toxic"]},
            {"name": "sheet", "label": "Sample sheet", "type": "file"},
        ],
    })  # fmt: skip
    asked = request_create(session, user=engineer, service_id=service.id or 0, units=6,
                           answers={"material": "TiO2 coating", "hazard": "none"},
                           note="Two batches, three each.", submit=True)  # fmt: skip
    request_quote(session, user=manager, request_id=asked.id or 0, now=now)
    out.service = service.id

    # A project account: the researcher is its PI; charges above 2,000 wait for approval.
    today = now.date()
    account = account_create(session, user=researcher, data={
        "name": "NSFC 22175123: perovskite thin films", "grant_number": "22175123",
        "cost_centre": "CC-4410", "budget": 5_000_000, "valid_from": today - timedelta(days=90),
        "valid_until": today + timedelta(days=640), "approval": "above",
        "approval_threshold": 200_000,
    })  # fmt: skip
    out.account = account.id
    session.flush()
    return out
