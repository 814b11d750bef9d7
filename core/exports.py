"""Spreadsheet files we write (CSV, XLSX) never carry a formula someone typed.

A name such as `=HYPERLINK("http://evil", "click")` written raw into a CSV is a live
formula when a spreadsheet opens it. Every text cell that starts with `=`, `+`, `-`, `@`,
a tab or a carriage return is written with a leading apostrophe (OWASP's advice), unless
it is a plain number such as `-12.50`; XLSX cells are written as strings, never formulas.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

from openpyxl.worksheet.worksheet import Worksheet

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def safe_cell(value: Any) -> Any:
    """The value, neutralised if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not _NUMBER.match(value):
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """A cell read back from one of our files: the apostrophe we added comes off again."""
    if value.startswith("'") and value[1:].startswith(TRIGGERS):
        return value[1:]
    return value


def safe_row(row: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in row]


class SafeWriter:
    """csv.writer's interface, every cell passed through safe_cell."""

    def __init__(self, stream: Any, **kwargs: Any) -> None:
        self._writer = csv.writer(stream, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def sheet_append(sheet: Worksheet, row: Iterable[Any]) -> None:
    """Append a row whose text cells are strings (data type 's'), never formulas."""
    sheet.append(list(row))
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"
