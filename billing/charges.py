"""Charges from bookings and usage, set-based: a few INSERT ... SELECT statements a month.

Each source (a booking, or a walk-up usage session) is charged at most once: the
statements skip sources already charged, and `uq_charge_kind_source` guards it in
the database. Prices come from the rate card in force when the use started: an
instrument's own card for the payer's class, else the lab's default for the
instrument's category, else the instrument's published rate; a class without a
price falls back (internal -> academic, small company -> company).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlmodel import Session

from billing.charge_sql import (
    ACCOUNTS,
    CHARGE_COLUMNS,
    UNPRICED,
    Sql,
    booking_charges,
    fee_charges,
    service_charges,
    walk_up_charges,
)
from core.db import UTCDateTime
from core.periods import period_bounds
from core.timeutil import utcnow


@dataclass(frozen=True)
class ChargeCounts:
    booking: int = 0
    overtime: int = 0
    no_show: int = 0
    late_cancel: int = 0
    walk_up: int = 0
    service: int = 0
    unpriced: int = 0  # sources left uncharged: no rate, or no payer institution

    @property
    def total(self) -> int:
        return (
            self.booking + self.overtime + self.no_show + self.late_cancel + self.walk_up
            + self.service
        )  # fmt: skip


def _staging_create(session: Session, sql: Sql) -> None:
    """A temporary table for this run's new charges, without the checks the real one pays for
    per row; the lines go to `charge` once, already on their invoices."""
    stamp = "TIMESTAMPTZ" if sql.pg else "TIMESTAMP"
    schema = "pg_temp" if sql.pg else "temp"
    session.execute(text(f"DROP TABLE IF EXISTS {schema}.charge_new"))
    session.execute(
        text(
            f"""CREATE TEMPORARY TABLE charge_new (
            kind VARCHAR(32) NOT NULL, source_id INTEGER NOT NULL, period VARCHAR(7) NOT NULL,
            payer_institution_id INTEGER NOT NULL, provider_institution_id INTEGER NOT NULL,
            lab_id INTEGER NOT NULL, instrument_id INTEGER NOT NULL, user_id INTEGER,
            booking_id INTEGER, usage_session_id INTEGER, payer_class VARCHAR(32) NOT NULL,
            unit VARCHAR(32) NOT NULL, quantity BIGINT NOT NULL, unit_amount BIGINT NOT NULL,
            surcharge_amount BIGINT NOT NULL, amount BIGINT NOT NULL, currency VARCHAR(3) NOT NULL,
            rate_card_id INTEGER, voucher_eligible BOOLEAN NOT NULL,
            service_start_at {stamp} NOT NULL, service_end_at {stamp} NOT NULL,
            created_at {stamp} NOT NULL, account_id INTEGER)"""
        )
    )


def _execute(session: Session, statement: str, params: dict[str, object]) -> int:
    query = text(statement).bindparams(
        bindparam("start", type_=UTCDateTime),
        bindparam("end", type_=UTCDateTime),
        bindparam("now", type_=UTCDateTime),
    )
    return _rowcount(session, session.execute(query, params))


def _rowcount(session: Session, result: object) -> int:
    if session.get_bind().dialect.name == "sqlite":
        # sqlite3 reports no rowcount for a statement that begins with WITH.
        return int(session.execute(text("SELECT changes()")).scalar_one())
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _unpriced(session: Session, params: dict[str, object]) -> int:
    query = text(UNPRICED).bindparams(
        bindparam("start", type_=UTCDateTime), bindparam("end", type_=UTCDateTime)
    )
    return int(session.execute(query, params).scalar_one())


def charges_create(
    session: Session, *, period: str, now: datetime | None = None, progress=None
) -> ChargeCounts:
    """Charge every source of the month not charged yet; returns how many of each kind."""
    start, end = period_bounds(period)
    params: dict[str, object] = {
        "start": start,
        "end": end,
        "period": period,
        "now": now or utcnow(),
    }
    sql = Sql(session.get_bind().dialect.name)
    _staging_create(session, sql)
    steps = (
        ("bookings and overtime", booking_charges(sql)),
        ("no-show fees", fee_charges(sql, "no_show")),
        ("late cancellation fees", fee_charges(sql, "late_cancel")),
        ("walk-ups", walk_up_charges(sql)),
        ("service requests", service_charges(sql)),
    )
    for label, statement in steps:
        added = _execute(session, statement, params)
        if progress:
            progress(f"charges: {added:,} {label}")
    session.execute(text(ACCOUNTS))
    counts = {
        str(kind): int(n)
        for kind, n in session.execute(
            text("SELECT kind, COUNT(*) FROM charge_new GROUP BY kind")
        ).all()
    }
    return ChargeCounts(**counts)


def charges_to_invoices(session: Session, *, period: str) -> int:
    """Move the run's new charges onto their draft invoices, numbered after existing lines."""
    # Number the lines on narrow rows (the sort stays in memory), then join the rest back.
    # A plain INSERT: the staged rows exclude what is charged, runs of a month queue on its
    # lock, and should anything slip through, uq_charge_kind_source fails the whole run.
    query = text(
        f"""
        WITH numbered AS (
            SELECT n.kind, n.source_id, v.id AS invoice_id,
                   COALESCE(m.last_line, 0) + ROW_NUMBER() OVER (
                       PARTITION BY v.id ORDER BY n.service_start_at, n.kind, n.source_id
                   ) AS line_no
            FROM charge_new n
            JOIN invoice v ON v.payer_institution_id = n.payer_institution_id
             AND v.period = :period AND v.currency = n.currency
             AND COALESCE(v.account_id, 0) = COALESCE(n.account_id, 0)
            LEFT JOIN (SELECT invoice_id, MAX(line_no) AS last_line FROM charge
                       WHERE period = :period GROUP BY invoice_id) m ON m.invoice_id = v.id
            WHERE v.status = 'draft'
        )
        INSERT INTO charge ({CHARGE_COLUMNS}, account_id, invoice_id, line_no)
        SELECT {", ".join("n." + c.strip() for c in CHARGE_COLUMNS.split(","))},
               n.account_id, x.invoice_id, x.line_no
        FROM numbered x JOIN charge_new n ON n.kind = x.kind AND n.source_id = x.source_id
        """
    )
    moved = _rowcount(session, session.execute(query, {"period": period}))
    session.execute(text("DROP TABLE charge_new"))
    return moved


def charges_unpriced(session: Session, *, period: str) -> int:
    """Completed bookings and walk-ups of the month left uncharged (no rate, or no payer)."""
    start, end = period_bounds(period)
    return _unpriced(session, {"start": start, "end": end})
