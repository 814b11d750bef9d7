"""Booking routes: availability, slots, bookings, the waitlist, blackouts, qualifications."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import JSONResponse

from booking import blackouts, qualifications, service, waitlist
from booking.availability import availability, slots_find
from booking.idempotency import run_once
from booking.models import Booking, BookingStatus, WaitlistStatus
from booking.schemas import (
    Availability,
    BlackoutCreate,
    BlackoutCreated,
    BlackoutPublic,
    BookingCreate,
    BookingDecision,
    BookingPublic,
    BookingReschedule,
    QualificationGrant,
    QualificationPublic,
    SeriesCreated,
    Slots,
    WaitlistCreate,
    WaitlistPublic,
    booking_public,
)
from core.deps import CurrentUser, SessionDep, UncheckedUser
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, encode_cursor
from core.params import only_params
from core.replicas import LagTolerant
from core.routing import UnitOfWorkRoute
from core.timeutil import OptionalTimeQuery, TimeQuery, parse_aware
from instruments.models import CODE_PATTERN

router = APIRouter(route_class=UnitOfWorkRoute, tags=["booking"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
TimeParam = TimeQuery
OptionalTime = OptionalTimeQuery
CONFLICT_DOC: dict[int | str, dict[str, Any]] = {
    409: {"description": "not free: conflicts and alternatives"}
}


def _booking_response(
    booking_public: BookingPublic, etag: str, response: Response
) -> BookingPublic:
    response.headers["ETag"] = etag
    return booking_public


@router.get(
    "/instruments/{instrument_id}/availability",
    response_model=Availability,
    dependencies=[LagTolerant, Depends(only_params("start", "end"))],
)
def get_availability(
    session: SessionDep, instrument_id: Id, start: TimeParam, end: TimeParam
) -> Availability:
    """Free and busy time of one instrument (at most 62 days): opening hours, blackouts,
    imported calendars and bookings, merged; busy kinds `booking`, `blackout`, `closed`."""
    return availability(
        session,
        instrument_id=instrument_id,
        start=parse_aware(start, field="start"),
        end=parse_aware(end, field="end"),
    )


@router.get(
    "/slots",
    response_model=Slots,
    dependencies=[
        LagTolerant,
        Depends(
            only_params("category", "start", "end", "duration_minutes", "institution", "limit")
        ),
    ],
)
def get_slots(
    session: SessionDep,
    category: Annotated[str, Query(pattern=CODE_PATTERN)],
    start: TimeParam,
    end: TimeParam,
    duration_minutes: Annotated[int, Query(ge=1, le=31 * 24 * 60)],
    institution: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Slots:
    """The earliest free slots of that length across a category's instruments (a group
    includes its leaves), optionally at one institution."""
    return slots_find(
        session,
        category=category,
        start=parse_aware(start, field="start"),
        end=parse_aware(end, field="end"),
        duration_minutes=duration_minutes,
        institution=institution,
        limit=limit,
    )


def _created(result: Booking | SeriesCreated) -> tuple[int, dict[str, Any]]:
    """A new booking or series as the 201 answer (and what an Idempotency-Key replays)."""
    shown = booking_public(result) if isinstance(result, Booking) else result
    return 201, shown.model_dump(mode="json")


@router.post(
    "/bookings",
    status_code=201,
    response_model=BookingPublic | SeriesCreated,
    responses=CONFLICT_DOC,
)
def create_booking(
    session: SessionDep,
    who: UncheckedUser,
    data: BookingCreate,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Book an instrument (or a series with `recurrence`); `Idempotency-Key` makes retries
    safe. 201 `confirmed` or `pending`; 409 with conflicts and alternatives."""
    at = service.signed_in_at_instrument(session, who, data)
    assert at.user.id is not None
    status, body, replayed = run_once(
        session,
        user_id=at.user.id,
        key=idempotency_key,
        payload=lambda: data.model_dump(mode="json"),
        action=lambda: _created(
            service.booking_create(
                session, user=at.user, data=data, instrument=at.instrument, timeline=at.timeline
            )
        ),
    )
    headers = {"ETag": f'W/"{body["id"]}-{body["version"]}"'}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=status, headers=headers)


