"""A payer's invoices: the monthly bills with their lines (billing's printable page has one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from billing import views
from core.deps import SessionDep
from core.errors import AppError
from core.periods import months_back, period_of
from core.routing import UnitOfWorkRoute
from core.timeutil import utcnow
from labshare.pages.web import PageUser, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
PICKER_MONTHS = 24


@router.get("/me/invoices", response_class=HTMLResponse)
def my_invoices(
    request: Request,
    session: SessionDep,
    user: PageUser,
    period: Annotated[str | None, Query(max_length=7)] = None,
) -> HTMLResponse:
    """Invoices I may see: my lines on my institution's bills (admins: the whole bill)."""
    error = None
    invoices = []
    try:
        invoices = views.invoices_list(session, user=user, period=period or None)
    except AppError as exc:
        error = exc.message
    return render(
        request,
        "billing/invoices.html",
        {
            "invoices": list(reversed(invoices)),
            "period": period or "",
            # The picker lists months by name, newest first: two years back.
            "months": list(reversed(months_back(period_of(utcnow()), PICKER_MONTHS))),
            "error": error,
        },
        user=user,
        status_code=422 if error else 200,
    )


@router.get("/billing/invoices/{invoice_id:int}", response_class=HTMLResponse)
def invoice_page(
    request: Request, session: SessionDep, user: PageUser, invoice_id: int
) -> HTMLResponse:
    """One invoice, printable: numbered lines, vouchers, total due (or your own subtotal)."""
    invoice, scope = views.invoice_get(session, user=user, invoice_id=invoice_id)
    view = views.invoice_public(session, invoice, scope=scope, user=user)
    return render(request, "billing/invoice.html", {"invoice": view}, user=user)
