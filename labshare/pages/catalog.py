"""Catalog pages: search with filters, and one instrument's page with its week calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from billing.prices import prices_for, prices_in_force
from billing.projects.accounts import accounts_chargeable
from billing.services.catalog import services_list
from billing.voucher_applications import voucher_cover, vouchers_usable
from booking import availability, qualifications
from booking.schemas import Slot
from core.deps import OptionalUser, SessionDep
from core.errors import AppError
from core.kept import kept
from core.models import User
from core.replicas import LagTolerant
from core.routing import UnitOfWorkRoute
from core.settings import get_settings
from instruments import service as catalog
from instruments.models import Instrument, InstrumentStatus
from instruments.schemas import InstrumentSummary
from labshare.pages.web import error_page, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
InstrumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PAGE_SIZE = 25
# The status filter's "any, retired included"; no status at all means "not retired".
ANY_STATUS = "all"
# How far "find a free slot" looks from the day asked for.
FIND_WINDOW = timedelta(days=14)


def _pickers(session: Session) -> dict[str, Any]:
    """What the category and institution pickers list (catalog/_pickers.html), kept for
    LABSHARE_PICKER_CACHE_SECONDS: every catalog page shows them, and they change rarely."""
    return kept(
        session,
        "catalog pickers",
        get_settings().picker_cache_seconds,
        lambda: {
            "categories": catalog.categories_list(session),
            "directory": catalog.directory(session),
        },
    )


def _for_person(session: Session, user: User | None, ids: list[int]) -> dict[str, Any]:
    """Per instrument, the price this person pays and whether they need training first."""
    return {
        "prices": prices_for(session, user, ids),
        "training": qualifications.training_needed(session, user, ids),
    }


@router.get("/", response_class=HTMLResponse, dependencies=[LagTolerant])
def home(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    institution: Annotated[str | None, Query(max_length=64)] = None,
    lab: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """The catalog: search by text, category, institution, lab and status; the best
    matches first, each with when it is next free, its price for this person and whether
    it needs training."""
    error = None
    items: list[InstrumentSummary] = []
    total = 0
    form = {
        "q": (q or "").strip(),
        "category": category or "",
        "institution": (institution or "").strip(),
        "lab": (lab or "").strip(),
        "status": status or "",
    }
    try:
        filters = catalog.SearchFilters(
            q=form["q"] or None,
            category=form["category"] or None,
            institution=form["institution"] or None,
            lab=form["lab"] or None,
            status=InstrumentStatus(status) if status and status != ANY_STATUS else None,
            exclude_retired=not status,
        )
        items, total = catalog.catalog_page(session, filters=filters, page=page, size=PAGE_SIZE)
    except AppError as exc:
        error = exc.message
    except ValueError:
        error = f"status: {status!r} is not one of {', '.join(s.value for s in InstrumentStatus)}"
    ids = [i.id for i in items]
    return render(
        request,
        "catalog/search.html",
        {
            "items": items,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "first_shown": (page - 1) * PAGE_SIZE + 1,
            "form": form,
            "statuses": [s.value for s in InstrumentStatus],
            **_pickers(session),
            **_for_person(session, user, ids),
            "next_free": availability.next_free(session, ids),
            "error": error,
        },
        user=user,
        status_code=422 if error else 200,
    )


@router.get("/instruments/{instrument_id}", response_class=HTMLResponse, dependencies=[LagTolerant])
def instrument_page(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    instrument_id: InstrumentId,
    at: Annotated[date | None, Query(description="open the calendar at this day")] = None,
) -> HTMLResponse:
    """One instrument: what it is, where, its rules, rates, opening hours and week calendar."""
    try:
        instrument = catalog.instrument_get(session, instrument_id)
    except AppError as exc:
        return error_page(request, exc, user=user)
    view = catalog.instrument_public(session, instrument)
    hours = view.opening_hours
    # The calendar shows the hours the instrument is ever open (whole hours around them).
    first = min((o.opens.hour for o in hours), default=6)
    last = max((o.closes.hour + (1 if o.closes.minute or o.closes.second else 0) for o in hours),
               default=23)  # fmt: skip
    # Signed in, a qualification the person lacks is said at the top (the rules say it anyway).
    needing = qualifications.training_needed(session, user, [instrument_id])
    cover = voucher_cover(session, user=user, provider_institution_id=view.institution.id)
    opens_at = at or _first_bookable_day(session, instrument)
    return render(
        request,
        "catalog/instrument.html",
        {
            "i": view,
            "can_manage": user is not None and catalog.can_manage(user, instrument),
            "day_from": f"{first:02d}:00:00",
            "day_to": f"{min(last, 24):02d}:00:00",
            "initial_day": opens_at.isoformat() if opens_at else "",
            "your_price": prices_for(session, user, [instrument_id]).get(instrument_id),
            "voucher_cover": cover,
            # The vouchers a booking here can be paid with (none at one's own institution).
            "usable_vouchers": vouchers_usable(session, user=user) if user and cover else [],
            "charged": list(
                prices_in_force(session, [instrument_id]).get(instrument_id, {}).values()
            ),
            "training_needed": user is not None and instrument_id in needing,
            "services": services_list(session, instrument_id=instrument_id),
            "chargeable": accounts_chargeable(session, user=user) if user else [],
            "training_for": {"lab_id": instrument.lab_id, "category_id": instrument.category_id},
        },
        user=user,
    )


def _first_bookable_day(session: Session, instrument: Instrument) -> date | None:
    """The day (in the network's zone) of the first slot one could book: the calendar opens
    there, not on days that are past, inside the lead time or closed, where a phone's one-day
    view showed nothing to pick."""
    if instrument.status != InstrumentStatus.active:
        return None
    first = availability.first_bookable(session, instrument)
    return first.astimezone(get_settings().zone).date() if first else None


@router.get("/find", response_class=HTMLResponse, dependencies=[LagTolerant])
def find_slot(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    category: Annotated[str | None, Query(max_length=64)] = None,
    day: Annotated[date | None, Query(description="from this day (network zone)")] = None,
    hours: Annotated[float, Query(gt=0, le=24 * 31)] = 1,
    institution: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """The earliest free slots of a length across a category's instruments, two weeks from
    a day: what PPMS and iLab users look for first. Each books in one click."""
    zone = get_settings().zone
    start_day = day or datetime.now(zone).date()
    start = datetime.combine(start_day, time(0), zone).astimezone(UTC)
    slots: list[Slot] = []
    error = None
    if category:
        try:
            slots = availability.slots_find(
                session,
                category=category,
                start=start,
                end=start + FIND_WINDOW,
                duration_minutes=round(hours * 60),
                institution=institution or None,
                limit=30,
            ).items
        except AppError as exc:
            error = exc.message
    ids = sorted({s.instrument_id for s in slots})
    return render(
        request,
        "catalog/find.html",
        {
            "form": {
                "category": category or "",
                "day": start_day.isoformat(),
                "hours": hours,
                "institution": institution or "",
            },
            "slots": slots,
            **_pickers(session),
            **_for_person(session, user, ids),
            "labs": catalog.lab_names(session, ids),
            "error": error,
        },
        user=user,
        status_code=422 if error else 200,
    )
