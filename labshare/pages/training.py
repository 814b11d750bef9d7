"""Training as pages: a researcher's qualifications (with their expiry), requests and the
sessions open to them; a lab's request queue, its sessions and attendance."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from booking import training
from booking.models import TrainingKind
from booking.schemas import AttendancePolicy
from core.deps import SessionDep
from core.errors import AppError, Invalid
from core.models import User
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments.models import Category, Instrument, Lab, QualificationLevel
from labshare.pages.lab import my_lab, people
from labshare.pages.web import Csrf, PageManager, PageUser, back_to, parse_local, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
LEVELS = [level.value for level in QualificationLevel]


def _mine(
    request: Request, session: Session, user: User, *, problem: str | None = None, status: int = 200
) -> HTMLResponse:
    now = utcnow()
    requests = training.training_requests_list(session, user=user)
    instruments = {
        i.id: i
        for i in session.exec(
            select(Instrument).where(
                col(Instrument.id).in_([r.instrument_id for r in requests if r.instrument_id])
            )
        )
    }
    labs = {
        lab.id: lab
        for lab in session.exec(select(Lab).where(col(Lab.id).in_({r.lab_id for r in requests})))
    }
    categories = {
        c.id: c
        for c in session.exec(
            select(Category).where(col(Category.id).in_({r.category_id for r in requests}))
        )
    }
    # Sessions open to me: at the labs I asked, and those I have a seat in.
    asking = {r.lab_id for r in requests if r.status.value in ("open", "scheduled")}
    seated = training.sessions_seated(session, user=user)
    sessions = [
        (t, n)
        for t, n in training.training_sessions_list(session, upcoming_from=now)
        if t.lab_id in asking or t.id in seated
    ]
    return render(
        request,
        "facility/my_training.html",
        {
            "qualifications": training.qualifications_of(session, user=user),
            "inductions": training.inductions_of(session, user=user),
            "requests": requests,
            "instruments": instruments,
            "labs": labs,
            "categories": categories,
            "sessions": sessions,
            "seated": seated,
            "now": now,
            "problem": problem,
            "levels": LEVELS,
        },
        user=user,
        status_code=status,
    )


def _mine_refused(request: Request, session: Session, user: User, exc: AppError) -> HTMLResponse:
    """My training page again, saying why; nothing the request wrote is kept."""
    session.rollback()
    return _mine(request, session, user, problem=exc.message, status=exc.status_code)


@router.get("/me/training", response_class=HTMLResponse)
def my_training(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """My qualifications and when they expire, my requests, sessions I can join."""
    return _mine(request, session, user)


@router.post("/me/training/requests", dependencies=[Csrf])
def ask_for_training(
    request: Request,
    session: SessionDep,
    user: PageUser,
    instrument_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    lab_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    category_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    level: Annotated[str, Form(max_length=32)] = "independent",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Ask a lab for training on an instrument, or on a category it trains for (from the
    instrument's page)."""
    try:
        if level not in LEVELS:
            raise Invalid(f"level: one of {', '.join(LEVELS)}")
        training.training_request_create(
            session, user=user, instrument_id=instrument_id, lab_id=lab_id,
            category_id=category_id, level=QualificationLevel(level), note=note,
        )  # fmt: skip
    except AppError as exc:
        return _mine_refused(request, session, user, exc)
    return back_to("/me/training", "training-requested")


@router.post("/me/training/sessions/{session_id}/seat", dependencies=[Csrf])
def take_seat(request: Request, session: SessionDep, user: PageUser, session_id: Id) -> Response:
    """Take a seat in a session (409 shown when it is full)."""
    try:
        training.training_seat_take(session, user=user, session_id=session_id)
    except AppError as exc:
        return _mine_refused(request, session, user, exc)
    return back_to("/me/training", "seat-taken")


@router.post("/me/training/sessions/{session_id}/seat/give-up", dependencies=[Csrf])
def give_up_seat(request: Request, session: SessionDep, user: PageUser, session_id: Id) -> Response:
    """Give my seat back before the session; my request waits for another one."""
    try:
        training.training_seat_give_up(session, user=user, session_id=session_id)
    except AppError as exc:
        return _mine_refused(request, session, user, exc)
    return back_to("/me/training", "seat-given-up")


# --------------------------------------------------------------------------------- lab


