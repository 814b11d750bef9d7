"""What an instrument costs, as billing will charge it: the price in force for each payer
class, and the class a person pays in.

The choice is billing.charge_sql's, in Python for pages and quotes: for a payer class, the
instrument's own rate card first, then the lab's default card for its category, then the
same two for the fallback class (internal pays as academic, a small company as a
company), and last the instrument's published rate (its class, then the fallback). A
card counts while `effective_from <= at < effective_to`; the newest card wins a tie.
The class follows the payer and provider institutions as charge_sql._payer_class does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, or_, select

from billing.models import RateCard
from core.models import User
from core.timeutil import utcnow
from instruments.models import (
    Institution,
    InstitutionKind,
    Instrument,
    Lab,
    PayerClass,
    Rate,
)

ACADEMIC = (InstitutionKind.university, InstitutionKind.institute, InstitutionKind.hospital)
FALLBACK = {PayerClass.internal: PayerClass.academic, PayerClass.small_company: PayerClass.company}


@dataclass(frozen=True)
class Price:
    amount: int  # minor units
    currency: str
    unit: str  # a RateUnit value
    payer_class: str  # the class it is the price for
    source: str  # "card", "category" (the lab's default for the category) or "published"
    since: datetime | None = None  # a card's effective_from
    minimum_charge: int = 0


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


def prices_in_force(
    session: Session, instrument_ids: Sequence[int], *, at: datetime | None = None
) -> dict[int, dict[PayerClass, Price]]:
    """For each instrument, the price billing charges each payer class at `at` (now)."""
    at = at or utcnow()
    ids = list(instrument_ids)
    if not ids:
        return {}
    places = {
        i: (lab, category)
        for i, lab, category in session.exec(
            select(Instrument.id, Instrument.lab_id, Instrument.category_id).where(
                col(Instrument.id).in_(ids)
            )
        ).all()
        if i is not None
    }
    cards = session.exec(
        select(RateCard).where(
            or_(
                col(RateCard.instrument_id).in_(ids),
                col(RateCard.instrument_id).is_(None)
                & col(RateCard.lab_id).in_({lab for lab, _ in places.values()})
                & col(RateCard.category_id).in_({c for _, c in places.values()}),
            ),
            col(RateCard.effective_from) <= at,
            or_(col(RateCard.effective_to).is_(None), col(RateCard.effective_to) > at),
        )
    ).all()
    published = session.exec(select(Rate).where(col(Rate.instrument_id).in_(ids))).all()
    # Each instrument's own cards, each (lab, category)'s defaults and each instrument's
    # published rates, grouped once rather than searched per instrument.
    own_cards: dict[int, list[RateCard]] = defaultdict(list)
    default_cards: dict[tuple[int, int | None], list[RateCard]] = defaultdict(list)
    for card in cards:
        if card.instrument_id is not None:
            own_cards[card.instrument_id].append(card)
        else:
            default_cards[(card.lab_id, card.category_id)].append(card)
    rates_of: dict[int, list[Rate]] = defaultdict(list)
    for published_rate in published:
        rates_of[published_rate.instrument_id].append(published_rate)
    out: dict[int, dict[PayerClass, Price]] = {}
    for instrument_id, (lab, category) in places.items():
        own = own_cards.get(instrument_id, [])
        default = default_cards.get((lab, category), [])
        rates = rates_of.get(instrument_id, [])
        prices: dict[PayerClass, Price] = {}
        for wanted in PayerClass:
            fallback = FALLBACK.get(wanted, wanted)
            price = None
            for klass in dict.fromkeys((wanted, fallback)):
                for source, group in (("card", own), ("category", default)):
                    found = max(
                        (c for c in group if c.payer_class == klass),
                        key=lambda c: c.id or 0,
                        default=None,
                    )
                    if found is not None:
                        price = Price(
                            found.amount, found.currency, found.unit.value, wanted.value, source,
                            found.effective_from, found.minimum_charge,
                        )  # fmt: skip
                        break
                if price is not None:
                    break
            if price is None:
                for klass in dict.fromkeys((wanted, fallback)):
                    rate = next((r for r in rates if r.payer_class == klass), None)
                    if rate is not None:
                        price = Price(
                            rate.amount, rate.currency, rate.unit.value, wanted.value, "published"
                        )
                        break
            if price is not None:
                prices[wanted] = price
        out[instrument_id] = prices
    return out


def prices_for(
    session: Session, user: User | None, instrument_ids: Sequence[int]
) -> dict[int, Price]:
    """Each instrument's price for this person's payer class. Without a person there is no
    class: no prices."""
    if user is None or not instrument_ids:
        return {}
    payer = session.get(Institution, user.institution_id) if user.institution_id else None
    providers = dict(
        session.exec(
            select(Instrument.id, Lab.institution_id)
            .join(Lab, col(Lab.id) == Instrument.lab_id)
            .where(col(Instrument.id).in_(list(instrument_ids)))
        ).all()
    )
    in_force = prices_in_force(session, instrument_ids)
    out: dict[int, Price] = {}
    for instrument_id, prices in in_force.items():
        price = prices.get(payer_class(payer, providers[instrument_id]))
        if price is not None:
            out[instrument_id] = price
    return out


def estimate(price: Price, minutes: int) -> int | None:
    """What `minutes` of use cost at this price, as billing.charge_sql charges a booking:
    the hourly amount per minute, rounded to the nearest minor unit, and never less than
    the minimum charge. None for a price per sample (the count is known after the work)."""
    if price.unit != "hour":
        return None
    return max((price.amount * minutes + 30) // 60, price.minimum_charge)
