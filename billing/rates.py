"""Rate cards, charging policies and assisted use: what labs set, checked and kept in history."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.errors import NotYourLab, PeriodClosed, RateOverlap
from billing.models import (
    POLICY_EPOCH,
    AssistedUse,
    BillingPeriod,
    Charge,
    ChargingPolicy,
    ChargingPolicyVersion,
    PeriodStatus,
    RateCard,
)
from billing.pricing_window import priced_until, require_not_retroactive
from billing.schemas import (
    ChargingPolicyIn,
    ChargingPolicyPublic,
    RateCardIn,
    RateCardPublic,
)
from booking.models import Booking
from core.audit import audit_record, audit_value
from core.errors import Conflict, NotFound
from core.models import Role, User
from core.periods import period_of
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.errors import UnknownCode
from instruments.models import Category, Instrument, Lab, Rate
from instruments.service import lab_by_code


def require_lab_manager(user: User | None, lab_id: int) -> None:
    """Only the lab's own manager sets its prices (None: an operator at the command line)."""
    if user is not None and not (user.role == Role.lab_manager and user.lab_id == lab_id):
        raise NotYourLab()


def _require_open(session: Session, moment: datetime) -> None:
    period = period_of(moment)
    row = session.get(BillingPeriod, period)
    if row is not None and row.status == PeriodStatus.closed:
        raise PeriodClosed(period)


def _overlapping(session: Session, card: RateCard) -> list[RateCard]:
    target = (
        col(RateCard.instrument_id) == card.instrument_id
        if card.instrument_id is not None
        else (col(RateCard.lab_id) == card.lab_id) & (col(RateCard.category_id) == card.category_id)
    )
    query = select(RateCard).where(
        target,
        RateCard.payer_class == card.payer_class,
        or_(col(RateCard.effective_to).is_(None), col(RateCard.effective_to) > card.effective_from),
    )
    if card.effective_to is not None:
        query = query.where(col(RateCard.effective_from) < card.effective_to)
    return list(session.exec(query.order_by(col(RateCard.effective_from))))


def rate_card_create(session: Session, *, user: User | None, data: RateCardIn) -> RateCard:
    """Add a card. An open-ended card supersedes the open-ended one before it from its start;
    any other overlap is a 409, and so is a start inside a closed billing month."""
    if data.instrument_id is not None:
        instrument = session.get(Instrument, data.instrument_id)
        if instrument is None:
            raise NotFound(f"no instrument {data.instrument_id}")
        lab_id, category_id, instrument_id = instrument.lab_id, None, instrument.id
    else:
        assert data.category is not None
        category = session.exec(select(Category).where(Category.code == data.category)).first()
        if category is None:
            raise UnknownCode("category", data.category)
        if data.lab:
            lab_id = lab_by_code(session, data.lab).id or 0
        elif user is not None and user.lab_id is not None:
            lab_id = user.lab_id
        else:
            raise Conflict("a category default needs the lab it belongs to (lab)")
        category_id, instrument_id = category.id, None
    require_lab_manager(user, lab_id)
    start = data.effective_from or utcnow()
    _require_open(session, start)
    earliest = priced_until(
        session, lab_id=lab_id, instrument_id=instrument_id, category_id=category_id
    )
    require_not_retroactive(start, earliest, what="a rate card")
    card = RateCard(
        lab_id=lab_id,
        instrument_id=instrument_id,
        category_id=category_id,
        payer_class=data.payer_class,
        unit=data.unit,
        amount=data.amount,
        currency=data.currency or get_settings().currency,
        minimum_charge=data.minimum_charge,
        rounding_minutes=data.rounding_minutes,
        assisted_surcharge=data.assisted_surcharge,
        effective_from=start,
        effective_to=data.effective_to,
        created_by_id=user.id if user else None,
    )
    for other in _overlapping(session, card):
        supersedes = (
            other.effective_to is None
            and card.effective_to is None
            and other.effective_from < card.effective_from
        )
        if not supersedes:
            raise RateOverlap(
                f"overlaps rate card {other.id} ({other.payer_class.value}, from "
                f"{other.effective_from.isoformat()} to "
                f"{other.effective_to.isoformat() if other.effective_to else 'open'})",
                conflicting_id=other.id,
            )
        other.effective_to = card.effective_from
        session.add(other)
    try:
        with session.begin_nested():
            session.add(card)
    except IntegrityError:  # the exclusion constraint: a concurrent card took the period
        raise RateOverlap("overlaps another rate card for this payer class")
    rates_sync(session, lab_id=lab_id, instrument_id=instrument_id, category_id=category_id)
    audit_record(
        session,
        actor_id=user.id if user else None,
        action="rate_card.create",
        entity="instrument" if card.instrument_id else "lab",
        entity_id=card.instrument_id or card.lab_id,
        after={
            "rate_card_id": card.id,
            "payer_class": card.payer_class.value,
            "unit": card.unit.value,
            "amount": card.amount,
            "currency": card.currency,
            "minimum_charge": card.minimum_charge,
            "effective_from": card.effective_from.isoformat(),
        },
    )
    return card