@router.get(
    "/bookings",
    response_model=Page[BookingPublic],
    dependencies=[Depends(only_params("instrument_id", "start", "end", "status", "limit", "next"))],
)
def list_bookings(
    session: SessionDep,
    user: CurrentUser,
    instrument_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    start: OptionalTime = None,
    end: OptionalTime = None,
    status: BookingStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[BookingPublic]:
    """Your bookings (lab managers: also their lab's), filtered; follow `next` for more."""
    filters = service.BookingFilters(
        instrument_id=instrument_id,
        start=parse_aware(start, field="start") if start else None,
        end=parse_aware(end, field="end") if end else None,
        status=status,
    )
    rows, last = service.booking_list(
        session, user=user, filters=filters, after=decode_cursor(next), limit=limit
    )
    return Page(
        items=[booking_public(b) for b in rows],
        next=encode_cursor(last) if last is not None else None,
    )


@router.get("/bookings/{booking_id}", response_model=BookingPublic)
def get_booking(
    session: SessionDep, user: CurrentUser, booking_id: Id, response: Response
) -> BookingPublic:
    """One booking (its owner or a manager of its lab), with its ETag."""
    booking = service.booking_get(session, user=user, booking_id=booking_id)
    return _booking_response(booking_public(booking), service.etag(booking), response)


@router.post("/bookings/{booking_id}/cancel", response_model=BookingPublic)
def cancel_booking(
    session: SessionDep, user: CurrentUser, booking_id: Id, response: Response
) -> BookingPublic:
    """Cancel a booking; the freed time goes to the first waiting request that fits."""
    booking = service.booking_cancel(session, user=user, booking_id=booking_id)
    return _booking_response(booking_public(booking), service.etag(booking), response)


@router.patch("/bookings/{booking_id}", response_model=BookingPublic, responses=CONFLICT_DOC)
def reschedule_booking(
    session: SessionDep,
    user: CurrentUser,
    booking_id: Id,
    data: BookingReschedule,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=200)] = None,
) -> BookingPublic:
    """Move a booking; send `If-Match` with its ETag (412 when stale, 428 when missing)."""
    booking = service.booking_reschedule(
        session, user=user, booking_id=booking_id, data=data, if_match=if_match
    )
    return _booking_response(booking_public(booking), service.etag(booking), response)


@router.post("/bookings/{booking_id}/approve", response_model=BookingPublic)
def approve_booking(
    session: SessionDep,
    user: CurrentUser,
    booking_id: Id,
    response: Response,
    data: BookingDecision | None = None,
) -> BookingPublic:
    """Confirm a pending booking (managers of the instrument's lab)."""
    booking = service.booking_approve(
        session, user=user, booking_id=booking_id, reason=data.reason if data else ""
    )
    return _booking_response(booking_public(booking), service.etag(booking), response)


@router.post("/bookings/{booking_id}/reject", response_model=BookingPublic)
def reject_booking(
    session: SessionDep,
    user: CurrentUser,
    booking_id: Id,
    response: Response,
    data: BookingDecision | None = None,
) -> BookingPublic:
    """Reject a pending booking (managers of the instrument's lab); its owner is told why."""
    booking = service.booking_reject(
        session, user=user, booking_id=booking_id, reason=data.reason if data else ""
    )
    return _booking_response(booking_public(booking), service.etag(booking), response)


@router.post("/waitlist", response_model=WaitlistPublic, status_code=201)
def join_waitlist(session: SessionDep, user: CurrentUser, data: WaitlistCreate) -> WaitlistPublic:
    """Wait for a booked time; when it frees, it is booked for you and you are told."""
    return waitlist.waitlist_public(waitlist.waitlist_join(session, user=user, data=data))


