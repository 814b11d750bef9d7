"""`labshare instruments import` and `export`: every bad row reported, all or none, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from instruments.cli import app
from instruments.csv_fields import format_hours, parse_hours, parse_rates
from instruments.models import Instrument, Lab, OpeningHours, PayerClass, Rate, RateUnit
from tests.conftest import _empty_all_tables
from tests.factories import create_instrument, create_lab, get_or_create_category

runner = CliRunner()
HEADER = (
    "code,name,category,lab,asset_value,slot_step_minutes,min_minutes,max_minutes,"
    "approval_required,weekly_quota_hours,opening_hours,rates\n"
)
GOOD = (
    "MS-1,Orbitrap LC-MS,ms-lc,CORE,4500000.00,30,60,480,yes,10,"
    '"mon-fri 08:30-12:00 14:00-17:30; sat 09:00-12:00","internal 200/hour; academic 400.50/hour"\n'
)


@pytest.fixture
def core_lab(session: Session) -> Lab:
    get_or_create_category(session)  # leaf ms-lc under group ms
    return create_lab(session, code="CORE", name="Core Facility")


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_text(body, encoding="utf-8")
    return path


def _count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Instrument)).one()


def test_import_loads_good_rows_with_hours_and_rates(
    tmp_path: Path, session: Session, core_lab: Lab
) -> None:
    result = runner.invoke(app, ["import", str(_write(tmp_path, HEADER + GOOD))])
    assert result.exit_code == 0, result.output
    assert "loaded 1 instruments" in result.stdout
    instrument = session.exec(select(Instrument).where(Instrument.code == "MS-1")).one()
    assert instrument.asset_value == 450_000_000
    assert (instrument.min_minutes, instrument.approval_required) == (60, True)
    assert instrument.weekly_quota_hours == 10 and instrument.lab_id == core_lab.id
    hours = session.exec(select(OpeningHours).where(OpeningHours.instrument_id == instrument.id))
    assert len(hours.all()) == 11
    rates = session.exec(select(Rate.payer_class, Rate.amount).order_by(Rate.amount)).all()
    assert rates == [(PayerClass.internal, 20000), (PayerClass.academic, 40050)]


def test_every_bad_row_is_reported_and_none_load(
    tmp_path: Path, session: Session, core_lab: Lab
) -> None:
    create_instrument(session, code="TAKEN", lab=core_lab)
    rows = [
        GOOD,  # line 2
        "bad code!,X,ms-lc,CORE,,,,,,,,\n",  # 3
        "MS-2,X,ms,CORE,,,,,,,,\n",  # 4: a group, not a leaf
        "MS-3,X,ms-lc,NOLAB,,,,,,,,\n",  # 5
        "MS-4,X,ms-lc,CORE,lots,,,,,,,\n",  # 6
        "MS-5,X,ms-lc,CORE,,30,60,45,,,,\n",  # 7: max below min
        "MS-6,X,ms-lc,CORE,,,,,perhaps,,,\n",  # 8
        'MS-7,X,ms-lc,CORE,,,,,,,"mon 18:00-09:00",\n',  # 9
        'MS-8,X,ms-lc,CORE,,,,,,,,"vip 10/hour"\n',  # 10
        "MS-1,again,ms-lc,CORE,,,,,,,,\n",  # 11: repeats line 2
        "TAKEN,X,ms-lc,CORE,,,,,,,,\n",  # 12
        "MS-9,too,few\n",  # 13
    ]
    result = runner.invoke(app, ["import", str(_write(tmp_path, HEADER + "".join(rows)))])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if "catalog.csv:" in line]
    assert [int(line.split(":")[1]) for line in lines] == list(range(3, 14))
    reasons = "\n".join(lines)
    for expected in (
        "is not 1-64 letters",
        "is a group, not a leaf",
        "no lab with the code 'NOLAB'",
        "'lots' is not an amount",
        "max_minutes must be at least min_minutes",
        "'perhaps' is not true or false",
        "closes before it opens",
        "rates:",
        "repeats line 2",
        "already in the catalog",
        "expected 12 fields, found 3",
    ):
        assert expected in reasons
    assert "11 of 12 rows are bad; loaded none" in result.stderr
    assert _count(session) == 1  # only TAKEN, from before


def test_skip_bad_loads_the_good_rows_and_says_how_many_were_skipped(
    tmp_path: Path, session: Session, core_lab: Lab
) -> None:
    body = HEADER + GOOD + "MS-2,X,ms-lc,NOLAB,,,,,,,,\n" + "MS-3,Y,ms-lc,CORE,,,,,,,,\n"
    result = runner.invoke(app, ["import", str(_write(tmp_path, body)), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "catalog.csv:3: lab: no lab with the code 'NOLAB'" in result.stderr
    assert "loaded 2 instruments" in result.stdout and "skipped 1 bad" in result.stdout
    assert set(session.exec(select(Instrument.code))) == {"MS-1", "MS-3"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "the file is empty"),
        ("code,name,colour\n", "unknown column 'colour'"),
        ("code,name,lab\n", "missing required column category"),
    ],
)
def test_unreadable_files_fail_with_one_line(
    tmp_path: Path, engine: Engine, body: str, reason: str
) -> None:
    result = runner.invoke(app, ["import", str(_write(tmp_path, body))])
    assert result.exit_code == 1
    assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_and_non_utf8_files(tmp_path: Path, engine: Engine) -> None:
    missing = runner.invoke(app, ["import", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"code,name,category,lab\nX,Spektrometer \xe9,ms-lc,CORE\n")
    result = runner.invoke(app, ["import", str(latin)])
    assert result.exit_code == 1 and "not UTF-8" in result.stderr


def test_export_then_import_round_trips(
    tmp_path: Path, engine: Engine, session: Session, core_lab: Lab
) -> None:
    body = HEADER + GOOD + 'MS-2,"Quoted, ""name""",ms-lc,CORE,0.01,15,15,720,no,,,\n'
    assert runner.invoke(app, ["import", str(_write(tmp_path, body))]).exit_code == 0
    first = tmp_path / "first.csv"
    result = runner.invoke(app, ["export", str(first)])
    assert result.exit_code == 0 and "wrote 2 instruments" in result.stdout
    session.rollback()  # end the test session's read transaction before emptying
    session.expunge_all()  # and forget rows whose ids the database will reuse
    _empty_all_tables(engine)
    get_or_create_category(session)
    create_lab(session, code="CORE")
    assert runner.invoke(app, ["import", str(first)]).exit_code == 0
    again = runner.invoke(app, ["export"])
    assert again.exit_code == 0
    assert again.stdout == first.read_text(encoding="utf-8")


def test_field_formats_round_trip() -> None:
    text = "mon-wed,fri 08:00-12:00 13:00-17:00; thu 09:00-10:00; sun 07:00-23:00"
    hours = parse_hours(text)
    assert format_hours(hours) == text
    assert parse_rates("company 12.5/sample", 2) == [(PayerClass.company, RateUnit.sample, 1250)]
    with pytest.raises(ValueError, match="overlap"):
        parse_hours("mon 08:00-12:00 11:00-13:00")
    with pytest.raises(ValueError, match="more than 2 decimals"):
        parse_rates("academic 1.005/hour", 2)
