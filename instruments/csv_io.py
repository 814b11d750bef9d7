"""Bring a catalog in from CSV and out again: export writes what import reads.

Columns (only the first four are required in a file; see COLUMNS for the order):
code, name, category (a leaf code), lab (a lab code), manufacturer, model, description,
location, asset_value (major units of the network currency), status, the booking rules
(slot_step_minutes, min_minutes, max_minutes, lead_minutes, horizon_days,
approval_required, qualification_required, weekly_quota_hours), opening_hours and rates
(formats in instruments.csv_fields).

Import checks every row first and reports each bad one with its line number. By default
one bad row loads nothing; with `skip_bad` the good rows load and the bad are counted.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, col, select

from core.errors import Invalid
from core.exports import SafeWriter, unneutralise
from core.progress import NULL_REPORTER, Reporter
from core.settings import CURRENCY_EXPONENTS, get_settings
from instruments import csv_fields as f
from instruments.bulk import InstrumentRecord, instruments_insert
from instruments.models import (
    CODE_PATTERN,
    Category,
    Instrument,
    InstrumentStatus,
    Lab,
    OpeningHours,
    Rate,
)
from instruments.schemas import BookingRules

COLUMNS = (
    "code", "name", "category", "lab", "manufacturer", "model", "description", "location",
    "asset_value", "status", "slot_step_minutes", "min_minutes", "max_minutes", "lead_minutes",
    "horizon_days", "approval_required", "qualification_required", "weekly_quota_hours",
    "opening_hours", "rates",
)  # fmt: skip
REQUIRED = ("code", "name", "category", "lab")
LIMITS = {"name": 200, "manufacturer": 200, "model": 200, "description": 4000, "location": 200}
RULE_DEFAULTS = {
    "slot_step_minutes": 30,
    "min_minutes": 30,
    "max_minutes": 480,
    "lead_minutes": 60,
    "horizon_days": 90,
}
_CODE = re.compile(CODE_PATTERN)


class CsvUnreadable(Invalid):
    """The file as a whole cannot be read: wrong encoding, no header, unknown columns."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass
class ImportResult:
    rows: int = 0
    loaded: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.errors)


