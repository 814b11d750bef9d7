"""A lab manager imports the lab's own calendar for an instrument: its events block booking."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import Response

from booking.calendars import imports as calendar_import
from booking.calendars.imports import ExpandedCalendar
from core.deps import SessionDep, oauth2_scheme, wanted_user
from core.errors import AppError, Invalid
from core.routing import UnitOfWorkRoute, read_before_unit_of_work
from core.settings import get_settings
from labshare.pages.web import Csrf, PageManager, SignInRequired, back_to, error_page

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_UPLOAD = get_settings().max_upload_bytes


async def _expanded_upload(
    request: Request,
    instrument_id: Id,
    file: Annotated[UploadFile, File()],
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> ExpandedCalendar | AppError:
    """The uploaded .ics, checked and expanded before the unit of work takes its write lock
    (a refusal is handed to the page to show)."""
    data = await file.read(MAX_UPLOAD + 1)
    if not data:
        return Invalid("choose an .ics file to import")
    if len(data) > MAX_UPLOAD:
        return Invalid(f"the calendar is larger than {MAX_UPLOAD // (1024 * 1024)} MB")
    wanted = wanted_user(request, token, missing=SignInRequired)
    if wanted is None:
        raise SignInRequired()
    try:
        return await read_before_unit_of_work(  # type: ignore[no-any-return]
            lambda session: calendar_import.calendar_upload_expand(
                session, user=wanted.load(session), instrument_id=instrument_id, data=data
            )
        )
    except AppError as exc:
        return exc


@router.post("/lab/instruments/{instrument_id}/calendars", dependencies=[Csrf])
def upload_calendar(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    upload: Annotated[ExpandedCalendar | AppError, Depends(_expanded_upload)],
) -> Response:
    """Import an uploaded .ics: its busy events block booking; bookings they hit are displaced."""
    try:
        if isinstance(upload, AppError):
            raise upload
        result = calendar_import.calendar_import_body(session, user=user, upload=upload)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(
        f"/lab/instruments/{instrument_id}?added={result.added}&displaced={result.displaced}",
        "imported",
    )


@router.post("/lab/instruments/{instrument_id}/calendars/url", dependencies=[Csrf])
def subscribe_calendar(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    url: Annotated[str, Form(max_length=2000)],
    refresh_minutes: Annotated[int, Form(ge=5, le=24 * 60)] = 60,
) -> Response:
    """Follow a calendar by its URL; the calendar sync fetches it on schedule."""
    try:
        calendar_import.calendar_source_add_url(
            session, user=user, instrument_id=instrument_id, url=url,
            refresh_minutes=refresh_minutes,
        )  # fmt: skip
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")


@router.post("/lab/instruments/{instrument_id}/calendars/{source_id}/delete", dependencies=[Csrf])
def remove_calendar(
    request: Request, session: SessionDep, user: PageManager, instrument_id: Id, source_id: Id
) -> Response:
    """Stop importing a calendar and free the busy time it brought."""
    try:
        calendar_import.calendar_source_delete(
            session, user=user, instrument_id=instrument_id, source_id=source_id
        )
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")