def rate_card_end(
    session: Session, *, user: User | None, card_id: int, effective_to: datetime
) -> RateCard:
    """End a card at a future time (a card's past is never changed)."""
    card = session.get(RateCard, card_id)
    if card is None:
        raise NotFound(f"no rate card {card_id}")
    require_lab_manager(user, card.lab_id)
    if effective_to <= card.effective_from:
        raise Conflict("a card must end after it starts")
    if effective_to < utcnow() or (card.effective_to and card.effective_to < utcnow()):
        raise Conflict("that would rewrite history: a card can only be ended in the future")
    card.effective_to = effective_to
    session.add(card)
    session.flush()
    rates_sync(
        session, lab_id=card.lab_id, instrument_id=card.instrument_id, category_id=card.category_id
    )
    return card


def rate_cards_list(
    session: Session,
    *,
    instrument_id: int | None = None,
    lab: str | None = None,
    at: datetime | None = None,
) -> list[RateCard]:
    """Cards of an instrument (its own and its category's defaults) or of a lab."""
    query = select(RateCard)
    if instrument_id is not None:
        instrument = session.get(Instrument, instrument_id)
        if instrument is None:
            raise NotFound(f"no instrument {instrument_id}")
        query = query.where(
            or_(
                col(RateCard.instrument_id) == instrument_id,
                (col(RateCard.instrument_id).is_(None))
                & (col(RateCard.lab_id) == instrument.lab_id)
                & (col(RateCard.category_id) == instrument.category_id),
            )
        )
    if lab is not None:
        query = query.where(RateCard.lab_id == lab_by_code(session, lab).id)
    if at is not None:
        query = query.where(
            col(RateCard.effective_from) <= at,
            or_(col(RateCard.effective_to).is_(None), col(RateCard.effective_to) > at),
        )
    return list(session.exec(query.order_by(col(RateCard.id))))


def rate_card_public(session: Session, card: RateCard) -> RateCardPublic:
    lab = session.get(Lab, card.lab_id)
    category = session.get(Category, card.category_id) if card.category_id else None
    assert card.id is not None and lab is not None
    return RateCardPublic(
        id=card.id,
        lab=lab.code,
        instrument_id=card.instrument_id,
        category=category.code if category else None,
        payer_class=card.payer_class,
        unit=card.unit,
        amount=card.amount,
        currency=card.currency,
        minimum_charge=card.minimum_charge,
        rounding_minutes=card.rounding_minutes,
        assisted_surcharge=card.assisted_surcharge,
        effective_from=card.effective_from,
        effective_to=card.effective_to,
    )


def rates_sync(
    session: Session,
    *,
    lab_id: int,
    instrument_id: int | None = None,
    category_id: int | None = None,
) -> int:
    """Mirror the cards in force now into the catalog's published rates (what instrument
    pages show): an instrument's own card, else its category default, per payer class."""
    query = select(Instrument).where(Instrument.lab_id == lab_id)
    if instrument_id is not None:
        query = query.where(Instrument.id == instrument_id)
    elif category_id is not None:
        query = query.where(Instrument.category_id == category_id)
    now = utcnow()
    synced = 0
    for instrument in session.exec(query).all():
        best: dict[str, RateCard] = {}
        for card in rate_cards_list(session, instrument_id=instrument.id, at=now):
            current = best.get(card.payer_class.value)
            if current is None or (current.instrument_id is None and card.instrument_id):
                best[card.payer_class.value] = card
        if not best:
            continue
        session.execute(
            delete(Rate).where(
                col(Rate.instrument_id) == instrument.id, col(Rate.payer_class).in_(list(best))
            )
        )
        session.add_all(
            Rate(
                instrument_id=instrument.id or 0,
                payer_class=card.payer_class,
                unit=card.unit,
                amount=card.amount,
                currency=card.currency,
            )
            for card in best.values()
        )
        synced += 1
    session.flush()
    return synced


