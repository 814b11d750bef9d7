"""Training: a person asks, the lab schedules a session, records who attended and passed,
and passing grants the qualification (at the session's level, for its validity) or, for a
safety induction, the induction that some instruments need first.

An instrument session holds the instrument's time as a booking in the trainer's name: the
same conflict check and the same database constraint as any booking (two sessions, or a
session and a booking, never overlap); closed hours do not stop it (a lab trains when it
chooses). Seats are counted under a lock on the session, so a full session refuses the
next person with a 409 however many ask at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from booking import waitlist
from booking.access import lab_managers, lab_person, manages_lab, require_manages
from booking.errors import NotAllowed
from booking.models import (
    Booking,
    BookingStatus,
    SafetyInduction,
    TrainingKind,
    TrainingRequest,
    TrainingRequestStatus,
    TrainingSeat,
    TrainingSession,
    TrainingSessionStatus,
)
from booking.notifications.outbox import notify
from booking.placement import lab_hold, lab_hold_release
from booking.qualifications import qualification_grant
from booking.schemas import QualificationGrant
from core.audit import audit_record
from core.db import is_postgres
from core.errors import Conflict, Invalid, NotFound
from core.models import Role, User
from core.timeutil import local_text, utcnow
from instruments.models import (
    Category,
    Instrument,
    Lab,
    Qualification,
    QualificationLevel,
    qualification_not_revoked,
)
from instruments.service import instrument_get

MAX_SESSION = timedelta(hours=12)


class TrainingNotFound(NotFound):
    def __init__(self, what: str, ident: int) -> None:
        super().__init__(f"no training {what} {ident}")


# ------------------------------------------------------------------------------ requests


def training_request_create(
    session: Session,
    *,
    user: User,
    instrument_id: int | None = None,
    lab_id: int | None = None,
    category_id: int | None = None,
    level: QualificationLevel = QualificationLevel.independent,
    note: str = "",
) -> TrainingRequest:
    """Ask to be trained on an instrument, on a category the lab trains for (`lab_id` and
    `category_id`: any of its instruments in it), or with only `lab_id` for the lab's
    safety induction; the lab's managers are told. One open request per subject."""
    assert user.id is not None
    if instrument_id is not None:
        instrument = instrument_get(session, instrument_id)
        lab_id, category_id = instrument.lab_id, None
        subject = instrument.name
    elif lab_id is not None:
        lab = session.get(Lab, lab_id)
        if lab is None:
            raise NotFound(f"no lab {lab_id}")
        subject = f"the safety induction of {lab.name}"
        if category_id is not None:
            category = session.get(Category, category_id)
            has_one = session.exec(
                select(Instrument.id).where(
                    Instrument.lab_id == lab_id, Instrument.category_id == category_id
                )
            ).first()
            if category is None or has_one is None:
                raise Invalid("category_id: the lab has no instrument in this category")
            subject = f"{category.name} at {lab.name}"
    else:
        raise Invalid("instrument_id: say which instrument (or lab_id for its safety induction)")
    open_already = session.exec(
        select(TrainingRequest.id).where(
            TrainingRequest.user_id == user.id,
            TrainingRequest.lab_id == lab_id,
            _same(col(TrainingRequest.instrument_id), instrument_id),
            _same(col(TrainingRequest.category_id), category_id),
            col(TrainingRequest.status).in_(
                [TrainingRequestStatus.open, TrainingRequestStatus.scheduled]
            ),
        )
    ).first()
    if open_already is not None:
        raise Conflict(f"you already asked for this training (request {open_already})")
    request = TrainingRequest(
        user_id=user.id,
        lab_id=lab_id,
        instrument_id=instrument_id,
        category_id=category_id,
        level=level.value,
        note=note.strip()[:1000],
    )
    session.add(request)
    session.flush()
    for manager in lab_managers(session, lab_id):
        notify(
            session,
            user_id=manager.id or 0,
            kind="training_requested",
            subject=f"Training requested: {subject}",
            body=f"{user.name or user.email} asks for {level.value.replace('_', ' ')} training. "
            f"{request.note}".strip(),
            data={"training_request_id": request.id, "instrument_id": instrument_id},
        )
    return request


def _same(column: Any, value: int | None) -> Any:
    return column.is_(None) if value is None else column == value


