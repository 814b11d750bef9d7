"""Read models for the admin API: settlements with their lines, per-instrument KPIs."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, select

from admin.kpis import instrument_kpis
from admin.models import Settlement, SettlementInstitution, SettlementInstrument
from admin.schemas import (
    InstrumentKpiPublic,
    SettlementInstitutionPublic,
    SettlementInstrumentPublic,
    SettlementPublic,
)
from core.periods import Period
from core.settings import get_settings
from instruments.models import Institution


def _hours(seconds: int) -> float:
    return round(seconds / 3600, 2)


def settlement_public(
    session: Session, settlement: Settlement, *, with_lines: bool = True
) -> SettlementPublic:
    """The settlement with one line per institution (in code order)."""
    lines = []
    if with_lines:
        query = (
            sa.select(SettlementInstitution, col(Institution.code), col(Institution.name))
            .join(Institution, col(Institution.id) == SettlementInstitution.institution_id)
            .where(col(SettlementInstitution.settlement_id) == settlement.id)
            .order_by(col(Institution.code))
        )
        lines = [
            SettlementInstitutionPublic(
                institution_id=line.institution_id,
                code=code,
                name=name,
                instruments=line.instruments,
                eligible_instruments=line.eligible_instruments,
                used_hours=_hours(line.used_seconds),
                external_hours=_hours(line.external_seconds),
                external_revenue=line.external_revenue,
                vouchers_redeemed=line.vouchers_redeemed,
                claim=line.claim,
                capped=line.capped,
                reward=line.reward,
                voucher_reimbursement=line.voucher_reimbursement,
            )
            for line, code, name in session.execute(query)
        ]
    return SettlementPublic.model_validate(
        settlement.model_dump() | {"institutions": lines}, from_attributes=False
    )


def settlement_instruments(
    session: Session,
    *,
    settlement_id: int,
    institution_id: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[SettlementInstrumentPublic], int | None]:
    """One page of a settlement's instrument lines, by instrument id."""
    query = select(SettlementInstrument).where(SettlementInstrument.settlement_id == settlement_id)
    if institution_id is not None:
        query = query.where(SettlementInstrument.institution_id == institution_id)
    if after is not None:
        query = query.where(col(SettlementInstrument.instrument_id) > after)
    rows = list(
        session.exec(query.order_by(col(SettlementInstrument.instrument_id)).limit(limit + 1))
    )
    more = len(rows) > limit
    items = [
        SettlementInstrumentPublic(
            **r.model_dump(
                include={
                    "instrument_id",
                    "institution_id",
                    "eligible",
                    "reason",
                    "asset_value",
                    "evaluation_failed",
                    "external_revenue",
                    "outside_users",
                    "vouchers_redeemed",
                    "score",
                    "reward",
                    "voucher_reimbursement",
                }
            ),
            used_hours=_hours(r.used_seconds),
            open_hours=_hours(r.open_seconds),
            external_hours=_hours(r.external_seconds),
            utilisation=r.utilisation_bp / 10_000,
        )
        for r in rows[:limit]
    ]
    return items, (items[-1].instrument_id if more and items else None)


def instrument_kpis_page(
    session: Session, *, period: str, idle: bool | None, after: int | None, limit: int
) -> tuple[list[InstrumentKpiPublic], int | None]:
    """One page of per-instrument KPIs for the month, by instrument id."""
    month = Period.parse(period)
    rows = [
        k
        for k in instrument_kpis(session, month, get_settings().currency)
        if (idle is None or k.idle == idle) and (after is None or k.row.id > after)
    ]
    page = rows[:limit]
    items = [
        InstrumentKpiPublic(
            id=k.row.id,
            code=k.row.code,
            name=k.row.name,
            lab_id=k.row.lab_id,
            institution_id=k.row.institution_id,
            category_id=k.row.category_id,
            open_hours=_hours(k.open_seconds),
            used_hours=_hours(k.used_seconds),
            booked_hours=_hours(k.booked_seconds),
            external_hours=_hours(k.external_seconds),
            utilisation=k.utilisation,
            idle=k.idle,
            bookings=k.bookings,
            no_shows=k.no_shows,
            revenue=k.revenue,
            external_revenue=k.external_revenue,
            people_trained=k.trained,
        )
        for k in page
    ]
    return items, (items[-1].id if len(rows) > limit and items else None)
