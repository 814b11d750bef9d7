"""Check-in at the instrument over HTTP: the kiosk's state, check-in and check-out (signed
in or with the booking's PIN), and an operator's record of use by hand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from core.api import client_address
from core.deps import CurrentUser, OptionalUser, SessionDep
from core.routing import UnitOfWorkRoute
from telemetry import kiosk
from telemetry.schemas import CheckIn, KioskPublic, ManualUsage, UsagePublic
from telemetry.service import usage_public

router = APIRouter(route_class=UnitOfWorkRoute, tags=["kiosk"])
InstrumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/instruments/{instrument_id}/kiosk", response_model=KioskPublic)
def get_kiosk(session: SessionDep, instrument_id: InstrumentId) -> KioskPublic:
    """What the tablet beside the instrument shows: the booking now, whether its booker has
    checked in, the next booking's start. No names: anyone in the room can read it."""
    state = kiosk.kiosk_state(session, instrument_id=instrument_id)
    assert state.instrument.id is not None
    return KioskPublic(
        instrument_id=state.instrument.id,
        code=state.instrument.code,
        name=state.instrument.name,
        booking_start=state.booking.start_at if state.booking else None,
        booking_end=state.booking.end_at if state.booking else None,
        checked_in=state.open_session is not None,
        in_use_since=state.open_session.start_at if state.open_session else None,
        next_start=state.next_start,
    )


@router.post(
    "/instruments/{instrument_id}/check-in",
    response_model=UsagePublic,
    responses={409: {"description": "nothing to check in to now, with the reason"}},
)
def post_check_in(
    session: SessionDep,
    user: OptionalUser,
    instrument_id: InstrumentId,
    data: CheckIn,
    request: Request,
) -> UsagePublic:
    """Check in to the booking running now (or starting within 15 minutes): the signed-in
    booker, or anyone with the booking's PIN. 409 says why not; 429 after too many wrong
    PINs at this instrument."""
    usage = kiosk.check_in(
        session,
        instrument_id=instrument_id,
        user=user,
        pin=data.pin,
        address=client_address(request),
    )
    return usage_public(session, usage)


@router.post("/instruments/{instrument_id}/check-out", response_model=UsagePublic)
def post_check_out(
    session: SessionDep, user: OptionalUser, instrument_id: InstrumentId, data: CheckIn
) -> UsagePublic:
    """Check out: the session ends now and is billed by the lab's policy."""
    usage = kiosk.check_out(session, instrument_id=instrument_id, user=user, pin=data.pin)
    return usage_public(session, usage)


@router.post("/instruments/{instrument_id}/usage", response_model=UsagePublic, status_code=201)
def post_manual_usage(
    session: SessionDep, user: CurrentUser, instrument_id: InstrumentId, data: ManualUsage
) -> UsagePublic:
    """Record use by hand (the lab's managers), with a reason: for a booking, or a walk-up
    by a named person. Billed like telemetry's, unless a gateway recorded the booking."""
    usage = kiosk.usage_record_manual(
        session,
        user=user,
        instrument_id=instrument_id,
        start=data.start,
        end=data.end,
        reason=data.reason,
        booking_id=data.booking_id,
        person_email=data.person_email,
    )
    return usage_public(session, usage)
