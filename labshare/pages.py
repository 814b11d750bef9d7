"""Server-rendered pages for people."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from core.deps import SessionDep
from core.errors import AppError
from core.pagination import decode_cursor, encode_cursor
from instruments import service as catalog

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    next: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The catalog search page."""
    error = None
    items: list = []
    last = None
    try:
        filters = catalog.SearchFilters(q=q or None, category=category or None)
        items, last = catalog.instrument_search(
            session, filters=filters, after=decode_cursor(next), limit=25
        )
    except AppError as exc:
        error = exc.message
    categories = catalog.categories_list(session)
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "items": items,
            "q": q or "",
            "category": category or "",
            "categories": categories,
            "next": encode_cursor(last) if last is not None else None,
            "error": error,
        },
    )


@router.get("/instruments/{instrument_id}", response_class=HTMLResponse)
def instrument_page(request: Request, session: SessionDep, instrument_id: int) -> HTMLResponse:
    """One instrument: what it is, where, its rules and rates."""
    try:
        view = catalog.instrument_public(session, catalog.instrument_get(session, instrument_id))
    except AppError as exc:
        return templates.TemplateResponse(
            request, "error.html", {"message": exc.message}, status_code=exc.status_code
        )
    return templates.TemplateResponse(request, "instrument.html", {"i": view})
