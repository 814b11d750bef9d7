"""Bulk loading of the catalog: many rows per statement, for the seed and CSV import.

SQLAlchemy Core `insert` with a list of parameter sets batches rows into multi-row
INSERTs ("insertmanyvalues") on both databases; RETURNING in parameter order gives
back the new ids so child rows can refer to them without a query per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum
from typing import Any

from sqlalchemy import Table, insert, text
from sqlmodel import Session

from core.db import is_postgres
from core.progress import NULL_REPORTER, Reporter
from core.timeutil import utcnow
from instruments.models import (
    Instrument,
    InstrumentStatus,
    OpeningHours,
    PayerClass,
    Rate,
    RateUnit,
)

CHUNK = 2000


@dataclass
class InstrumentRecord:
    """Everything needed to insert one instrument with its opening hours and rates."""

    code: str
    name: str
    category_id: int
    lab_id: int
    model: str = ""
    manufacturer: str = ""
    description: str = ""
    location: str = ""
    asset_value: int = 0
    commissioned_on: date | None = None
    status: InstrumentStatus = InstrumentStatus.active
    slot_step_minutes: int = 30
    min_minutes: int = 30
    max_minutes: int = 8 * 60
    lead_minutes: int = 60
    horizon_days: int = 90
    approval_required: bool = False
    qualification_required: bool = False
    weekly_quota_hours: int | None = None
    opening_hours: list[tuple[int, time, time]] = field(default_factory=list)
    rates: list[tuple[PayerClass, RateUnit, int, str]] = field(default_factory=list)

    def row(self, now: datetime) -> dict[str, Any]:
        values = {k: v for k, v in self.__dict__.items() if k not in ("opening_hours", "rates")}
        return {**values, "created_at": now, "updated_at": now}


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def insert_rows(session: Session, model: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `rows` into `model`'s table in batches; the new ids, in the order given."""
    if not rows:
        return []
    table = _table(model)
    if is_postgres(session):
        # Take the ids from the table's sequence first, then COPY rows that carry them.
        ids = list(
            session.connection()
            .execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"
                ),
                {"t": f'"{table.name}"', "n": len(rows)},
            )
            .scalars()
        )
        _copy(session, table, [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    result = session.connection().execute(statement, list(rows))
    return [row[0] for row in result]


def insert_plain(session: Session, model: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` into `model`'s table in batches, wanting nothing back."""
    if not rows:
        return
    if is_postgres(session):
        _copy(session, _table(model), rows)
    else:
        session.connection().execute(insert(_table(model)), list(rows))


def _copy(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL's COPY FROM STDIN: several times faster than multi-row INSERTs."""
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([_plain(row[c]) for c in columns])


def _plain(value: Any) -> Any:
    # COPY bypasses SQLAlchemy's types: enums go as their values, times as they are.
    return value.value if isinstance(value, Enum) else value


def instruments_insert(
    session: Session,
    records: Sequence[InstrumentRecord],
    *,
    reporter: Reporter = NULL_REPORTER,
    label: str = "instruments",
) -> list[int]:
    """Insert instruments with their opening hours and rates; the new ids, in order."""
    now = utcnow()
    ids: list[int] = []
    reporter.start(label, len(records))
    for offset in range(0, len(records), CHUNK):
        chunk = records[offset : offset + CHUNK]
        chunk_ids = insert_rows(session, Instrument, [r.row(now) for r in chunk])
        hours = [
            {"instrument_id": iid, "weekday": day, "opens": opens, "closes": closes}
            for iid, record in zip(chunk_ids, chunk, strict=True)
            for day, opens, closes in record.opening_hours
        ]
        rates = [
            {
                "instrument_id": iid,
                "payer_class": payer,
                "unit": unit,
                "amount": amount,
                "currency": currency,
            }
            for iid, record in zip(chunk_ids, chunk, strict=True)
            for payer, unit, amount, currency in record.rates
        ]
        insert_plain(session, OpeningHours, hours)
        insert_plain(session, Rate, rates)
        ids.extend(chunk_ids)
        reporter.advance(len(chunk))
    return ids
