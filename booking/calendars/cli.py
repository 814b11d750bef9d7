"""`labshare calendars ...`: feeds and imported calendars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from core.cli_support import fail, reasons, run_passes
from core.db import session_scope

calendars_app = typer.Typer(help="Calendar feeds and imported lab calendars.", no_args_is_help=True)

InstrumentCode = Annotated[str, typer.Option("--instrument", help="Instrument code")]


def mount(app: typer.Typer) -> None:
    """Add these commands to the `labshare` command."""
    app.add_typer(calendars_app, name="calendars")


@calendars_app.command("sync")
@reasons
def sync(
    loop: Annotated[bool, typer.Option("--loop", help="Keep syncing until interrupted")] = False,
    interval: Annotated[
        float, typer.Option(min=1, help="Seconds between passes with --loop")
    ] = 60.0,
    force: Annotated[bool, typer.Option(help="Fetch every URL calendar, due or not")] = False,
) -> None:
    """Fetch URL calendars that are due and replace their busy time; errors are recorded."""
    from booking.calendars.fetch import calendar_sources_sync_due

    def one_pass() -> None:
        outcomes = calendar_sources_sync_due(force=force)
        for o in outcomes:
            if o.ok:
                typer.echo(
                    f"calendar {o.source_id}: {o.events} busy event(s), +{o.added} -{o.removed}"
                    + (f", displaced {o.displaced} booking(s)" if o.displaced else "")
                )
            else:
                typer.echo(f"calendar {o.source_id}: error: {o.error}", err=True)
        if not loop:
            # A failed fetch is recorded on its source, not a failure of the command.
            failed = sum(not o.ok for o in outcomes)
            typer.echo(f"synced {len(outcomes) - failed} of {len(outcomes)} due calendar(s)")

    run_passes(one_pass, loop=loop, interval=interval, name="calendar sync")


@calendars_app.command("import")
@reasons
def import_file(
    path: Annotated[Path, typer.Argument(help=".ics file ('-' reads standard input)")],
    instrument: InstrumentCode,
    source: Annotated[
        int | None, typer.Option(help="Replace this uploaded calendar's busy time")
    ] = None,
) -> None:
    """Import an .ics file as the instrument's busy time."""
    from booking.calendars.imports import calendar_expand_for, calendar_import_events
    from instruments.service import instrument_by_code

    if str(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise fail(f"{path}: {exc.strerror or exc}")
    # Parse and expand first, outside the write transaction (SQLite's writers wait for it).
    with session_scope(write=False) as session:
        found = instrument_by_code(session, instrument)
        upload = calendar_expand_for(session, instrument=found, data=data)
    with session_scope() as session:
        result = calendar_import_events(
            session,
            instrument=instrument_by_code(session, instrument),
            upload=upload,
            source_id=source,
        )
        typer.echo(
            f"calendar {result.source.id}: {result.source.events_imported} busy event(s), "
            f"+{result.added} -{result.removed}, displaced {result.displaced} booking(s)"
        )


@calendars_app.command("add-url")
@reasons
def add_url(
    url: Annotated[str, typer.Argument(help="http, https or webcal address of an .ics")],
    instrument: InstrumentCode,
    refresh_minutes: Annotated[int, typer.Option(min=5, max=7 * 24 * 60)] = 60,
) -> None:
    """Subscribe an instrument to a calendar URL (`labshare calendars sync` fetches it)."""
    from booking.calendars.imports import normalise_url
    from booking.calendars.models import CalendarSource
    from instruments.service import instrument_by_code

    with session_scope() as session:
        inst = instrument_by_code(session, instrument)
        assert inst.id is not None
        source = CalendarSource(
            instrument_id=inst.id, url=normalise_url(url), refresh_minutes=refresh_minutes
        )
        session.add(source)
        session.flush()
        typer.echo(f"calendar {source.id}: {source.url} every {refresh_minutes} min")


@calendars_app.command("list")
@reasons
def list_sources(
    instrument: Annotated[str | None, typer.Option(help="Only this instrument's")] = None,
) -> None:
    """Imported calendars with their last fetch, error and event count."""
    from sqlmodel import col, select

    from booking.calendars.models import CalendarSource
    from instruments.models import Instrument

    with session_scope(write=False) as session:
        query = (
            select(CalendarSource, Instrument.code)
            .join(Instrument, col(Instrument.id) == CalendarSource.instrument_id)
            .order_by(col(CalendarSource.id))
        )
        if instrument:
            query = query.where(Instrument.code == instrument)
        for source, code in session.exec(query).all():
            fetched = source.last_fetched_at.isoformat() if source.last_fetched_at else "never"
            typer.echo(
                f"{source.id}\t{code}\t{source.url or '(upload)'}\t{source.events_imported} "
                f"event(s)\tfetched {fetched}"
                + (f"\terror: {source.last_error}" if source.last_error else "")
            )


@calendars_app.command("feed")
@reasons
def feed(instrument: InstrumentCode) -> None:
    """Print the instrument's iCalendar feed (what /ical/instruments/{id}.ics serves)."""
    from booking.calendars.feeds import instrument_feed
    from instruments.service import instrument_by_code

    with session_scope(write=False) as session:
        inst = instrument_by_code(session, instrument)
        assert inst.id is not None
        sys.stdout.buffer.write(instrument_feed(session, instrument_id=inst.id).body)
