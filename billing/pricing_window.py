"""How far back a new price may reach: never under what was already billed.

A rate card or a charging-policy change may not start before the last invoice run that
charged the instrument (or the lab), nor inside or before a closed month: either would
price the same month's sources two ways, or change an invoice that is final.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from billing.errors import Retroactive
from billing.models import BillingPeriod, Charge, PeriodStatus
from core.periods import period_bounds
from core.timeutil import to_utc_z
from instruments.models import Instrument


def priced_until(
    session: Session,
    *,
    lab_id: int,
    instrument_id: int | None = None,
    category_id: int | None = None,
) -> datetime | None:
    """The earliest moment a new price for these sources may take effect (None: any).

    The later of the end of the latest closed month and the latest invoice run that
    charged the instrument (or the lab's instruments of the category, or the lab)."""
    bounds: list[datetime] = []
    closed = session.exec(
        select(func.max(BillingPeriod.period)).where(BillingPeriod.status == PeriodStatus.closed)
    ).one()
    if closed:
        bounds.append(period_bounds(closed)[1])
    charged = select(Charge.period).where(Charge.lab_id == lab_id)
    if instrument_id is not None:
        charged = charged.where(Charge.instrument_id == instrument_id)
    elif category_id is not None:
        charged = charged.where(
            col(Charge.instrument_id).in_(
                select(Instrument.id).where(
                    Instrument.lab_id == lab_id, Instrument.category_id == category_id
                )
            )
        )
    last_run = session.exec(
        select(func.max(BillingPeriod.last_run_at)).where(
            col(BillingPeriod.period).in_(charged.distinct())
        )
    ).one()
    if last_run is not None:
        bounds.append(last_run if last_run.tzinfo else last_run.replace(tzinfo=UTC))
    return max(bounds) if bounds else None


def require_not_retroactive(start: datetime, earliest: datetime | None, *, what: str) -> None:
    """409 when `start` reaches under what was already billed or closed."""
    if earliest is not None and start < earliest:
        raise Retroactive(
            f"{what} cannot take effect before {to_utc_z(earliest)}: what came before is "
            "already invoiced (or in a closed month) at the old terms",
            earliest=to_utc_z(earliest),
        )
