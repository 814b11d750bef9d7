"""A lab manager edits one instrument: details, rules, opening hours, blackouts, who may use it."""

from __future__ import annotations

from datetime import time, timedelta
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import FormData

from billing import rates
from billing.prices import prices_in_force
from booking import blackouts as lab_blackouts
from booking import qualifications
from booking.calendars import imports as calendar_import
from booking.schemas import BlackoutCreate, QualificationGrant
from core.deps import SessionDep
from core.errors import AppError, Invalid, invalid_input
from core.models import User
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from instruments import service as catalog
from instruments.models import Instrument, InstrumentStatus, PayerClass, RateUnit
from instruments.schemas import BookingRules, InstrumentUpdate, OpeningInterval
from labshare.pages.lab import people
from labshare.pages.web import Csrf, PageManager, back_to, error_page, parse_local, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


async def _form(request: Request) -> FormData:
    return await request.form()


FormDep = Annotated[FormData, Depends(_form)]


def _mine(session: Session, user: User, instrument_id: int) -> Instrument:
    instrument = catalog.instrument_get(session, instrument_id)
    catalog.require_manager(user, instrument)
    return instrument


def _hours_rows(intervals: list[OpeningInterval]) -> list[dict[str, Any]]:
    """Two open intervals per weekday at most, as the form shows them."""
    rows: list[dict[str, Any]] = [{"day": d, "label": WEEKDAYS[d], "slots": []} for d in range(7)]
    for interval in intervals:
        rows[interval.weekday]["slots"].append(interval)
    for row in rows:
        row["slots"] = (row["slots"] + [None, None])[:2]
    return rows