def _answered_by(session: Session, training: TrainingSession) -> list[Any]:
    """The open requests a session answers: for its instrument, for the instrument's
    category at its lab, or (an induction) for the lab's induction."""
    open_at_lab = [
        TrainingRequest.lab_id == training.lab_id,
        TrainingRequest.status == TrainingRequestStatus.open,
    ]
    if training.instrument_id is None:
        induction = col(TrainingRequest.instrument_id).is_(None)
        return [*open_at_lab, induction, col(TrainingRequest.category_id).is_(None)]
    instrument = instrument_get(session, training.instrument_id)
    return [
        *open_at_lab,
        or_(
            col(TrainingRequest.instrument_id) == training.instrument_id,
            col(TrainingRequest.category_id) == instrument.category_id,
        ),
    ]


def _matching_request(
    session: Session, person_id: int, training: TrainingSession
) -> TrainingRequest | None:
    """The person's open request this session answers."""
    query = select(TrainingRequest).where(
        TrainingRequest.user_id == person_id, *_answered_by(session, training)
    )
    return session.exec(query.order_by(col(TrainingRequest.id))).first()


def _still_asking(session: Session, training: TrainingSession, *, besides: int) -> int:
    """How many others have asked for what the session teaches and have no seat in it."""
    seated = select(TrainingSeat.user_id).where(TrainingSeat.session_id == training.id)
    return session.exec(
        select(func.count(func.distinct(TrainingRequest.user_id))).where(
            *_answered_by(session, training),
            col(TrainingRequest.user_id).not_in(seated),
            TrainingRequest.user_id != besides,
        )
    ).one()


def training_requests_list(session: Session, *, user: User) -> list[TrainingRequest]:
    """A lab manager: the lab's requests, open first; anyone else: their own."""
    query = select(TrainingRequest)
    if user.role == Role.lab_manager and user.lab_id is not None:
        query = query.where(TrainingRequest.lab_id == user.lab_id)
    elif user.role != Role.network_admin:
        query = query.where(TrainingRequest.user_id == user.id)
    order = col(TrainingRequest.status) != TrainingRequestStatus.open
    return list(session.exec(query.order_by(order, col(TrainingRequest.id).desc()).limit(300)))


def training_request_decide(
    session: Session, *, user: User, request_id: int, decline: bool, reason: str = ""
) -> TrainingRequest:
    """Decline (with a reason the person reads) or, by the person, withdraw a request."""
    request = session.get(TrainingRequest, request_id)
    if request is None or not (request.user_id == user.id or manages_lab(user, request.lab_id)):
        raise TrainingNotFound("request", request_id)
    if request.status != TrainingRequestStatus.open:
        raise Conflict(f"the request is {request.status.value}", status=request.status.value)
    if decline:
        if not manages_lab(user, request.lab_id):
            raise NotAllowed("only the lab declines a training request")
        if not reason.strip():
            raise Invalid("reason: say why, the person reads it")
        request.status = TrainingRequestStatus.declined
        request.reason = reason.strip()[:500]
        notify(
            session,
            user_id=request.user_id,
            kind="training_declined",
            subject="Your training request was declined",
            body=request.reason,
            data={"training_request_id": request.id},
        )
    else:
        if request.user_id != user.id:
            raise NotAllowed("only the person who asked withdraws a request")
        request.status = TrainingRequestStatus.withdrawn
    session.add(request)
    session.flush()
    return request


# ------------------------------------------------------------------------------ sessions


def training_session_create(
    session: Session,
    *,
    user: User,
    title: str,
    start: datetime,
    end: datetime,
    capacity: int,
    instrument_id: int | None = None,
    kind: TrainingKind = TrainingKind.instrument,
    level: QualificationLevel = QualificationLevel.independent,
    valid_days: int | None = 365,
    trainer_email: str | None = None,
    now: datetime | None = None,
) -> TrainingSession:
    """Schedule a session (a lab's managers). An instrument session holds the time as a
    booking: SlotUnavailable (409, with alternatives) when the time is taken."""
    now = now or utcnow()
    if end <= start:
        raise Invalid("end: must be after start")
    if end - start > MAX_SESSION:
        raise Invalid("end: a session lasts at most 12 hours")
    if start < now:
        raise Invalid("start: a session is scheduled ahead")
    if not 1 <= capacity <= 100:
        raise Invalid("capacity: between 1 and 100")
    instrument: Instrument | None = None
    if kind == TrainingKind.instrument:
        if instrument_id is None:
            raise Invalid("instrument_id: an instrument session needs its instrument")
        instrument = instrument_get(session, instrument_id, for_update=True)
        require_manages(user, instrument)
        lab_id = instrument.lab_id
    else:
        if user.lab_id is None:
            raise NotAllowed("a lab's manager schedules its safety induction")
        lab_id = user.lab_id
        if instrument_id is not None:
            raise Invalid("instrument_id: a safety induction is the lab's, not an instrument's")
    if not manages_lab(user, lab_id):
        raise NotAllowed("only the lab's managers schedule training")
    trainer = user
    if trainer_email:
        found = lab_person(session, lab_id, trainer_email)
        if found is None:
            raise Invalid("trainer_email: the trainer is one of the lab's people")
        trainer = found
    assert trainer.id is not None
    booking_id = None
    if instrument is not None:
        assert instrument.id is not None
        hold = lab_hold(
            session, instrument, user_id=trainer.id, start=start, end=end,
            purpose=f"Training: {title.strip()}", now=now,
        )  # fmt: skip
        booking_id = hold.id
    training = TrainingSession(
        lab_id=lab_id,
        instrument_id=instrument_id,
        kind=kind,
        level=level.value,
        title=title.strip()[:200],
        trainer_id=trainer.id,
        start_at=start,
        end_at=end,
        capacity=capacity,
        valid_days=valid_days,
        booking_id=booking_id,
    )
    session.add(training)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="training.schedule",
        entity="training_session",
        entity_id=training.id,
        after={"instrument_id": instrument_id, "kind": kind.value, "capacity": capacity},
    )
    return training


