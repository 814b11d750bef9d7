"""A facility's daily work over HTTP: training (requests, sessions, seats, attendance), a
person's qualifications, incidents, and each person's reminder settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from sqlmodel import select

from booking import assistance, incidents, training
from booking.access import manages_lab
from booking.errors import NotAllowed
from booking.models import (
    Incident,
    IncidentKind,
    IncidentStatus,
    TrainingKind,
    TrainingRequest,
    TrainingSession,
)
from booking.reminders import parse_offsets
from booking.schemas import (
    AssistanceDecision,
    AttendancePolicy,
    AttendanceRecord,
    BlackoutCreated,
    BookingPublic,
    IncidentBlock,
    IncidentClose,
    IncidentIn,
    IncidentPublic,
    MyQualification,
    ReminderSettings,
    TrainingCancel,
    TrainingDecision,
    TrainingRequestIn,
    TrainingRequestPublic,
    TrainingSeatIn,
    TrainingSeatPublic,
    TrainingSessionIn,
    TrainingSessionPublic,
    booking_public,
)
from core.audit import audit_record
from core.deps import CurrentUser, OptionalUser, SessionDep
from core.errors import NotFound
from core.params import only_params
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments.models import CODE_PATTERN, Lab

router = APIRouter(route_class=UnitOfWorkRoute, tags=["training", "incidents"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
LabCode = Annotated[str, Path(pattern=CODE_PATTERN)]


def _request(r: TrainingRequest) -> TrainingRequestPublic:
    return TrainingRequestPublic.model_validate(r, from_attributes=True)


def _session(t: TrainingSession, taken: int) -> TrainingSessionPublic:
    assert t.id is not None
    return TrainingSessionPublic(
        id=t.id, lab_id=t.lab_id, instrument_id=t.instrument_id, kind=t.kind.value,
        level=t.level, title=t.title, trainer_id=t.trainer_id, start=t.start_at, end=t.end_at,
        capacity=t.capacity, seats_taken=taken, valid_days=t.valid_days,
        booking_id=t.booking_id, status=t.status.value,
    )  # fmt: skip


def _incident(i: Incident) -> IncidentPublic:
    return IncidentPublic.model_validate(i, from_attributes=True)


# ------------------------------------------------------------------------------ training


@router.post("/training/requests", response_model=TrainingRequestPublic, status_code=201)
def request_training(
    session: SessionDep, user: CurrentUser, data: TrainingRequestIn
) -> TrainingRequestPublic:
    """Ask a lab to train you on an instrument (or, with lab_id, for its safety induction)."""
    return _request(training.training_request_create(session, user=user, **data.model_dump()))


@router.get("/training/requests", response_model=list[TrainingRequestPublic])
def list_training_requests(session: SessionDep, user: CurrentUser) -> list[TrainingRequestPublic]:
    """Your requests; a lab manager: the lab's, open first."""
    return [_request(r) for r in training.training_requests_list(session, user=user)]


@router.post("/training/requests/{request_id}/decision", response_model=TrainingRequestPublic)
def decide_training_request(
    session: SessionDep, user: CurrentUser, request_id: Id, data: TrainingDecision
) -> TrainingRequestPublic:
    """The lab declines (with a reason), or the person withdraws; 409 unless open."""
    return _request(
        training.training_request_decide(
            session, user=user, request_id=request_id, decline=data.decline, reason=data.reason
        )
    )


@router.post("/training/sessions", response_model=TrainingSessionPublic, status_code=201)
def schedule_training(
    session: SessionDep, user: CurrentUser, data: TrainingSessionIn
) -> TrainingSessionPublic:
    """Schedule a session (the lab's managers): an instrument session holds its time as a
    booking (409 with alternatives when taken)."""
    created = training.training_session_create(
        session, user=user, title=data.title, start=data.start, end=data.end,
        capacity=data.capacity, instrument_id=data.instrument_id, kind=TrainingKind(data.kind),
        level=data.level, valid_days=data.valid_days, trainer_email=data.trainer_email,
    )  # fmt: skip
    return _session(created, 0)


@router.get(
    "/training/sessions",
    response_model=list[TrainingSessionPublic],
    dependencies=[Depends(only_params("lab_id"))],
)
def list_training_sessions(
    session: SessionDep, lab_id: int | None = None
) -> list[TrainingSessionPublic]:
    """Upcoming sessions (of one lab), soonest first, with the seats taken."""
    rows = training.training_sessions_list(session, lab_id=lab_id, upcoming_from=utcnow())
    return [_session(t, n) for t, n in rows]


