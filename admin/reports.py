"""Exports: a settlement per institution (CSV, XLSX) and the national assessment (CSV)."""

from __future__ import annotations

import io
from collections.abc import Iterable

import sqlalchemy as sa
from openpyxl import Workbook
from sqlmodel import Session, col

from admin.kpis import instrument_kpis
from admin.models import Settlement, SettlementInstitution, SettlementInstrument
from admin.settlement import settlement_get
from core.exports import csv_text, sheet_append
from core.periods import Period
from core.settings import CURRENCY_EXPONENTS, get_settings
from instruments.models import Category, Institution, Instrument, Lab

INSTITUTION_COLUMNS = [
    "institution_code",
    "institution_name",
    "instruments",
    "eligible_instruments",
    "used_hours",
    "external_hours",
    "external_revenue",
    "vouchers_redeemed",
    "claim",
    "capped",
    "reward",
    "voucher_reimbursement",
    "payout",
    "currency",
]
INSTRUMENT_COLUMNS = [
    "instrument_code",
    "institution_code",
    "eligible",
    "reason",
    "asset_value",
    "used_hours",
    "open_hours",
    "utilisation",
    "external_hours",
    "external_revenue",
    "outside_users",
    "vouchers_redeemed",
    "score",
    "reward",
    "voucher_reimbursement",
]
ASSESSMENT_COLUMNS = [
    "instrument_code",
    "instrument_name",
    "category",
    "lab",
    "institution",
    "effective_working_hours",
    "external_service_hours",
    "service_income",
    "external_service_income",
    "people_trained",
    "currency",
]


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:.2f}"


def institution_rows(session: Session, settlement: Settlement) -> list[list[object]]:
    """One row per institution, in institution code order; money in minor units."""
    query = (
        sa.select(SettlementInstitution, col(Institution.code), col(Institution.name))
        .join(Institution, col(Institution.id) == SettlementInstitution.institution_id)
        .where(col(SettlementInstitution.settlement_id) == settlement.id)
        .order_by(col(Institution.code))
    )
    return [
        [
            code,
            name,
            line.instruments,
            line.eligible_instruments,
            _hours(line.used_seconds),
            _hours(line.external_seconds),
            line.external_revenue,
            line.vouchers_redeemed,
            line.claim,
            str(line.capped).lower(),
            line.reward,
            line.voucher_reimbursement,
            line.reward + line.voucher_reimbursement,
            settlement.currency,
        ]
        for line, code, name in session.execute(query)
    ]


def instrument_rows(session: Session, settlement: Settlement) -> list[list[object]]:
    """One row per instrument with any activity or reward, in instrument code order."""
    query = (
        sa.select(SettlementInstrument, col(Instrument.code), col(Institution.code))
        .join(Instrument, col(Instrument.id) == SettlementInstrument.instrument_id)
        .join(Institution, col(Institution.id) == SettlementInstrument.institution_id)
        .where(col(SettlementInstrument.settlement_id) == settlement.id)
        .where(
            sa.or_(
                col(SettlementInstrument.used_seconds) > 0,
                col(SettlementInstrument.external_revenue) > 0,
                col(SettlementInstrument.vouchers_redeemed) > 0,
            )
        )
        .order_by(col(Instrument.code))
    )
    return [
        [
            code,
            inst_code,
            line.eligible,
            line.reason or "",
            line.asset_value,
            _hours(line.used_seconds),
            _hours(line.open_seconds),
            f"{line.utilisation_bp / 10_000:.4f}",
            _hours(line.external_seconds),
            line.external_revenue,
            line.outside_users,
            line.vouchers_redeemed,
            line.score,
            line.reward,
            line.voucher_reimbursement,
        ]
        for line, code, inst_code in session.execute(query)
    ]


def _csv(header: list[str], rows: Iterable[list[object]]) -> str:
    return csv_text(header, rows)


def settlement_csv(session: Session, *, settlement_id: int) -> str:
    """Per institution: hours, revenue, vouchers redeemed, reward (money in minor units)."""
    settlement = settlement_get(session, settlement_id)
    return _csv(INSTITUTION_COLUMNS, institution_rows(session, settlement))


def settlement_xlsx(session: Session, *, settlement_id: int) -> bytes:
    """A workbook: a summary sheet, one row per institution, one row per active instrument."""
    settlement = settlement_get(session, settlement_id)
    book = Workbook()
    summary = book.active
    summary.title = "Settlement"
    major = 10 ** CURRENCY_EXPONENTS.get(settlement.currency, 2)
    for key, value in [
        ("settlement", settlement.id),
        ("period", settlement.period),
        ("status", settlement.status.value),
        ("currency", settlement.currency),
        ("budget", settlement.budget / major),
        ("total reward", settlement.total_reward / major),
        ("total voucher reimbursement", settlement.total_voucher_reimbursement / major),
        ("pro-rata scale", settlement.scale),
        ("inputs hash (SHA-256)", settlement.inputs_hash),
        ("note", "amounts above in major units; on the other sheets in minor units"),
    ]:
        sheet_append(summary, [key, value])
    sheets = [
        ("Institutions", INSTITUTION_COLUMNS, institution_rows(session, settlement)),
        ("Instruments", INSTRUMENT_COLUMNS, instrument_rows(session, settlement)),
    ]
    for title, header, rows in sheets:
        sheet = book.create_sheet(title)
        sheet_append(sheet, header)
        for row in rows:
            sheet_append(sheet, row)
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def assessment_csv(session: Session, *, period: str) -> str:
    """The national-assessment figures per instrument for a month or a year."""
    span = Period.parse(period, allow_year=True)
    currency = get_settings().currency
    names: dict[str, dict[int, str]] = {
        "category": {
            i: c for i, c in session.execute(sa.select(col(Category.id), col(Category.code)))
        },
        "lab": {i: c for i, c in session.execute(sa.select(col(Lab.id), col(Lab.code)))},
        "institution": {
            i: c for i, c in session.execute(sa.select(col(Institution.id), col(Institution.code)))
        },
    }
    rows = [
        [
            k.row.code,
            k.row.name,
            names["category"].get(k.row.category_id, ""),
            names["lab"].get(k.row.lab_id, ""),
            names["institution"].get(k.row.institution_id, ""),
            _hours(k.used_seconds),
            _hours(k.external_seconds),
            k.revenue,
            k.external_revenue,
            k.trained,
            currency,
        ]
        for k in instrument_kpis(session, span, currency)
    ]
    return _csv(ASSESSMENT_COLUMNS, rows)
