"""A lab's published services: create, change, withdraw, list; and what one costs a person
(the price of their payer class, with the same fallbacks as rate cards)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from billing.prices import FALLBACK, payer_class
from billing.services.forms import form_checked
from billing.services.models import Service
from booking.access import manages_lab
from core.audit import audit_record
from core.errors import Forbidden, Invalid, NotFound
from core.models import User
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.models import Institution, Instrument, Lab, PayerClass

EDITABLE = ("name", "description", "unit", "prices", "turnaround_days", "sample_types",
            "form", "max_units", "active")  # fmt: skip


class ServiceNotFound(NotFound):
    def __init__(self, service_id: int) -> None:
        super().__init__(f"service {service_id} not found")


def prices_checked(prices: dict[str, Any]) -> dict[str, int]:
    """{payer class: minor units}: known classes, whole non-negative amounts, at least one."""
    out: dict[str, int] = {}
    for key, amount in prices.items():
        if key not in PayerClass.__members__:
            raise Invalid(f"prices.{key}: one of {', '.join(PayerClass.__members__)}")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount < 10**12:
            raise Invalid(f"prices.{key}: a whole number of minor units, 0 or more")
        out[key] = amount
    if not out:
        raise Invalid("prices: give a price for at least one payer class")
    return out


def _apply(service: Service, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if key == "prices":
            value = prices_checked(value)
        elif key == "form":
            value = form_checked(value)
        elif key in ("name",) and not str(value).strip():
            raise Invalid("name: required")
        elif isinstance(value, str):
            value = value.strip()
        setattr(service, key, value)


def service_create(
    session: Session, *, user: User, instrument_id: int, data: dict[str, Any]
) -> Service:
    """Publish a service on one of the lab's instruments (the lab's managers)."""
    instrument = session.get(Instrument, instrument_id)
    if instrument is None:
        raise Invalid(f"instrument_id: no instrument {instrument_id}")
    if not manages_lab(user, instrument.lab_id):
        raise Forbidden("only a manager of the instrument's lab publishes its services")
    assert instrument.id is not None
    service = Service(
        lab_id=instrument.lab_id,
        instrument_id=instrument.id,
        name="",
        prices={},
        currency=get_settings().currency,
        created_by_id=user.id,
    )
    _apply(service, {k: v for k, v in data.items() if k in EDITABLE and v is not None})
    if not service.name:
        raise Invalid("name: required")
    if not service.prices:
        raise Invalid("prices: give a price for at least one payer class")
    session.add(service)
    session.flush()
    audit_record(session, actor_id=user.id, action="service.create", entity="service",
                 entity_id=service.id, after={"name": service.name, "prices": service.prices})  # fmt: skip
    return service


def service_update(
    session: Session, *, user: User, service_id: int, data: dict[str, Any]
) -> Service:
    """Change a service (its managers); requests already quoted keep their quote."""
    service = service_get(session, service_id, include_withdrawn=True)
    if not manages_lab(user, service.lab_id):
        raise Forbidden("only the lab's managers change its services")
    before = {k: getattr(service, k) for k in EDITABLE if k in data}
    _apply(service, {k: v for k, v in data.items() if k in EDITABLE and v is not None})
    service.updated_at = utcnow()
    session.add(service)
    session.flush()
    audit_record(session, actor_id=user.id, action="service.update", entity="service",
                 entity_id=service.id, before=before,
                 after={k: getattr(service, k) for k in before})  # fmt: skip
    return service


def service_get(session: Session, service_id: int, *, include_withdrawn: bool = False) -> Service:
    service = session.get(Service, service_id)
    if service is None or not (service.active or include_withdrawn):
        raise ServiceNotFound(service_id)
    return service


def services_list(
    session: Session,
    *,
    lab_id: int | None = None,
    instrument_id: int | None = None,
    include_withdrawn: bool = False,
) -> list[Service]:
    query = select(Service).order_by(col(Service.lab_id), col(Service.name), col(Service.id))
    if lab_id is not None:
        query = query.where(Service.lab_id == lab_id)
    if instrument_id is not None:
        query = query.where(Service.instrument_id == instrument_id)
    if not include_withdrawn:
        query = query.where(col(Service.active).is_(True))
    return list(session.exec(query.limit(500)).all())


@dataclass(frozen=True)
class ServicePrice:
    payer_class: str
    unit_amount: int
    currency: str


def price_of(session: Session, service: Service, user: User) -> ServicePrice:
    """What one unit costs this person: their class's price, else the fallback class's."""
    lab = session.get(Lab, service.lab_id)
    assert lab is not None
    payer = session.get(Institution, user.institution_id) if user.institution_id else None
    wanted = payer_class(payer, lab.institution_id)
    for cls in (wanted, FALLBACK.get(wanted)):
        if cls is not None and cls.value in service.prices:
            return ServicePrice(wanted.value, int(service.prices[cls.value]), service.currency)
    raise Invalid(f"this service has no price for {wanted.value.replace('_', ' ')} payers; "
                  "ask the lab")  # fmt: skip