@router.post(
    "/training/sessions/{session_id}/seats", response_model=TrainingSeatPublic, status_code=201
)
def take_seat(
    session: SessionDep, user: CurrentUser, session_id: Id, data: TrainingSeatIn
) -> TrainingSeatPublic:
    """Take a seat (or, for the lab, give one by email); 409 when the session is full."""
    seat = training.training_seat_take(
        session, user=user, session_id=session_id, person_email=data.person_email
    )
    return TrainingSeatPublic.model_validate(seat, from_attributes=True)


@router.delete("/training/sessions/{session_id}/seat", response_model=TrainingSeatPublic)
def give_up_my_seat(session: SessionDep, user: CurrentUser, session_id: Id) -> TrainingSeatPublic:
    """Give up your seat before the session starts; your request waits for another one,
    and the lab is told the seat is free."""
    seat = training.training_seat_give_up(session, user=user, session_id=session_id)
    return TrainingSeatPublic.model_validate(seat, from_attributes=True)


@router.delete("/training/sessions/{session_id}/seats/{seat_id}", response_model=TrainingSeatPublic)
def give_back_a_seat(
    session: SessionDep, user: CurrentUser, session_id: Id, seat_id: Id
) -> TrainingSeatPublic:
    """Free a seat before the session starts (the lab's managers, or its holder); the
    person is told and their request waits for another session."""
    seat = training.training_seat_give_up(
        session, user=user, session_id=session_id, seat_id=seat_id
    )
    return TrainingSeatPublic.model_validate(seat, from_attributes=True)


@router.get("/training/sessions/{session_id}/seats", response_model=list[TrainingSeatPublic])
def list_seats(session: SessionDep, user: CurrentUser, session_id: Id) -> list[TrainingSeatPublic]:
    """Who has a seat, and what was recorded (the lab's managers)."""
    found = training.training_session_get(session, session_id)
    if not manages_lab(user, found.lab_id):
        raise training.TrainingNotFound("session", session_id)
    return [
        TrainingSeatPublic.model_validate(seat, from_attributes=True)
        for seat, _person in training.seats_of(session, session_id)
    ]


@router.post("/training/sessions/{session_id}/attendance", response_model=TrainingSessionPublic)
def record_attendance(
    session: SessionDep, user: CurrentUser, session_id: Id, data: AttendanceRecord
) -> TrainingSessionPublic:
    """Who attended and passed; passing grants the qualification or the induction."""
    done = training.training_attendance(
        session,
        user=user,
        session_id=session_id,
        records=[training.Attendance(r.user_id, r.attended, r.passed) for r in data.records],
    )
    return _session(done, len(training.seats_of(session, session_id)))


@router.post("/training/sessions/{session_id}/cancel", response_model=TrainingSessionPublic)
def cancel_training(
    session: SessionDep, user: CurrentUser, session_id: Id, data: TrainingCancel
) -> TrainingSessionPublic:
    """Call a session off before it starts: its instrument time is freed (the waitlist
    gets it), seat holders are told why and their requests wait for another session."""
    done = training.training_session_cancel(
        session, user=user, session_id=session_id, reason=data.reason
    )
    return _session(done, 0)


@router.get("/me/qualifications", response_model=list[MyQualification])
def my_qualifications(session: SessionDep, user: CurrentUser) -> list[MyQualification]:
    """Your qualifications, soonest to expire first (expired ones too, to renew)."""
    now = utcnow()
    return [
        MyQualification(
            qualification_id=q.id or 0,
            instrument_id=i.id or 0,
            instrument=i.name,
            level=q.level,
            granted_at=q.granted_at,
            expires_at=q.expires_at,
            expired=q.expires_at is not None and q.expires_at <= now,
        )
        for q, i in training.qualifications_of(session, user=user)
    ]


# ----------------------------------------------------------------------------- incidents


@router.post(
    "/instruments/{instrument_id}/incidents", response_model=IncidentPublic, status_code=201
)
def report_incident(
    session: SessionDep, user: OptionalUser, instrument_id: Id, data: IncidentIn
) -> IncidentPublic:
    """Report a problem with an instrument (signed in, or from its kiosk without an
    account: a few an hour per instrument); the lab's managers are told."""
    found = incidents.incident_report(
        session,
        user=user,
        instrument_id=instrument_id,
        kind=IncidentKind(data.kind),
        description=data.description,
    )
    return _incident(found)


