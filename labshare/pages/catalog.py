"""Catalog pages: search with filters, and one instrument's page with its week calendar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from core.deps import OptionalUser, SessionDep
from core.errors import AppError
from core.pagination import decode_cursor, encode_cursor
from core.routing import UnitOfWorkRoute
from instruments import service as catalog
from instruments.models import InstrumentStatus
from labshare.pages.web import error_page, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
InstrumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PAGE_SIZE = 25
# The status filter's "any, retired included"; no status at all means "not retired".
ANY_STATUS = "all"


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    session: SessionDep,
    user: OptionalUser,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    institution: Annotated[str | None, Query(max_length=64)] = None,
    lab: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The catalog: search by text, category, institution, lab and status."""
    error = None
    items: list = []
    last = None
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
        items, last = catalog.instrument_search(
            session, filters=filters, after=decode_cursor(next), limit=PAGE_SIZE
        )
    except AppError as exc:
        error = exc.message
    except ValueError:
        error = f"status: {status!r} is not one of {', '.join(s.value for s in InstrumentStatus)}"
    return render(
        request,
        "catalog/search.html",
        {
            "items": items,
            "form": form,
            "statuses": [s.value for s in InstrumentStatus],
            "categories": catalog.categories_list(session),
            "next": encode_cursor(last) if last is not None else None,
            "after": next,
            "error": error,
        },
        user=user,
        status_code=422 if error else 200,
    )


@router.get("/instruments/{instrument_id}", response_class=HTMLResponse)
def instrument_page(
    request: Request, session: SessionDep, user: OptionalUser, instrument_id: InstrumentId
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
    return render(
        request,
        "catalog/instrument.html",
        {
            "i": view,
            "can_manage": user is not None and catalog.can_manage(user, instrument),
            "day_from": f"{first:02d}:00:00",
            "day_to": f"{min(last, 24):02d}:00:00",
        },
        user=user,
    )
