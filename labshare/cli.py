"""The `labshare` command."""

from __future__ import annotations

from typing import Annotated

import typer

from core.cli_support import fail, reasons
from core.db import get_engine, session_scope
from core.models import Role
from core.service import user_create
from core.settings import get_settings

app = typer.Typer(
    help="labshare: share a city's scientific instruments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")


def _mount_domains() -> None:
    from instruments.cli import app as instruments_app

    app.add_typer(instruments_app, name="instruments")

    from booking.cli import app as bookings_app

    app.add_typer(bookings_app, name="bookings")

    from booking.calendars.cli import mount as mount_calendars
    from booking.notifications.cli import mount as mount_notifications

    mount_calendars(app)
    mount_notifications(app)

    from telemetry.cli import mount as mount_telemetry

    mount_telemetry(app)

    from admin.cli import mount as mount_admin

    mount_admin(app)

    from billing.cli import mount as mount_billing

    mount_billing(app)
    # Reminders join the mailer's passes: booking's, telemetry's (check in now) and
    # billing's (a voucher about to expire).
    import billing.reminders  # noqa: F401
    import booking.reminders  # noqa: F401
    import telemetry.kiosk  # noqa: F401  (the nudge to check in)


@db_app.command("upgrade")
@reasons
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the migrations (Alembic) to LABSHARE_DATABASE_URL."""
    import migrations

    migrations.upgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@users_app.command("create")
@reasons
def users_create(
    email: Annotated[str, typer.Option(help="Sign-in email")],
    password: Annotated[str, typer.Option(help="At least 8 characters")],
    role: Annotated[Role, typer.Option(help="The account's role")] = Role.researcher,
    institution: Annotated[str | None, typer.Option(help="Institution code")] = None,
    lab: Annotated[str | None, typer.Option(help="Lab code; a lab_manager manages it")] = None,
    name: Annotated[str, typer.Option(help="Display name")] = "",
) -> None:
    """Create an account."""
    from sqlmodel import select

    from instruments.models import Institution, Lab

    with session_scope() as session:
        lab_row = None
        if lab:
            lab_row = session.exec(select(Lab).where(Lab.code == lab)).first()
            if lab_row is None:
                raise fail(f"no lab with the code {lab!r}")
        if role == Role.lab_manager and lab_row is None:
            raise fail("a lab_manager needs --lab")
        institution_id = lab_row.institution_id if lab_row else None
        if institution:
            inst = session.exec(select(Institution).where(Institution.code == institution)).first()
            if inst is None:
                raise fail(f"no institution with the code {institution!r}")
            if lab_row is not None and lab_row.institution_id != inst.id:
                raise fail(f"lab {lab} does not belong to institution {institution}")
            institution_id = inst.id
        user = user_create(
            session,
            email=email,
            password=password,
            role=role,
            name=name,
            institution_id=institution_id,
            lab_id=lab_row.id if lab_row else None,
        )
        from booking.qualifications import qualifications_claim

        qualifications_claim(session, user=user)
        typer.echo(f"created user {user.id} {user.email} ({user.role})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Serve the API and the web pages."""
    import uvicorn

    uvicorn.run(
        "labshare.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Several processes on one socket take the connections in turn (labshare.balanced).
        loop="labshare.balanced:new_event_loop" if workers > 1 else "auto",
        log_level="info",
        # One line per request costs about a tenth of a small request's time; opt in.
        access_log=get_settings().access_log,
        timeout_keep_alive=get_settings().keep_alive_seconds,
    )


@app.command()
@reasons
def seed(
    instruments: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="How many instruments")
    ] = 12_600,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same network")] = 2018,
    history: Annotated[
        bool,
        typer.Option(
            "--history/--no-history",
            help="Also bookings and usage around today, and last month's draft invoices",
        ),
    ] = True,
) -> None:
    """Load the demo network into an empty, migrated database."""
    from labshare.demo import require_migrated, seed_database

    engine = get_engine()
    require_migrated(engine)
    seed_database(engine, instruments=instruments, seed=seed, history=history)


@app.command()
@reasons
def demo(
    instruments: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Instruments to seed into an empty database")
    ] = 12_600,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Web server port")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Random seed of the network and its history")] = 2018,
) -> None:
    """The whole network on one machine: migrate, seed if empty, serve; Ctrl-C stops."""
    from labshare.demo import run_demo

    run_demo(instruments=instruments, port=port, host=host, seed=seed)


def main() -> None:
    """The console script: a bad option or argument ends in one line, `error: ...`, exit 2."""
    import sys

    try:  # recent Typer vendors click; older Typer uses click itself
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover
        import click.exceptions as click_errors  # type: ignore[no-redef]

    _mount_domains()
    try:
        code = app(standalone_mode=False)
    except click_errors.UsageError as exc:
        if exc.format_message():  # empty when no_args_is_help has printed the help
            where = exc.ctx.command_path if exc.ctx else "labshare"
            fail(f"{where}: {exc.format_message()}")
        raise SystemExit(exc.exit_code)
    except click_errors.ClickException as exc:
        raise SystemExit(fail(exc.format_message(), exc.exit_code).exit_code)
    except typer.Abort:  # Ctrl-C
        raise SystemExit(fail("aborted", 130).exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
