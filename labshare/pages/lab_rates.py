"""A lab manager sets an instrument's prices: rate cards per payer class, kept in history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError

from billing import rates
from billing.schemas import RateCardIn
from core.deps import SessionDep
from core.errors import AppError, Invalid
from core.routing import UnitOfWorkRoute
from instruments.models import PayerClass, RateUnit
from labshare.pages.web import Csrf, PageManager, back_to, error_page, parse_money

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/lab/instruments/{instrument_id}/rates", dependencies=[Csrf])
def add_rate(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    payer_class: Annotated[str, Form(max_length=32)],
    unit: Annotated[str, Form(max_length=16)],
    amount: Annotated[str, Form(max_length=20)],
    minimum_charge: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """A new price from now on for one payer class; it supersedes the one in force."""
    try:
        data = RateCardIn(
            instrument_id=instrument_id,
            payer_class=PayerClass(payer_class),
            unit=RateUnit(unit),
            amount=parse_money(amount, field="price"),
            minimum_charge=parse_money(minimum_charge or "0", field="minimum charge"),
        )
        rates.rate_card_create(session, user=user, data=data)
    except ValidationError as exc:
        first = exc.errors()[0]
        return error_page(request, Invalid(str(first.get("msg", "invalid"))), user=user)
    except ValueError:
        return error_page(request, Invalid("unknown payer class or unit"), user=user)
    except AppError as exc:
        return error_page(request, exc, user=user)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")
