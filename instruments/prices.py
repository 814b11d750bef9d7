"""What an instrument costs a given person: their payer class, and the published rate for it.

The class follows the same rule billing charges by (billing.charge_sql._payer_class): the
instrument's own institution is internal; a university, institute or hospital is academic;
a flagged or small company is a small company; anyone else is a company.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from core.models import User
from instruments.models import (
    Institution,
    InstitutionKind,
    Instrument,
    Lab,
    PayerClass,
    Rate,
    RateUnit,
)

ACADEMIC = (InstitutionKind.university, InstitutionKind.institute, InstitutionKind.hospital)


@dataclass(frozen=True)
class Price:
    amount: int  # minor units
    currency: str
    unit: str  # a RateUnit value
    payer_class: str


def payer_class(payer: Institution | None, provider_institution_id: int) -> PayerClass:
    """The class a person of `payer` pays at an instrument of the provider institution."""
    if payer is None:
        return PayerClass.company
    if payer.id == provider_institution_id:
        return PayerClass.internal
    if payer.kind in ACADEMIC:
        return PayerClass.academic
    if payer.kind == InstitutionKind.small_company or payer.is_small_company:
        return PayerClass.small_company
    return PayerClass.company


def prices_for(
    session: Session, user: User | None, instrument_ids: Sequence[int]
) -> dict[int, Price]:
    """Each instrument's published rate for the person's class (per hour where an instrument
    publishes both units). Without a person there is no class: no prices."""
    if user is None or not instrument_ids:
        return {}
    payer = session.get(Institution, user.institution_id) if user.institution_id else None
    rows = session.exec(
        select(Rate, Lab.institution_id)
        .join(Instrument, col(Instrument.id) == Rate.instrument_id)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(col(Rate.instrument_id).in_(list(instrument_ids)))
    ).all()
    out: dict[int, Price] = {}
    for rate, provider in rows:
        if rate.payer_class != payer_class(payer, provider):
            continue
        known = out.get(rate.instrument_id)
        if known is None or (known.unit != RateUnit.hour and rate.unit == RateUnit.hour):
            out[rate.instrument_id] = Price(
                rate.amount, rate.currency, rate.unit.value, rate.payer_class.value
            )
    return out