@router.get(
    "/incidents",
    response_model=list[IncidentPublic],
    dependencies=[Depends(only_params("status"))],
)
def list_incidents(
    session: SessionDep, user: CurrentUser, status: IncidentStatus | None = None
) -> list[IncidentPublic]:
    """The lab's incidents, newest first (a researcher: their own reports)."""
    return [_incident(i) for i in incidents.incidents_list(session, user=user, status=status)]


@router.post("/incidents/{incident_id}/blackout", response_model=BlackoutCreated, status_code=201)
def block_from_incident(
    session: SessionDep, user: CurrentUser, incident_id: Id, data: IncidentBlock
) -> BlackoutCreated:
    """Block the instrument for maintenance from an open report; bookings it hits are
    displaced and their owners offered other times."""
    _found, created = incidents.incident_block(
        session, user=user, incident_id=incident_id, start=data.start, end=data.end,
        reason=data.reason,
    )  # fmt: skip
    return created


@router.post("/incidents/{incident_id}/close", response_model=IncidentPublic)
def close_incident(
    session: SessionDep, user: CurrentUser, incident_id: Id, data: IncidentClose
) -> IncidentPublic:
    """Close a report with a note its reporter reads; 409 when closed already."""
    return _incident(
        incidents.incident_close(session, user=user, incident_id=incident_id, note=data.note)
    )


# ----------------------------------------------------------------------------- reminders


@router.get("/me/reminders", response_model=ReminderSettings)
def get_reminders(user: CurrentUser) -> ReminderSettings:
    """When you are reminded before a booking, and the language of your messages."""
    return ReminderSettings(
        minutes_before=parse_offsets(user.reminder_minutes),
        language="zh" if user.language == "zh" else "en",
    )


@router.put("/me/reminders", response_model=ReminderSettings)
def put_reminders(
    session: SessionDep, user: CurrentUser, data: ReminderSettings
) -> ReminderSettings:
    """Set your reminders (each 5 minutes to a week ahead, at most five) and language."""
    offsets = parse_offsets(",".join(str(m) for m in data.minutes_before))
    user.reminder_minutes = ",".join(str(m) for m in offsets)
    user.language = data.language
    session.add(user)
    session.flush()
    return ReminderSettings(minutes_before=offsets, language=data.language)


# --------------------------------------------------------------------------- assisted use


@router.post("/bookings/{booking_id}/assistance", response_model=BookingPublic)
def decide_assistance(
    session: SessionDep, user: CurrentUser, booking_id: Id, data: AssistanceDecision
) -> BookingPublic:
    """The lab's answer to a booking's request for an operator: accept naming the operator
    (the assisted rate applies), or decline with a reason. 409 when none was asked for."""
    booking = assistance.assistance_decide(
        session, user=user, booking_id=booking_id, accept=data.accept,
        operator_email=data.operator_email, reason=data.reason,
    )  # fmt: skip
    return booking_public(booking)


# -------------------------------------------------------------------- attendance policy


def _lab_by_code(session: SessionDep, code: str) -> Lab:
    lab = session.exec(select(Lab).where(Lab.code == code)).first()
    if lab is None:
        raise NotFound(f"no lab {code}")
    return lab


def _policy(lab: Lab) -> AttendancePolicy:
    return AttendancePolicy(
        staffed_from=lab.staffed_from,
        staffed_until=lab.staffed_until,
        release_unchecked_minutes=lab.release_unchecked_minutes,
    )


@router.get("/labs/{code}/attendance-policy", response_model=AttendancePolicy)
def get_attendance_policy(session: SessionDep, code: LabCode) -> AttendancePolicy:
    """The lab's staffed hours (outside them, use needs the out-of-hours level) and when it
    releases a booking nobody checked into."""
    return _policy(_lab_by_code(session, code))


@router.put("/labs/{code}/attendance-policy", response_model=AttendancePolicy)
def put_attendance_policy(
    session: SessionDep, user: CurrentUser, code: LabCode, data: AttendancePolicy
) -> AttendancePolicy:
    """Set them (the lab's managers); audited."""
    lab = _lab_by_code(session, code)
    if not manages_lab(user, lab.id or 0):
        raise NotAllowed("only the lab's managers set its attendance policy")
    before = _policy(lab).model_dump(mode="json")
    lab.staffed_from = data.staffed_from
    lab.staffed_until = data.staffed_until
    lab.release_unchecked_minutes = data.release_unchecked_minutes
    session.add(lab)
    session.flush()
    audit_record(
        session, actor_id=user.id, action="lab.attendance_policy", entity="lab",
        entity_id=lab.id, before=before, after=data.model_dump(mode="json"),
    )  # fmt: skip
    return _policy(lab)
