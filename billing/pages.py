"""A printable page for one invoice (signed in by the site's session cookie or a bearer token)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from billing import views
from core.deps import OptionalUser, SessionDep
from core.errors import Unauthorized
from core.money import format_money
from core.routing import UnitOfWorkRoute
from core.settings import get_settings

templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
templates.env.filters["money"] = format_money
templates.env.filters["local"] = lambda value: value.astimezone(get_settings().zone).strftime(
    "%Y-%m-%d %H:%M"
)
router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)


@router.get("/billing/invoices/{invoice_id:int}", response_class=HTMLResponse)
def invoice_page(
    request: Request, session: SessionDep, user: OptionalUser, invoice_id: int
) -> HTMLResponse:
    """One invoice as a page: numbered lines, vouchers, total due."""
    if user is None:
        raise Unauthorized("sign in to see invoices")
    invoice, scope = views.invoice_get(session, user=user, invoice_id=invoice_id)
    view = views.invoice_public(session, invoice, scope=scope, user=user)
    return templates.TemplateResponse(
        request, "billing/invoice.html", {"invoice": view, "zone": get_settings().timezone}
    )
