"""The catalog's commands: `labshare instruments ...`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from core.cli_support import err_console, fail, reasons
from core.db import session_scope
from core.progress import rich_reporter
from instruments.csv_io import csv_export, csv_import

app = typer.Typer(help="The instrument catalog.", no_args_is_help=True)

# Show at most this many bad rows on the terminal; the count covers them all.
MAX_SHOWN = 200


@app.command("import")
@reasons
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV file; the first line names the columns")],
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Load the good rows even if some are bad")
    ] = False,
) -> None:
    """Load instruments from a CSV file: all of them, or none if any row is bad."""
    if not file.is_file():
        raise fail(f"{file}: no such file")
    with (
        file.open(encoding="utf-8", newline="") as stream,
        session_scope() as session,
        rich_reporter(enabled=file.stat().st_size > 256_000) as reporter,
    ):
        result = csv_import(session, stream, skip_bad=skip_bad, reporter=reporter)
    for error in result.errors[:MAX_SHOWN]:
        err_console.print(f"{file}:{error.line}: {error.reason}", highlight=False, soft_wrap=True)
    if len(result.errors) > MAX_SHOWN:
        err_console.print(f"... and {len(result.errors) - MAX_SHOWN} more bad rows")
    if result.errors and not skip_bad:
        raise fail(
            f"{len(result.errors)} of {result.rows} rows are bad; loaded none "
            "(fix them, or use --skip-bad to load the good rows)"
        )
    skipped = f", skipped {result.skipped} bad" if result.skipped else ""
    typer.echo(f"loaded {result.loaded} instruments from {file}{skipped}")


@app.command("export")
@reasons
def export_csv(
    file: Annotated[
        Path | None, typer.Argument(help="Where to write; standard output if none")
    ] = None,
) -> None:
    """Write the catalog as CSV, in the columns `instruments import` reads."""
    with session_scope(write=False) as session:
        if file is None:
            count = csv_export(session, sys.stdout)
        else:
            try:
                stream = file.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise fail(f"{file}: {exc.strerror}")
            with stream, rich_reporter() as reporter:
                count = csv_export(session, stream, reporter=reporter)
    if file is not None:
        typer.echo(f"wrote {count} instruments to {file}")