def _lab_page(
    request: Request,
    session: Session,
    user: User,
    *,
    problem: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    lab = my_lab(session, user)
    requests = training.training_requests_list(session, user=user)
    sessions = [
        (t, n, training.seats_of(session, t.id or 0))
        for t, n in training.training_sessions_list(session, lab_id=lab.id)
    ][-30:]
    instruments = list(
        session.exec(
            select(Instrument).where(Instrument.lab_id == lab.id).order_by(col(Instrument.name))
        )
    )
    return render(
        request,
        "facility/lab_training.html",
        {
            "lab": lab,
            "requests": requests,
            "who": people(session, {r.user_id for r in requests}),
            "sessions": sessions,
            "instruments": instruments,
            "by_id": {i.id: i for i in instruments},
            "categories": {
                c.id: c
                for c in session.exec(
                    select(Category).where(col(Category.id).in_({r.category_id for r in requests}))
                )
            },
            "now": utcnow(),
            "problem": problem,
            "form": form or {},
            "levels": LEVELS,
        },
        user=user,
        status_code=status,
    )


def _lab_refused(request: Request, session: Session, user: User, exc: AppError) -> HTMLResponse:
    """The lab's training page again, saying why; nothing the request wrote is kept."""
    session.rollback()
    return _lab_page(request, session, user, problem=exc.message, status=exc.status_code)


@router.get("/lab/training", response_class=HTMLResponse)
def lab_training(request: Request, session: SessionDep, user: PageManager) -> HTMLResponse:
    """The lab's training: requests waiting, sessions with their seats, attendance."""
    return _lab_page(request, session, user)


@router.post("/lab/training/sessions", dependencies=[Csrf])
def schedule(
    request: Request,
    session: SessionDep,
    user: PageManager,
    title: Annotated[str, Form(max_length=200)],
    start: Annotated[str, Form(max_length=40)],
    end: Annotated[str, Form(max_length=40)],
    capacity: Annotated[int, Form(ge=1, le=100)] = 4,
    instrument_id: Annotated[str, Form(max_length=12)] = "",
    level: Annotated[str, Form(max_length=32)] = "independent",
    valid_days: Annotated[str, Form(max_length=5)] = "365",
) -> Response:
    """Schedule a session; for an instrument it holds the instrument's time."""
    form = {"title": title, "start": start, "end": end, "capacity": str(capacity),
            "instrument_id": instrument_id, "level": level, "valid_days": valid_days}  # fmt: skip
    try:
        if level not in LEVELS:
            raise Invalid(f"level: one of {', '.join(LEVELS)}")
        if valid_days.strip() and not valid_days.strip().isdigit():
            raise Invalid("valid_days: a number of days, or empty for no expiry")
        chosen = int(instrument_id) if instrument_id.strip().isdigit() else None
        starts: datetime = parse_local(start, field="start")
        ends: datetime = parse_local(end, field="end")
        training.training_session_create(
            session, user=user, title=title, start=starts, end=ends, capacity=capacity,
            instrument_id=chosen,
            kind=TrainingKind.instrument if chosen else TrainingKind.induction,
            level=QualificationLevel(level),
            valid_days=int(valid_days) if valid_days.strip() else None,
        )  # fmt: skip
    except AppError as exc:
        session.rollback()
        return _lab_page(
            request, session, user, problem=exc.message, form=form, status=exc.status_code
        )
    return back_to("/lab/training", "training-scheduled")


@router.post("/lab/attendance-policy", dependencies=[Csrf])
def attendance_policy(
    request: Request,
    session: SessionDep,
    user: PageManager,
    staffed_from: Annotated[str, Form(max_length=8)],
    staffed_until: Annotated[str, Form(max_length=8)],
    release_minutes: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """The lab's staffed hours and its release of bookings nobody checks into."""
    lab = my_lab(session, user)
    try:
        try:
            policy = AttendancePolicy(
                staffed_from=staffed_from,  # type: ignore[arg-type]
                staffed_until=staffed_until,  # type: ignore[arg-type]
                release_unchecked_minutes=int(release_minutes) if release_minutes.strip() else None,
            )
        except (ValidationError, ValueError) as exc:
            raise Invalid(f"staffed hours and release: {str(exc).splitlines()[-1][:120]}")
        lab.staffed_from, lab.staffed_until = policy.staffed_from, policy.staffed_until
        lab.release_unchecked_minutes = policy.release_unchecked_minutes
        session.add(lab)
    except AppError as exc:
        return _lab_refused(request, session, user, exc)
    return back_to("/lab/training", "saved")


@router.post("/lab/training/requests/{request_id}/decline", dependencies=[Csrf])
def decline(
    request: Request,
    session: SessionDep,
    user: PageManager,
    request_id: Id,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        training.training_request_decide(
            session, user=user, request_id=request_id, decline=True, reason=reason
        )
    except AppError as exc:
        return _lab_refused(request, session, user, exc)
    return back_to("/lab/training", "request-declined")


@router.post("/lab/training/sessions/{session_id}/seats", dependencies=[Csrf])
def seat_someone(
    request: Request,
    session: SessionDep,
    user: PageManager,
    session_id: Id,
    email: Annotated[str, Form(max_length=254)],
) -> Response:
    try:
        training.training_seat_take(session, user=user, session_id=session_id, person_email=email)
    except AppError as exc:
        return _lab_refused(request, session, user, exc)
    return back_to("/lab/training", "seat-taken")


@router.post("/lab/training/sessions/{session_id}/seats/{seat_id}/give-back", dependencies=[Csrf])
def give_back_seat(
    request: Request, session: SessionDep, user: PageManager, session_id: Id, seat_id: Id
) -> Response:
    """Free someone's seat before the session (they are told)."""
    try:
        training.training_seat_give_up(session, user=user, session_id=session_id, seat_id=seat_id)
    except AppError as exc:
        return _lab_refused(request, session, user, exc)
    return back_to("/lab/training", "seat-given-back")


@router.post("/lab/training/sessions/{session_id}/cancel", dependencies=[Csrf])
def cancel(
    request: Request,
    session: SessionDep,
    user: PageManager,
    session_id: Id,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Call a session off; seat holders are told why."""
    try:
        training.training_session_cancel(session, user=user, session_id=session_id, reason=reason)
    except AppError as exc:
        return _lab_refused(request, session, user, exc)
    return back_to("/lab/training", "training-cancelled")


@router.post("/lab/training/sessions/{session_id}/attendance", dependencies=[Csrf])
def attendance(
    request: Request,
    session: SessionDep,
    user: PageManager,
    session_id: Id,
    seat: Annotated[list[int], Form()],
    attended: Annotated[list[int], Form()] = [],  # noqa: B006  (FastAPI copies it)
    passed: Annotated[list[int], Form()] = [],  # noqa: B006
) -> Response:
    """One row per seat: ticked attended, ticked passed (passing needs attending)."""
    records = [
        training.Attendance(uid, attended=uid in attended, passed=uid in passed)
        for uid in sorted(set(seat))
    ]
    try:
        training.training_attendance(session, user=user, session_id=session_id, records=records)
    except AppError as exc:
        return _lab_refused(request, session, user, exc)
    return back_to("/lab/training", "attendance-saved")
