"""`labshare notifications ...`: the outbox and its mailer."""

from __future__ import annotations

from typing import Annotated

import typer

from core.cli_support import fail, reasons
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
) -> None:
    """Send unsent notifications by SMTP (LABSHARE_SMTP_URL); without it, say so and stop."""
    from booking.notifications.mailer import MailerUnavailable
    from booking.notifications.service import (
        notifications_pending_count,
        notifications_send_pending,
    )

    smtp_url = get_settings().smtp_url
    if not smtp_url:
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
