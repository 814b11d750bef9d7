"""Booking commands: `labshare bookings ...`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from core.cli_support import fail, reasons
from core.db import session_scope

app = typer.Typer(help="Bookings.", no_args_is_help=True)


@app.command("expire")
@reasons
def expire(
    every: Annotated[
        int, typer.Option(min=0, help="Repeat every N seconds (0: run once and exit)")
    ] = 0,
) -> None:
    """Expire pending bookings nobody decided on in time; their slots go to the waitlist."""
    from booking.service import bookings_expire

    while True:
        with session_scope() as session:
            expired = bookings_expire(session)
        typer.echo(f"expired {len(expired)} pending booking(s)")
        if not every:
            return
        try:
            time.sleep(every)
        except KeyboardInterrupt:
            raise fail("interrupted", code=130)