def policy_get(session: Session, *, lab_code: str) -> ChargingPolicyPublic:
    """A lab's charging policy; labs that set none bill booked time with no fees."""
    lab = lab_by_code(session, lab_code)
    policy = session.get(ChargingPolicy, lab.id)
    if policy is None:
        policy = ChargingPolicy(lab_id=lab.id or 0, currency=get_settings().currency)
    return ChargingPolicyPublic(
        lab=lab.code, **policy.model_dump(exclude={"lab_id", "updated_at", "updated_by_id"})
    )


def policy_set(
    session: Session, *, user: User | None, lab_code: str, data: ChargingPolicyIn
) -> ChargingPolicyPublic:
    """Change a lab's charging policy (its manager) from `effective_from`: by default as
    early as allowed, that is since the lab's last invoice run and after the latest closed
    month. What happened before keeps the terms in force then."""
    lab = lab_by_code(session, lab_code)
    assert lab.id is not None
    require_lab_manager(user, lab.id)
    now = utcnow()
    earliest = priced_until(session, lab_id=lab.id)
    current = session.get(ChargingPolicy, lab.id)
    start = data.effective_from or max(
        earliest or POLICY_EPOCH, current.effective_from if current else POLICY_EPOCH
    )
    require_not_retroactive(start, earliest, what="a charging policy")
    if start > now + timedelta(days=366):
        raise Conflict("a charging policy can start at most a year ahead")
    terms = data.model_dump(exclude={"currency", "effective_from"})
    currency = data.currency or get_settings().currency
    if current is None:
        current = ChargingPolicy(lab_id=lab.id, currency=currency, effective_from=start)
    elif start > current.effective_from:
        # The version in force until now is kept, with its span, for what came before.
        session.add(
            ChargingPolicyVersion(
                lab_id=lab.id,
                **current.model_dump(
                    include={"basis", "no_show_fee", "late_cancel_window_minutes",
                             "late_cancel_fee", "bill_overtime", "currency", "updated_by_id"}
                ),
                effective_from=current.effective_from,
                effective_to=start,
            )
        )  # fmt: skip
    elif start < current.effective_from:
        raise Conflict(
            "a charging policy cannot start before the one in force "
            f"(from {current.effective_from.isoformat()})"
        )
    for name, value in terms.items():
        setattr(current, name, value)
    current.currency = currency
    current.effective_from = start
    current.updated_at = now
    current.updated_by_id = user.id if user else None
    session.add(current)
    session.flush()
    audit_record(
        session,
        actor_id=user.id if user else None,
        action="charging_policy.set",
        entity="lab",
        entity_id=lab.id,
        after={**{k: audit_value(v) for k, v in terms.items()}, "currency": currency,
               "effective_from": start.isoformat()},
    )  # fmt: skip
    return policy_get(session, lab_code=lab_code)


def assisted_set(session: Session, *, user: User | None, booking_id: int, assisted: bool) -> bool:
    """Mark a booking as assisted by the lab's staff (its charge then carries the surcharge)."""
    booking = session.get(Booking, booking_id)
    if booking is None:
        raise NotFound(f"no booking {booking_id}")
    instrument = session.get(Instrument, booking.instrument_id)
    assert instrument is not None
    require_lab_manager(user, instrument.lab_id)
    if session.exec(select(Charge.id).where(Charge.booking_id == booking_id)).first():
        raise Conflict("this booking is already charged; its charge cannot change")
    existing = session.get(AssistedUse, booking_id)
    if assisted and existing is None:
        session.add(AssistedUse(booking_id=booking_id, marked_by_id=user.id if user else None))
    elif not assisted and existing is not None:
        session.delete(existing)
    session.flush()
    return assisted