def training_session_cancel(
    session: Session, *, user: User, session_id: int, reason: str, now: datetime | None = None
) -> TrainingSession:
    """Call a session off before it starts (the lab's managers): its hold on the instrument
    is cancelled (the time goes to the waitlist), seat holders are told why, and their
    requests wait for another session."""
    now = now or utcnow()
    training = training_session_get(session, session_id, lock=True)
    if not manages_lab(user, training.lab_id):
        raise NotAllowed("only the lab's managers schedule training")
    if training.status != TrainingSessionStatus.scheduled or training.start_at <= now:
        raise Conflict(
            "only a session that has not started can be cancelled", status=training.status.value
        )
    if not reason.strip():
        raise Invalid("reason: say why, the person reads it")
    training.status = TrainingSessionStatus.cancelled
    session.add(training)
    if training.booking_id is not None:
        hold = session.get(Booking, training.booking_id)
        if hold is not None and hold.status == BookingStatus.confirmed:
            lab_hold_release(session, hold, by_id=user.id, now=now)
            waitlist.promote(
                session, instrument_id=hold.instrument_id, start=hold.start_at, end=hold.end_at,
                now=now,
            )  # fmt: skip
    for seat, person in seats_of(session, session_id):
        request = session.exec(
            select(TrainingRequest).where(TrainingRequest.seat_id == seat.id)
        ).first()
        if request is not None:
            request.status, request.seat_id = TrainingRequestStatus.open, None
            session.add(request)
        notify(
            session,
            user_id=person.id or 0,
            kind="training_cancelled",
            subject=f"Training cancelled: {training.title}",
            body=f"The session at {local_text(training.start_at)} is cancelled: {reason.strip()}",
            data={"training_session_id": training.id},
        )
        session.delete(seat)
    session.flush()
    audit_record(
        session, actor_id=user.id, action="training.cancel", entity="training_session",
        entity_id=training.id, after={"reason": reason.strip()[:500]},
    )  # fmt: skip
    return training


def training_session_get(
    session: Session, session_id: int, *, lock: bool = False
) -> TrainingSession:
    query = select(TrainingSession).where(TrainingSession.id == session_id)
    if lock and is_postgres(session):
        query = query.with_for_update()
    training = session.exec(query).first()
    if training is None:
        raise TrainingNotFound("session", session_id)
    return training


def training_sessions_list(
    session: Session, *, lab_id: int | None = None, upcoming_from: datetime | None = None
) -> list[tuple[TrainingSession, int]]:
    """Sessions (of a lab, or every lab), with how many seats are taken, soonest first."""
    taken = (
        select(func.count())
        .select_from(TrainingSeat)
        .where(TrainingSeat.session_id == TrainingSession.id)
        .scalar_subquery()
    )
    query = select(TrainingSession, taken).order_by(col(TrainingSession.start_at))
    if lab_id is not None:
        query = query.where(TrainingSession.lab_id == lab_id)
    if upcoming_from is not None:
        query = query.where(
            col(TrainingSession.end_at) > upcoming_from,
            TrainingSession.status == TrainingSessionStatus.scheduled,
        )
    return [(t, int(n)) for t, n in session.exec(query.limit(300)).all()]


def sessions_seated(session: Session, *, user: User) -> set[int]:
    """The sessions the person has a seat in."""
    return set(
        session.exec(select(TrainingSeat.session_id).where(TrainingSeat.user_id == user.id)).all()
    )


