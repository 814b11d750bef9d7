"""Calendar feeds (`/ical/...`, at the root) and the import of labs' own calendars."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from booking.calendars import feeds as ical
from booking.calendars import imports as calendar_import
from booking.calendars.format import Feed
from booking.calendars.imports import ExpandedCalendar
from booking.calendars.parse import MAX_BODY_BYTES, CalendarTooLarge
from booking.calendars.schemas import (
    CalendarImported,
    CalendarSourcePublic,
    CalendarUrlIn,
    FeedLinks,
)
from core.deps import CurrentUser, SessionDep, oauth2_scheme, wanted_user
from core.errors import AppError, Unauthorized
from core.models import User
from core.replicas import LagTolerant
from core.routing import UnitOfWorkRoute, read_before_unit_of_work
from core.settings import get_settings

ical_router = APIRouter(route_class=UnitOfWorkRoute, tags=["calendars"])
router = APIRouter(route_class=UnitOfWorkRoute)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]

ICS_TYPES = {"text/calendar", "application/ics", "text/x-vcalendar"}
_CALENDAR_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/calendar": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": CalendarUrlIn.model_json_schema()},
        },
    }
}


# --------------------------------------------------------------------------------- the feeds


def _feed_response(request: Request, feed: Feed, *, public: bool) -> Response:
    headers = {
        "ETag": feed.etag,
        "Last-Modified": format_datetime(feed.last_modified, usegmt=True),
        "Cache-Control": f"{'public' if public else 'private'}, max-age=300",
    }
    # If-None-Match compares weakly (RFC 9110): W/"x" matches "x".
    wanted = {
        t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")
    }
    if "*" in wanted or feed.etag in wanted:
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = 'inline; filename="labshare.ics"'
    return Response(feed.body, media_type="text/calendar; charset=utf-8", headers=headers)


@ical_router.head("/ical/instruments/{instrument_id}.ics", include_in_schema=False)
@ical_router.get("/ical/instruments/{instrument_id}.ics", dependencies=[LagTolerant])
def instrument_calendar(session: SessionDep, request: Request, instrument_id: Id) -> Response:
    """The instrument's busy time as iCalendar: bookings and blackouts, no one's identity."""
    return _feed_response(
        request, ical.instrument_feed(session, instrument_id=instrument_id), public=True
    )


@ical_router.head("/ical/users/{feed_token}.ics", include_in_schema=False)
@ical_router.get("/ical/users/{feed_token}.ics")
def user_calendar(session: SessionDep, request: Request, feed_token: str) -> Response:
    """One person's bookings as iCalendar, by the secret token in their feed URL."""
    feed = ical.user_feed(session, feed_token=feed_token, base_url=_base(request))
    return _feed_response(request, feed, public=False)


def _base(_request: Request) -> str:
    # Never the Host header: a forged one would put an attacker's address in a feed link.
    return get_settings().public_base


def _links(request: Request, user: User) -> FeedLinks:
    url = f"{_base(request)}/ical/users/{user.feed_token}.ics"
    return FeedLinks(feed_url=url, webcal_url="webcal://" + url.split("://", 1)[1])


@router.get("/me/calendar", response_model=FeedLinks, tags=["calendars"])
def my_calendar(request: Request, user: CurrentUser) -> FeedLinks:
    """The address of your personal calendar feed, for Google Calendar, Outlook or Thunderbird."""
    return _links(request, user)


@router.post("/me/calendar/rotate", response_model=FeedLinks, tags=["calendars"])
def rotate_my_calendar(session: SessionDep, request: Request, user: CurrentUser) -> FeedLinks:
    """A new secret feed address; the old one stops working at once."""
    ical.feed_token_rotate(session, user=user)
    return _links(request, user)