def _read(stream: TextIO) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and each non-blank record with the line it starts on."""
    try:
        text = stream.read()
    except UnicodeDecodeError as exc:
        raise CsvUnreadable(f"the file is not UTF-8 text (byte {exc.start})")
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    records: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    start = 1
    try:
        for record in reader:
            if header is None:
                header = [h.strip().lower() for h in record]
            elif any(cell.strip() for cell in record):
                # Our own export neutralises formulas; reading it back restores the text.
                records.append((start, [unneutralise(cell) for cell in record]))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvUnreadable(f"line {reader.line_num}: not valid CSV ({exc})")
    if not header:
        raise CsvUnreadable("the file is empty; the first line must name the columns")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise CsvUnreadable(
            f"unknown column {', '.join(map(repr, unknown))}; known: {', '.join(COLUMNS)}"
        )
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CsvUnreadable(f"missing required column {', '.join(missing)}")
    doubled = sorted({h for h in header if header.count(h) > 1})
    if doubled:
        raise CsvUnreadable(f"column {', '.join(doubled)} appears twice")
    return header, records


def _record(
    values: dict[str, str],
    labs: dict[str, int],
    categories: dict[str, tuple[int, int | None]],
    exponent: int,
    currency: str,
) -> InstrumentRecord:
    """One validated row; ValueError with the reason otherwise."""
    code = values["code"].strip()
    if not _CODE.match(code):
        raise ValueError(f"code: {code!r} is not 1-64 letters, digits or ._-")
    text = {k: values.get(k, "").strip() for k in LIMITS}
    if not text["name"]:
        raise ValueError("name: required")
    for key, limit in LIMITS.items():
        if len(text[key]) > limit:
            raise ValueError(f"{key}: longer than {limit} characters")
    category = categories.get(values["category"].strip())
    if category is None:
        raise ValueError(f"category: no category with the code {values['category'].strip()!r}")
    if category[1] is None:
        raise ValueError(f"category: {values['category'].strip()!r} is a group, not a leaf")
    lab_id = labs.get(values["lab"].strip())
    if lab_id is None:
        raise ValueError(f"lab: no lab with the code {values['lab'].strip()!r}")
    status_text = values.get("status", "").strip().lower() or "active"
    if status_text not in InstrumentStatus.__members__:
        raise ValueError(f"status: {status_text!r} is not one of {', '.join(InstrumentStatus)}")
    rules: dict[str, object] = {
        key: f.parse_int(values[key], key) if values.get(key, "").strip() else default
        for key, default in RULE_DEFAULTS.items()
    }
    rules["weekly_quota_hours"] = f.parse_int(
        values.get("weekly_quota_hours", ""), "weekly_quota_hours", optional=True
    )
    for flag in ("approval_required", "qualification_required"):
        rules[flag] = f.parse_bool(values.get(flag, ""), flag)
    try:
        checked = BookingRules.model_validate(rules)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(
            f"{where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')}"
        )
    return InstrumentRecord(
        code=code,
        category_id=category[0],
        lab_id=lab_id,
        asset_value=f.parse_amount(values.get("asset_value", ""), "asset_value", exponent),
        status=InstrumentStatus(status_text),
        opening_hours=f.parse_hours(values.get("opening_hours", "")),
        rates=[(p, u, a, currency) for p, u, a in f.parse_rates(values.get("rates", ""), exponent)],
        name=text["name"],
        manufacturer=text["manufacturer"],
        model=text["model"],
        description=text["description"],
        location=text["location"],
        **checked.model_dump(),
    )


def _existing_codes(session: Session, codes: list[str]) -> set[str]:
    found: set[str] = set()
    for offset in range(0, len(codes), 500):
        chunk = codes[offset : offset + 500]
        found.update(session.exec(select(Instrument.code).where(col(Instrument.code).in_(chunk))))
    return found


def csv_import(
    session: Session, stream: TextIO, *, skip_bad: bool = False, reporter: Reporter = NULL_REPORTER
) -> ImportResult:
    """Check every row, then load all (no bad rows), none (default), or the good ones."""
    header, records = _read(stream)
    settings = get_settings()
    currency = settings.currency
    exponent = CURRENCY_EXPONENTS[currency]
    labs = {code: lab_id for code, lab_id in session.exec(select(Lab.code, Lab.id)) if lab_id}
    categories = {
        c.code: (c.id, c.parent_id) for c in session.exec(select(Category)) if c.id is not None
    }
    result = ImportResult(rows=len(records))
    good: list[tuple[int, InstrumentRecord]] = []
    first_line: dict[str, int] = {}
    reporter.start("checking rows", len(records))
    for line, cells in records:
        reporter.advance()
        if len(cells) != len(header):
            result.errors.append(
                RowError(line, f"expected {len(header)} fields, found {len(cells)}")
            )
            continue
        try:
            record = _record(
                dict(zip(header, cells, strict=True)), labs, categories, exponent, currency
            )
        except ValueError as exc:
            result.errors.append(RowError(line, str(exc)))
            continue
        if record.code in first_line:
            result.errors.append(
                RowError(line, f"code: {record.code!r} repeats line {first_line[record.code]}")
            )
            continue
        first_line[record.code] = line
        good.append((line, record))
    taken = _existing_codes(session, [r.code for _, r in good])
    for line, record in good:
        if record.code in taken:
            result.errors.append(RowError(line, f"code: {record.code!r} is already in the catalog"))
    result.errors.sort(key=lambda e: e.line)
    if result.errors and not skip_bad:
        return result
    loadable = [r for _, r in good if r.code not in taken]
    instruments_insert(session, loadable, reporter=reporter, label="loading instruments")
    session.flush()
    result.loaded = len(loadable)
    return result


def csv_export(session: Session, stream: TextIO, *, reporter: Reporter = NULL_REPORTER) -> int:
    """Write the whole catalog in import's format, ordered by id; the number of rows."""
    exponent = CURRENCY_EXPONENTS[get_settings().currency]
    labs = {i: code for i, code in session.exec(select(Lab.id, Lab.code)) if i is not None}
    categories = {
        i: code for i, code in session.exec(select(Category.id, Category.code)) if i is not None
    }
    # Read first, write after: a database error leaves no half-written header behind.
    writer = SafeWriter(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    reporter.start(
        "exporting instruments", session.exec(select(func.count(col(Instrument.id)))).one()
    )
    written, after = 0, 0
    while True:
        batch = session.exec(
            select(Instrument)
            .where(col(Instrument.id) > after)
            .order_by(col(Instrument.id))
            .limit(2000)
        ).all()
        if not batch:
            return written
        after = batch[-1].id or 0
        for row in _rows(session, batch, labs, categories, exponent):
            writer.writerow(row)
        written += len(batch)
        reporter.advance(len(batch))


def _rows(
    session: Session,
    batch: Iterable[Instrument],
    labs: dict[int, str],
    categories: dict[int, str],
    exponent: int,
) -> Iterable[list[object]]:
    instruments = list(batch)
    ids = [i.id for i in instruments]
    hours: dict[int, list] = {}
    hours_query = select(
        col(OpeningHours.instrument_id),
        col(OpeningHours.weekday),
        col(OpeningHours.opens),
        col(OpeningHours.closes),
    ).where(col(OpeningHours.instrument_id).in_(ids))
    for iid, weekday, opens, closes in session.exec(hours_query):
        hours.setdefault(iid, []).append((weekday, opens, closes))
    rates: dict[int, list] = {}
    rates_query = (
        select(Rate.instrument_id, Rate.payer_class, Rate.unit, Rate.amount)
        .where(col(Rate.instrument_id).in_(ids))
        .order_by(col(Rate.id))
    )
    for iid, payer, unit, amount in session.exec(rates_query):
        rates.setdefault(iid, []).append((payer, unit, amount))
    for i in instruments:
        assert i.id is not None
        yield [
            i.code, i.name, categories[i.category_id], labs[i.lab_id], i.manufacturer, i.model,
            i.description, i.location, f.format_amount(i.asset_value, exponent), i.status.value,
            i.slot_step_minutes, i.min_minutes, i.max_minutes, i.lead_minutes, i.horizon_days,
            str(i.approval_required).lower(), str(i.qualification_required).lower(),
            "" if i.weekly_quota_hours is None else i.weekly_quota_hours,
            f.format_hours(hours.get(i.id, [])), f.format_rates(rates.get(i.id, []), exponent),
        ]  # fmt: skip
