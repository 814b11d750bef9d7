"""The catalog's HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from core.deps import CurrentUser, SessionDep
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, encode_cursor
from core.params import only_params
from core.replicas import LagTolerant
from core.routing import UnitOfWorkRoute
from instruments import service
from instruments.models import CODE_PATTERN, InstrumentStatus
from instruments.schemas import (
    CategoryPublic,
    InstrumentCreate,
    InstrumentPublic,
    InstrumentSummary,
    InstrumentUpdate,
    OpeningHoursIn,
    OpeningInterval,
)

router = APIRouter(route_class=UnitOfWorkRoute, tags=["catalog"])
InstrumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Code = Annotated[str | None, Query(pattern=CODE_PATTERN)]
SEARCH_TEXT = r"^[^\x00-\x1f\x7f]*$"  # no control characters (PostgreSQL refuses NUL)


@router.get(
    "/instruments",
    response_model=Page[InstrumentSummary],
    dependencies=[
        LagTolerant,
        Depends(only_params("q", "category", "institution", "lab", "status", "limit", "next")),
    ],
)
def list_instruments(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200, pattern=SEARCH_TEXT)] = None,
    category: Code = None,
    institution: Code = None,
    lab: Code = None,
    status: InstrumentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[InstrumentSummary]:
    """Search the catalog by text and filters; follow `next` for the following page."""
    filters = service.SearchFilters(
        q=q, category=category, institution=institution, lab=lab, status=status
    )
    items, last = service.instrument_search(
        session, filters=filters, after=decode_cursor(next), limit=limit
    )
    return Page(items=items, next=encode_cursor(last) if last is not None else None)


@router.post("/instruments", response_model=InstrumentPublic, status_code=201)
def create_instrument(
    session: SessionDep, user: CurrentUser, data: InstrumentCreate
) -> InstrumentPublic:
    """Add an instrument to your lab (lab managers)."""
    instrument = service.instrument_create(session, user=user, data=data)
    return service.instrument_public(session, instrument)


@router.get(
    "/instruments/{instrument_id}", response_model=InstrumentPublic, dependencies=[LagTolerant]
)
def get_instrument(session: SessionDep, instrument_id: InstrumentId) -> InstrumentPublic:
    """One instrument with its lab, institution, booking rules, rates and opening hours."""
    return service.instrument_public(session, service.instrument_get(session, instrument_id))


@router.patch("/instruments/{instrument_id}", response_model=InstrumentPublic)
def update_instrument(
    session: SessionDep, user: CurrentUser, instrument_id: InstrumentId, data: InstrumentUpdate
) -> InstrumentPublic:
    """Edit an instrument of your lab (lab managers)."""
    instrument = service.instrument_update(
        session, user=user, instrument_id=instrument_id, data=data
    )
    return service.instrument_public(session, instrument)


@router.put("/instruments/{instrument_id}/opening-hours", response_model=list[OpeningInterval])
def put_opening_hours(
    session: SessionDep, user: CurrentUser, instrument_id: InstrumentId, data: OpeningHoursIn
) -> list[OpeningInterval]:
    """Replace the weekly opening hours (lab managers), in the network's time zone."""
    return service.opening_hours_set(
        session, user=user, instrument_id=instrument_id, intervals=data.intervals
    )


@router.get("/categories", response_model=list[CategoryPublic], dependencies=[LagTolerant])
def list_categories(session: SessionDep) -> list[CategoryPublic]:
    """The two-level category taxonomy with instrument counts."""
    return service.categories_list(session)