def seats_of(session: Session, session_id: int) -> list[tuple[TrainingSeat, User]]:
    return [
        (seat, person)
        for seat, person in session.exec(
            select(TrainingSeat, User)
            .join(User, col(User.id) == TrainingSeat.user_id)
            .where(TrainingSeat.session_id == session_id)
            .order_by(col(TrainingSeat.id))
        ).all()
    ]


def training_seat_take(
    session: Session,
    *,
    user: User,
    session_id: int,
    person_email: str | None = None,
    now: datetime | None = None,
) -> TrainingSeat:
    """A seat in a scheduled session: the person takes one, or the lab gives one (by email).
    409 when the session is full."""
    now = now or utcnow()
    training = training_session_get(session, session_id, lock=True)
    if person_email:
        if not manages_lab(user, training.lab_id):
            raise NotAllowed("only the lab's managers seat someone else")
        person = session.exec(
            select(User).where(User.email == person_email.strip().lower())
        ).first()
        if person is None:
            raise Invalid("person_email: no account has this email")
    else:
        person = user
    assert person.id is not None
    if training.status != TrainingSessionStatus.scheduled or training.start_at <= now:
        raise Conflict("the session has started or is over; seats are taken before it")
    already = session.exec(
        select(TrainingSeat).where(
            TrainingSeat.session_id == session_id, TrainingSeat.user_id == person.id
        )
    ).first()
    if already is not None:
        return already
    taken = session.exec(
        select(func.count()).select_from(TrainingSeat).where(TrainingSeat.session_id == session_id)
    ).one()
    if taken >= training.capacity:
        raise Conflict(
            f"the session is full ({taken} of {training.capacity} seats)",
            capacity=training.capacity,
            taken=taken,
        )
    seat = TrainingSeat(session_id=session_id, user_id=person.id)
    session.add(seat)
    session.flush()
    request = _matching_request(session, person.id, training)
    if request is not None:
        request.status = TrainingRequestStatus.scheduled
        request.seat_id = seat.id
        session.add(request)
    notify(
        session,
        user_id=person.id,
        kind="training_scheduled",
        subject=f"Training: {training.title} at {local_text(training.start_at)}",
        body=f"You have a seat in {training.title}, {local_text(training.start_at)} to "
        f"{local_text(training.end_at, with_date=False)}.",
        data={"training_session_id": training.id},
    )
    return seat


def training_seat_give_up(
    session: Session,
    *,
    user: User,
    session_id: int,
    seat_id: int | None = None,
    now: datetime | None = None,
) -> TrainingSeat:
    """Free a seat before the session starts: the person's own (no `seat_id`), or anyone's
    as the lab's manager. Their request waits for another session; the other side is told,
    so the lab can offer the seat and a person taken off knows."""
    now = now or utcnow()
    training = training_session_get(session, session_id, lock=True)
    mine = select(TrainingSeat).where(TrainingSeat.session_id == session_id)
    if seat_id is None:
        seat = session.exec(mine.where(TrainingSeat.user_id == user.id)).first()
    else:
        seat = session.exec(mine.where(TrainingSeat.id == seat_id)).first()
    by_lab = seat is not None and seat.user_id != user.id
    if seat is None or (by_lab and not manages_lab(user, training.lab_id)):
        # Another's seat is not shown to others: the same answer as no seat at all.
        if seat_id is None:
            raise NotFound(f"you have no seat in training session {session_id}")
        raise TrainingNotFound("seat", seat_id)
    if training.status != TrainingSessionStatus.scheduled or training.start_at <= now:
        raise Conflict("the session has started or is over; a seat is given up before it")
    request = session.exec(
        select(TrainingRequest).where(TrainingRequest.seat_id == seat.id)
    ).first()
    if request is not None:
        request.status, request.seat_id = TrainingRequestStatus.open, None
        session.add(request)
    person = session.get_one(User, seat.user_id)
    when = local_text(training.start_at)
    if by_lab:
        told = [person]
        subject = f"Your seat in {training.title} at {when} was given back by the lab"
        body = "Your request for training waits for another session."
    else:
        # The lab chooses who gets it (as it gives seats): it is told who is asking.
        told = [m for m in lab_managers(session, training.lab_id) if m.id != user.id]
        subject = f"A seat is free in {training.title} at {when}"
        asking = _still_asking(session, training, besides=person.id or 0)
        body = f"{person.name or person.email} gave up their seat. " + (
            f"Others asking for this training, without a seat in it: {asking}. Give it to "
            "one of them on the lab's training page."
            if asking
            else "Nobody else has asked for this training."
        )
    for someone in told:
        notify(session, user_id=someone.id or 0, kind="training_seat_freed", subject=subject,
               body=body, data={"training_session_id": training.id})  # fmt: skip
    audit_record(
        session, actor_id=user.id, action="training.seat_given_up", entity="training_session",
        entity_id=training.id, after={"user_id": person.id},
    )  # fmt: skip
    session.delete(seat)
    session.flush()
    return seat