@router.get(
    "/waitlist", response_model=list[WaitlistPublic], dependencies=[Depends(only_params("status"))]
)
def list_waitlist(
    session: SessionDep, user: CurrentUser, status: WaitlistStatus | None = None
) -> list[WaitlistPublic]:
    """Your waitlist entries, newest first."""
    return [
        waitlist.waitlist_public(e)
        for e in waitlist.waitlist_list(session, user=user, status=status)
    ]


@router.delete("/waitlist/{entry_id}", response_model=WaitlistPublic)
def withdraw_waitlist(session: SessionDep, user: CurrentUser, entry_id: Id) -> WaitlistPublic:
    """Leave the waitlist."""
    return waitlist.waitlist_public(
        waitlist.waitlist_withdraw(session, user=user, entry_id=entry_id)
    )


@router.post(
    "/instruments/{instrument_id}/blackouts", response_model=BlackoutCreated, status_code=201
)
def create_blackout(
    session: SessionDep, user: CurrentUser, instrument_id: Id, data: BlackoutCreate
) -> BlackoutCreated:
    """Block the instrument (lab managers); bookings in the way become `displaced` and their
    owners are offered alternatives."""
    return blackouts.blackout_create(session, user=user, instrument_id=instrument_id, data=data)


@router.get(
    "/instruments/{instrument_id}/blackouts",
    response_model=list[BlackoutPublic],
    dependencies=[Depends(only_params("start", "end"))],
)
def list_blackouts(
    session: SessionDep, instrument_id: Id, start: OptionalTime = None, end: OptionalTime = None
) -> list[BlackoutPublic]:
    """The instrument's blackouts, imported busy time included, earliest first."""
    rows = blackouts.blackout_list(
        session,
        instrument_id=instrument_id,
        start=parse_aware(start, field="start") if start else None,
        end=parse_aware(end, field="end") if end else None,
    )
    return [blackouts.blackout_public(b) for b in rows]


@router.delete("/instruments/{instrument_id}/blackouts/{blackout_id}", status_code=204)
def delete_blackout(
    session: SessionDep, user: CurrentUser, instrument_id: Id, blackout_id: Id
) -> Response:
    """Lift a blackout (lab managers); the freed time goes to the waitlist."""
    blackouts.blackout_delete(
        session, user=user, instrument_id=instrument_id, blackout_id=blackout_id
    )
    return Response(status_code=204)


@router.post("/instruments/{instrument_id}/qualifications", response_model=QualificationPublic)
def grant_qualification(
    session: SessionDep,
    user: CurrentUser,
    instrument_id: Id,
    data: QualificationGrant,
    response: Response,
) -> QualificationPublic:
    """Qualify a person, by their exact email, to book the instrument (lab managers); 201
    when new, 200 when they already were. The answer is the same whether or not an account
    has that email (a grant waits for the account), and names only people who booked with
    the lab."""
    grant, created = qualifications.qualification_grant(
        session, user=user, instrument_id=instrument_id, data=data
    )
    response.status_code = 201 if created else 200
    return grant


@router.delete("/instruments/{instrument_id}/qualifications/{qualification_id}", status_code=204)
def revoke_qualification(
    session: SessionDep,
    user: CurrentUser,
    instrument_id: Id,
    qualification_id: Id,
    reason: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    """Withdraw a qualification (lab managers), with a reason: its holder can no longer book."""
    qualifications.qualification_revoke(
        session,
        user=user,
        instrument_id=instrument_id,
        qualification_id=qualification_id,
        reason=reason,
    )
    return Response(status_code=204)


@router.get("/instruments/{instrument_id}/qualifications", response_model=list[QualificationPublic])
def list_qualifications(
    session: SessionDep, user: CurrentUser, instrument_id: Id
) -> list[QualificationPublic]:
    """Who is qualified on the instrument (lab managers)."""
    return qualifications.qualification_list(session, user=user, instrument_id=instrument_id)
