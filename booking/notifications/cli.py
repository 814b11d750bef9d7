"""`labshare notifications ...`: the outbox and its mailer."""

from __future__ import annotations

from typing import Annotated

import typer

from core.cli_support import fail, reasons, run_passes
from core.db import session_scope
from core.settings import get_settings

notifications_app = typer.Typer(help="The notification outbox.", no_args_is_help=True)


def mount(app: typer.Typer) -> None:
    """Add these commands to the `labshare` command."""
    app.add_typer(notifications_app, name="notifications")


@notifications_app.command("send")
@reasons
def send(
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many")] = None,
    loop: Annotated[
        bool, typer.Option("--loop", help="Keep adding due reminders and sending until stopped")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=1, help="Seconds between passes with --loop")
    ] = 30.0,
    reminders: Annotated[
        bool, typer.Option(help="Add the reminders now due to the outbox first")
    ] = True,
) -> None:
    """Add due reminders to the outbox, then send unsent notifications by SMTP
    (LABSHARE_SMTP_URL); without it, they stay in the outbox, where people read them."""
    passes = 0

    def one_pass() -> None:
        nonlocal passes
        _one_pass(limit=limit, reminders=reminders, say_outbox=passes == 0)
        passes += 1

    run_passes(one_pass, loop=loop, interval=interval, name="notifications")


def _one_pass(*, limit: int | None, reminders: bool, say_outbox: bool) -> None:
    from booking.notifications.mailer import MailerUnavailable
    from booking.notifications.outbox import PRODUCERS
    from booking.notifications.service import (
        notifications_pending_count,
        notifications_send_pending,
    )

    for producer in PRODUCERS if reminders else []:
        with session_scope() as session:
            added = producer(session)
        if added:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(added.items()))
            typer.echo(f"added {sum(added.values())} reminder(s): {kinds}")
    smtp_url = get_settings().smtp_url
    if not smtp_url:
        if not say_outbox:
            return
        with session_scope(write=False) as session:
            pending = notifications_pending_count(session)
        typer.echo(
            f"LABSHARE_SMTP_URL is not set: {pending} notification(s) stay in the outbox "
            "(people see them through the API)"
        )
        return
    try:
        report = notifications_send_pending(smtp_url=smtp_url, limit=limit)
    except MailerUnavailable as exc:
        raise fail(str(exc))
    typer.echo(
        f"sent {report.sent} notification(s)"
        + (f", {report.failed} refused" if report.failed else "")
    )
    for note_id, error in report.failures.items():
        typer.echo(f"notification {note_id}: {error}", err=True)
