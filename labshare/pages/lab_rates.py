"""A lab manager sets an instrument's prices: rate cards per payer class, kept in history."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError

from billing import rates
from billing.schemas import RateCardIn
from core.deps import SessionDep
from core.errors import AppError, Invalid, invalid_input
from core.routing import UnitOfWorkRoute
from instruments.models import PayerClass, RateUnit
from labshare.pages.lab_instrument import FormDep, page_with_problem
from labshare.pages.web import Csrf, PageManager, back_to, parse_money

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/lab/instruments/{instrument_id}/rates", dependencies=[Csrf])
def add_rate(
    request: Request,
    session: SessionDep,
    user: PageManager,
    instrument_id: Id,
    form: FormDep,
    payer_class: Annotated[str, Form(max_length=32)],
    unit: Annotated[str, Form(max_length=16)],
    amount: Annotated[str, Form(max_length=20)],
    minimum_charge: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """A new price from now on for one payer class; it supersedes the one in force."""
    again = partial(
        page_with_problem, request, session, user, instrument_id, section="rates", form=form
    )
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
        return again(problem=invalid_input(exc))
    except ValueError:
        return again(problem=Invalid("unknown payer class or unit"))
    except AppError as exc:
        field = "amount" if "price" in exc.message else None
        return again(problem=exc, field=field)
    return back_to(f"/lab/instruments/{instrument_id}", "saved")