@dataclass(frozen=True)
class Attendance:
    user_id: int
    attended: bool
    passed: bool


def training_attendance(
    session: Session,
    *,
    user: User,
    session_id: int,
    records: list[Attendance],
    now: datetime | None = None,
) -> TrainingSession:
    """Record who attended and passed (the lab's managers), once the session has begun.
    Passing grants the qualification (its level, for the session's validity) or the lab's
    induction; an instrument that needs the induction first refuses the grant (409, named)."""
    now = now or utcnow()
    training = training_session_get(session, session_id, lock=True)
    if not manages_lab(user, training.lab_id):
        raise NotAllowed("only the lab's managers record attendance")
    if training.status == TrainingSessionStatus.cancelled:
        raise Conflict("the session was cancelled", status=training.status.value)
    if training.start_at > now:
        raise Conflict(
            f"the session starts at {local_text(training.start_at)}; record attendance after"
        )
    seats = {seat.user_id: (seat, person) for seat, person in seats_of(session, session_id)}
    unknown = [r.user_id for r in records if r.user_id not in seats]
    if unknown:
        raise Invalid(f"records: no seat for user(s) {', '.join(map(str, unknown))}")
    expires = now + timedelta(days=training.valid_days) if training.valid_days else None
    instrument = instrument_get(session, training.instrument_id) if training.instrument_id else None
    if instrument is not None and instrument.induction_required:
        passing = {r.user_id for r in records if r.passed and r.attended}
        inducted = set(
            session.exec(
                select(SafetyInduction.user_id).where(
                    SafetyInduction.lab_id == training.lab_id,
                    col(SafetyInduction.user_id).in_(passing),
                )
            ).all()
        )
        lacking = sorted(passing - inducted)
        if lacking:
            names = ", ".join(seats[u][1].email for u in lacking)
            raise Conflict(f"{instrument.name} needs the lab's safety induction first: {names}")
    for record in records:
        seat, person = seats[record.user_id]
        seat.attended = record.attended
        seat.passed = record.passed and record.attended
        seat.recorded_at = now
        session.add(seat)
        if seat.passed:
            _grant(session, user, training, person, expires, now)
        request = session.exec(
            select(TrainingRequest).where(TrainingRequest.seat_id == seat.id)
        ).first()
        if request is not None:
            request.status = TrainingRequestStatus.done
            session.add(request)
    training.status = TrainingSessionStatus.completed
    session.add(training)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="training.attendance",
        entity="training_session",
        entity_id=training.id,
        after={
            "attended": [r.user_id for r in records if r.attended],
            "passed": [r.user_id for r in records if r.attended and r.passed],
        },
    )
    return training


def _grant(
    session: Session,
    actor: User,
    training: TrainingSession,
    person: User,
    expires: datetime | None,
    now: datetime,
) -> None:
    if training.kind == TrainingKind.induction:
        induction = session.exec(
            select(SafetyInduction).where(
                SafetyInduction.lab_id == training.lab_id, SafetyInduction.user_id == person.id
            )
        ).first() or SafetyInduction(lab_id=training.lab_id, user_id=person.id or 0)
        induction.completed_at = now
        induction.expires_at = expires
        induction.session_id = training.id
        session.add(induction)
        session.flush()
        return
    assert training.instrument_id is not None
    qualification_grant(
        session,
        user=actor,
        instrument_id=training.instrument_id,
        data=QualificationGrant(
            email=person.email,
            level=QualificationLevel(training.level),
            expires_at=expires,
        ),
    )


def qualifications_of(session: Session, *, user: User) -> list[tuple[Qualification, Instrument]]:
    """The person's qualifications not revoked (expired ones too, to renew), by instrument."""
    return [
        (q, i)
        for q, i in session.exec(
            select(Qualification, Instrument)
            .join(Instrument, col(Instrument.id) == Qualification.instrument_id)
            .where(Qualification.user_id == user.id, qualification_not_revoked())
            .order_by(col(Qualification.expires_at), col(Instrument.name))
        ).all()
    ]


def inductions_of(session: Session, *, user: User) -> list[tuple[SafetyInduction, Lab]]:
    return [
        (s, lab)
        for s, lab in session.exec(
            select(SafetyInduction, Lab)
            .join(Lab, col(Lab.id) == SafetyInduction.lab_id)
            .where(SafetyInduction.user_id == user.id)
        ).all()
    ]