def _page(
    request: Request,
    session: Session,
    user: User,
    instrument: Instrument,
    *,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    assert instrument.id is not None
    view = catalog.instrument_public(session, instrument)
    now = utcnow()
    blackouts = lab_blackouts.blackout_list(
        session, instrument_id=instrument.id, start=now, end=now + timedelta(days=365)
    )
    context = {
        "i": view,
        "statuses": [s.value for s in InstrumentStatus],
        "hours": _hours_rows(view.opening_hours),
        "blackouts": blackouts,
        "qualified": qualifications.qualification_list(
            session, user=user, instrument_id=instrument.id
        ),
        **_calendars(session, user, instrument.id),
        **_rate_cards(session, instrument.id),
        **(extra or {}),
    }
    return render(request, "lab/instrument.html", context, user=user, status_code=status_code)


# The sections of the edit page whose forms keep what was typed when it is refused.
Section = Literal["details", "hours", "rates", "blackouts"]


def _field_of(exc: ValidationError) -> str | None:
    """The form field a validation error names, if it names one."""
    loc = [str(p) for p in exc.errors()[0].get("loc", ()) if p not in ("body", "rules")]
    return loc[-1] if loc else None


def page_with_problem(
    request: Request,
    session: Session,
    user: User,
    instrument_id: int,
    *,
    section: Section,
    problem: AppError,
    form: FormData,
    field: str | None = None,
) -> HTMLResponse:
    """The edit page again, the reason beside the section's form and what was typed kept
    in it, instead of a page that loses the input. Nothing of the refused change stays."""
    session.rollback()
    try:
        instrument = _mine(session, user, instrument_id)
    except AppError as exc:
        return error_page(request, exc, user=user)
    typed = {k: v for k, v in form.multi_items() if isinstance(v, str) and k != "csrf_token"}
    return _page(
        request,
        session,
        user,
        instrument,
        extra={
            "problem": {"section": section, "message": problem.message, "field": field},
            "kept": {section: typed},
        },
        status_code=problem.status_code,
    )


def _calendars(session: Session, user: User, instrument_id: int) -> dict[str, Any]:
    """The instrument's imported calendars."""
    sources = calendar_import.calendar_source_list(session, user=user, instrument_id=instrument_id)
    return {"calendars": sources}


def _rate_cards(session: Session, instrument_id: int) -> dict[str, Any]:
    """The instrument's rate cards, newest first."""
    cards = rates.rate_cards_list(session, instrument_id=instrument_id)
    return {
        "charged": list(prices_in_force(session, [instrument_id]).get(instrument_id, {}).values()),
        "rate_cards": sorted(cards, key=lambda c: c.effective_from, reverse=True),
        "payer_classes": [p.value for p in PayerClass],
        "units": [u.value for u in RateUnit],
        "now": utcnow(),
    }


@router.get("/lab/instruments/{instrument_id}", response_class=HTMLResponse)
def edit_page(
    request: Request, session: SessionDep, user: PageManager, instrument_id: Id
) -> HTMLResponse:
    """Edit an instrument of my lab."""
    return _page(request, session, user, _mine(session, user, instrument_id))


@router.post("/lab/instruments/{instrument_id}", dependencies=[Csrf])
def save_details(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    form: FormDep,
    name: Annotated[str, Form(max_length=200)],
    status: Annotated[str, Form(max_length=32)],
    slot_step_minutes: Annotated[int, Form()],
    min_minutes: Annotated[int, Form()],
    max_minutes: Annotated[int, Form()],
    lead_minutes: Annotated[int, Form()],
    horizon_days: Annotated[int, Form()],
    description: Annotated[str, Form(max_length=4000)] = "",
    location: Annotated[str, Form(max_length=200)] = "",
    weekly_quota_hours: Annotated[str, Form(max_length=4)] = "",
    approval_required: Annotated[bool, Form()] = False,
    qualification_required: Annotated[bool, Form()] = False,
    commissioned_on: Annotated[str, Form(max_length=10)] = "",
    classification_code: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Save the instrument's description, register entries and booking rules."""
    again = partial(
        page_with_problem, request, session, user, instrument_id, section="details", form=form
    )
    try:
        rules = BookingRules(
            slot_step_minutes=slot_step_minutes,
            min_minutes=min_minutes,
            max_minutes=max_minutes,
            lead_minutes=lead_minutes,
            horizon_days=horizon_days,
            approval_required=approval_required,
            qualification_required=qualification_required,
            weekly_quota_hours=int(weekly_quota_hours) if weekly_quota_hours.strip() else None,
        )
        data = InstrumentUpdate(
            name=name,
            description=description,
            location=location,
            status=InstrumentStatus(status),
            rules=rules,
            commissioned_on=commissioned_on.strip() or None,  # type: ignore[arg-type]
            classification_code=classification_code.strip() or None,
        )
        catalog.instrument_update(session, user=user, instrument_id=instrument_id, data=data)
    except ValidationError as exc:
        return again(problem=invalid_input(exc), field=_field_of(exc))
    except ValueError:
        return again(
            problem=Invalid("weekly quota: a whole number of hours"), field="weekly_quota_hours"
        )
    except AppError as exc:
        return again(problem=exc)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")


def _closing(value: str) -> time:
    # "24:00" is how people write the end of the day; the column stores 23:59:59.
    return time(23, 59, 59) if value in ("24:00", "23:59") else time.fromisoformat(value)


def _intervals(form: FormData) -> list[OpeningInterval]:
    """The form's `opens{n}_{day}`/`closes{n}_{day}` pairs; an empty pair means closed."""
    intervals = []
    for day in range(7):
        for n in (1, 2):
            opens, closes = form.get(f"opens{n}_{day}"), form.get(f"closes{n}_{day}")
            if not opens and not closes:
                continue
            if not isinstance(opens, str) or not isinstance(closes, str) or not opens:
                raise Invalid(f"{WEEKDAYS[day]}: give both opening and closing times")
            try:
                opens_at, closes_at = time.fromisoformat(opens), _closing(closes)
            except ValueError:
                raise Invalid(f"{WEEKDAYS[day]}: times look like 08:30")
            intervals.append(OpeningInterval(weekday=day, opens=opens_at, closes=closes_at))
    return intervals


@router.post("/lab/instruments/{instrument_id}/hours", dependencies=[Csrf])
def save_hours(
    request: Request, session: SessionDep, user: PageManager, instrument_id: Id, form: FormDep
) -> Response:
    """Replace the weekly opening hours (up to two intervals a day; empty means closed)."""
    try:
        catalog.opening_hours_set(
            session, user=user, instrument_id=instrument_id, intervals=_intervals(form)
        )
    except ValidationError as exc:
        problem: AppError = invalid_input(exc)
    except AppError as exc:
        problem = exc
    else:
        return back_to(f"/lab/instruments/{instrument_id}", "saved")
    return page_with_problem(
        request, session, user, instrument_id, section="hours", problem=problem, form=form
    )


@router.post("/lab/instruments/{instrument_id}/blackouts", dependencies=[Csrf])
def add_blackout(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    form: FormDep,
    start: Annotated[str, Form(max_length=40)],
    end: Annotated[str, Form(max_length=40)],
    kind: Annotated[str, Form(max_length=20)] = "maintenance",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Block time for maintenance or lab use; shows the bookings it displaced and their owners."""
    again = partial(
        page_with_problem, request, session, user, instrument_id, section="blackouts", form=form
    )
    try:
        instrument = _mine(session, user, instrument_id)
        data = BlackoutCreate(
            start=parse_local(start, field="start"),
            end=parse_local(end, field="end"),
            kind=kind,  # type: ignore[arg-type]
            reason=reason,
        )
        created = lab_blackouts.blackout_create(
            session, user=user, instrument_id=instrument_id, data=data
        )
    except ValidationError as exc:
        return again(problem=invalid_input(exc), field=_field_of(exc))
    except AppError as exc:
        return again(problem=exc)
    from booking import service as bookings

    owners = {
        d.id: bookings.booking_get(session, user=user, booking_id=d.id).user_id
        for d in created.displaced
    }
    who = people(session, set(owners.values()))
    displaced = [{"d": d, "who": who.get(owners[d.id])} for d in created.displaced]
    return _page(
        request,
        session,
        user,
        instrument,
        extra={"created": created, "displaced": displaced},
        status_code=201,
    )


@router.post("/lab/instruments/{instrument_id}/blackouts/{blackout_id}/delete", dependencies=[Csrf])
def lift_blackout(
    request: Request, session: SessionDep, user: PageManager, instrument_id: Id, blackout_id: Id
) -> Response:
    """Lift a blackout; its time goes to the waitlist."""
    try:
        lab_blackouts.blackout_delete(
            session, user=user, instrument_id=instrument_id, blackout_id=blackout_id
        )
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")


@router.post("/lab/instruments/{instrument_id}/qualifications", dependencies=[Csrf])
def grant(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    email: Annotated[str, Form(max_length=254)],
) -> Response:
    """Let a trained person book an instrument that needs a qualification."""
    try:
        qualifications.qualification_grant(
            session, user=user, instrument_id=instrument_id, data=QualificationGrant(email=email)
        )
    except ValidationError as exc:
        return error_page(request, invalid_input(exc), user=user)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")


@router.post(
    "/lab/instruments/{instrument_id}/qualifications/{qualification_id}/revoke",
    dependencies=[Csrf],
)
def revoke(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    qualification_id: Id,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Withdraw a qualification, with a reason: its holder can no longer book."""
    try:
        qualifications.qualification_revoke(
            session,
            user=user,
            instrument_id=instrument_id,
            qualification_id=qualification_id,
            reason=reason,
        )
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")