# ---------------------------------------------------------------------------- calendar import


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise CalendarTooLarge(f"the body is larger than {MAX_BODY_BYTES:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise CalendarTooLarge(f"the body is larger than {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _calendar_body(
    request: Request,
    instrument_id: Id,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> ExpandedCalendar | CalendarUrlIn:
    """The request body: an .ics calendar, checked and expanded here, before the unit of
    work takes its write lock; or a JSON URL subscription. Size-capped."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ICS_TYPES and kind != "application/json":
        raise AppError(
            'send the calendar as text/calendar, or JSON {"url": ...} as application/json',
            415,
        )
    raw = await _read_capped(request)
    if kind == "application/json":
        try:
            return CalendarUrlIn.model_validate_json(raw or b"null")
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False))
    wanted = wanted_user(request, token)
    if wanted is None:
        raise Unauthorized("not signed in, or the token is invalid or expired")
    return await read_before_unit_of_work(  # type: ignore[no-any-return]
        lambda session: calendar_import.calendar_upload_expand(
            session, user=wanted.load(session), instrument_id=instrument_id, data=raw
        )
    )


CalendarBody = Annotated[ExpandedCalendar | CalendarUrlIn, Depends(_calendar_body)]


def _imported(result: calendar_import.ImportResult) -> CalendarImported:
    return CalendarImported(
        **CalendarSourcePublic.of(result.source).model_dump(),
        added=result.added,
        removed=result.removed,
        kept=result.kept,
        displaced=result.displaced,
    )


@router.post(
    "/instruments/{instrument_id}/calendars",
    response_model=CalendarImported | CalendarSourcePublic,
    status_code=201,
    tags=["calendars"],
    openapi_extra=_CALENDAR_BODY,
)
def add_calendar(
    session: SessionDep, user: CurrentUser, instrument_id: Id, body: CalendarBody
) -> CalendarImported | CalendarSourcePublic:
    """Import the lab's own calendar as busy time (lab managers): an .ics body is imported
    now; a JSON `{"url", "refresh_minutes"}` is fetched by the calendar sync on schedule."""
    if isinstance(body, CalendarUrlIn):
        source = calendar_import.calendar_source_add_url(
            session,
            user=user,
            instrument_id=instrument_id,
            url=body.url,
            refresh_minutes=body.refresh_minutes,
        )
        return CalendarSourcePublic.of(source)
    return _imported(calendar_import.calendar_import_body(session, user=user, upload=body))


@router.put(
    "/instruments/{instrument_id}/calendars/{source_id}",
    response_model=CalendarImported,
    tags=["calendars"],
    openapi_extra=_CALENDAR_BODY,
)
def replace_calendar(
    session: SessionDep, user: CurrentUser, instrument_id: Id, source_id: Id, body: CalendarBody
) -> CalendarImported:
    """Upload a new version of an uploaded calendar; unchanged events keep their busy time."""
    if not isinstance(body, ExpandedCalendar):
        raise AppError("send the new calendar as text/calendar", 415)
    return _imported(
        calendar_import.calendar_import_body(session, user=user, upload=body, source_id=source_id)
    )


@router.get(
    "/instruments/{instrument_id}/calendars",
    response_model=list[CalendarSourcePublic],
    tags=["calendars"],
)
def list_calendars(
    session: SessionDep, user: CurrentUser, instrument_id: Id
) -> list[CalendarSourcePublic]:
    """The instrument's imported calendars with their last fetch, error and event count."""
    sources = calendar_import.calendar_source_list(session, user=user, instrument_id=instrument_id)
    return [CalendarSourcePublic.of(s) for s in sources]


@router.delete(
    "/instruments/{instrument_id}/calendars/{source_id}", status_code=204, tags=["calendars"]
)
def delete_calendar(
    session: SessionDep, user: CurrentUser, instrument_id: Id, source_id: Id
) -> Response:
    """Remove an imported calendar and all the busy time it brought."""
    calendar_import.calendar_source_delete(
        session, user=user, instrument_id=instrument_id, source_id=source_id
    )
    return Response(status_code=204)
