"""`labshare demo`: the whole network on one machine.

The demo migrates the database, seeds it when empty, then starts a short list of named
components (see `components()`), each in a thread or a subprocess, and stops them in
reverse order on Ctrl-C (or SIGTERM). To add a part (an MQTT broker, the ingest worker,
a gateway simulator), append a Component there: `process("ingest", "ingest")` runs
`labshare ingest` with the demo's environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from core.cli_support import fail
from core.db import get_engine, session_scope
from core.progress import rich_reporter
from core.settings import Settings, get_settings
from instruments.seed import (
    DEFAULT_SEED,
    DEMO_LOGINS,
    DEMO_PASSWORD,
    SeedSummary,
    database_is_empty,
    seed_network,
)

console = Console(highlight=False)


@dataclass
class DemoContext:
    """What components need to know: where things listen and the environment to pass on."""

    settings: Settings
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class Running:
    """A started component: how to tell whether it still runs, and how to stop it."""

    name: str
    alive: Callable[[], bool]
    stop: Callable[[], None]


@dataclass(frozen=True)
class Component:
    name: str
    start: Callable[[DemoContext], Running]


def web(ctx: DemoContext) -> Running:
    """The API and pages (uvicorn) in a thread of this process."""
    import uvicorn

    config = uvicorn.Config(
        "labshare.app:create_app",
        factory=True,
        host=ctx.host,
        port=ctx.port,
        log_level="warning",
        timeout_keep_alive=ctx.settings.keep_alive_seconds,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="labshare-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise fail(f"the web server did not start on {ctx.url}")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return Running("web", thread.is_alive, stop)


# How long a part may take to finish what it holds (the ingest's last batch) once asked.
STOP_SECONDS = 10


def process(name: str, *args: str) -> Component:
    """A component that runs `labshare <args>` as a subprocess with the demo's environment."""

    def start(ctx: DemoContext) -> Running:
        # Its own process group: Ctrl-C in the terminal reaches the demo alone, which then
        # stops the parts one by one in order (the simulator, then the ingest, flushed and
        # acknowledged, then the broker), instead of all of them at the same instant.
        child = subprocess.Popen(
            [sys.executable, "-m", "labshare.cli", *args], env=ctx.env, process_group=0
        )

        def stop() -> None:
            # SIGTERM, not SIGINT: every part finishes what it holds on SIGTERM, and a part
            # still starting (a Ctrl-C in the first seconds) ends quietly, where a SIGINT
            # would print a KeyboardInterrupt from the middle of its imports, or be lost
            # in a finalizer and leave the part running.
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    console.print(f"{name} did not stop in {STOP_SECONDS} s; killed")
                    child.kill()
                    child.wait()

        return Running(name, lambda: child.poll() is None, stop)

    return Component(name, start)


# The demo's gateways: 20 labs' worth, 50 messages a second, for a year (until Ctrl-C).
# Quiet, so the logins stay on the screen: progress is `labshare simulate --verbose`.
SIMULATOR_ARGS = (
    "--gateways", "20", "--rate", "50", "--duration", str(365 * 24 * 3600), "--quiet",
)  # fmt: skip


def mqtt_broker(ctx: DemoContext) -> Running:
    """LABSHARE_MQTT_URL's broker if set, else an embedded one (amqtt) for the telemetry."""
    if ctx.settings.mqtt_url:
        return Running("mqtt", lambda: True, lambda: None)
    from telemetry.broker import start_embedded_broker

    broker = start_embedded_broker(ctx.host)
    ctx.env["LABSHARE_MQTT_URL"] = broker.url  # the ingest and the simulator connect here
    console.print(f"embedded MQTT broker (amqtt) at {broker.url}")
    return Running("mqtt", broker.alive, broker.stop)


def components(ctx: DemoContext) -> list[Component]:
    """What the demo runs, in start order; they stop in reverse."""
    # amqtt speaks MQTT 3.1.1 without shared subscriptions: one plain ingest worker there.
    ingest_args = [] if ctx.settings.mqtt_url else ["--mqtt311"]
    return [
        Component("web", web),
        # Labs' calendars subscribed by URL, fetched when due (booking.calendars.fetch).
        process("calendars", "calendars", "sync", "--loop"),
        # Reminders into the outbox (and mail, where LABSHARE_SMTP_URL is set), and the
        # outgoing webhooks' deliveries.
        process("notifications", "notifications", "send", "--loop"),
        process("webhooks", "webhooks", "send", "--loop"),
        # Telemetry: the broker, the ingest worker, and gateways simulated for a year.
        Component("mqtt", mqtt_broker),
        process("ingest", "ingest", "--client-id", "labshare-demo-ingest", "--quiet", *ingest_args),
        process("simulator", "simulate", *SIMULATOR_ARGS),
    ]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror}")


def require_migrated(engine: Engine) -> None:
    if not inspect(engine).has_table("instrument"):
        raise fail("the database has no labshare tables; run `labshare db upgrade` first")


def seed_database(
    engine: Engine, *, instruments: int, seed: int = DEFAULT_SEED, history: bool = True
) -> SeedSummary:
    """Seed with progress bars and report what was loaded and how long it took."""
    started = time.perf_counter()
    from telemetry.badges import badges_seed

    with rich_reporter() as reporter, session_scope(engine=engine) as session:
        summary = seed_network(session, instruments=instruments, seed=seed, reporter=reporter)
        badges_seed(session)  # what the city's card system would load
    seconds = time.perf_counter() - started
    console.print(
        f"seeded {summary.instruments} instruments in {summary.labs} labs of "
        f"{summary.institutions} institutions, {summary.users} users, in {seconds:.1f} s"
    )
    if history:
        seed_history_and_invoices(engine, seed=seed)
    return summary


def seed_history_and_invoices(engine: Engine, *, seed: int = DEFAULT_SEED) -> None:
    """Bookings and usage around today, then a draft invoice run for the last full month."""
    from billing.invoices import invoice_run
    from core.periods import last_month, months_back
    from labshare.demo_facility import seed_facility
    from labshare.demo_history import seed_history
    from labshare.demo_vouchers import (
        seed_subsidy_policy,
        seed_voucher_applications,
        seed_voucher_claims,
    )

    started = time.perf_counter()
    with rich_reporter() as reporter, session_scope(engine=engine) as session:
        history = seed_history(session, seed=seed, reporter=reporter)
    seconds = time.perf_counter() - started
    statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(history.by_status.items()))
    console.print(
        f"seeded history on {history.instruments:,} instruments: {history.bookings:,} bookings "
        f"({statuses}), {history.usage_sessions:,} usage sessions "
        f"({history.walk_ups:,} walk-ups), in {seconds:.1f} s"
    )
    period = last_month()
    with session_scope(engine=engine) as session:
        programme = _city_voucher_programme(session, year=int(period[:4]))
        applications = seed_voucher_applications(session, programme_code=programme)
        claims = seed_voucher_claims(
            session, programme_code=programme, period=months_back(period, 2)[0]
        )
        report = invoice_run(session, period=period)
        policy = seed_subsidy_policy(session)
        facility = seed_facility(session)
    console.print(
        f"invoice run {period}: {report.charges.total:,} charges on {report.invoices:,} "
        f"draft invoices, in {report.seconds:.1f} s (not finalized); vouchers of "
        f"{programme} applied"
    )
    if applications:
        states = ", ".join(f"{n} {state}" for state, n in sorted(applications.items()))
        console.print(f"voucher applications: {states}")
    if claims:
        states = ", ".join(f"{n} {state}" for state, n in sorted(claims.items()))
        console.print(f"voucher claims for {months_back(period, 2)[0]} (closed, paid): {states}")
    console.print(f"subsidy policy {policy!r}: try labshare settle --period {period}")
    console.print(
        f"facility: training session {facility.training_session} with a seat taken, "
        f"{facility.incidents} incidents; the researcher's booking now is on instrument "
        f"{facility.kiosk_instrument}: check in at /instruments/{facility.kiosk_instrument}/kiosk; "
        f"send samples at /services/{facility.service} (the engineer's request is quoted); "
        f"the researcher's project account is /accounts/{facility.account}"
    )


def _city_voucher_programme(session: Session, *, year: int) -> str:
    """The city's innovation-voucher programme for the year (half of a small company's
    bill at other institutions, up to 100,000 a year, 5 million in all), so the demo's
    small firm and the dashboard show vouchers at work."""
    from datetime import date

    from billing.vouchers import ProgrammeIn, programme_create

    code = f"CITY-IV-{year}"
    programme_create(
        session,
        data=ProgrammeIn(
            code=code,
            name=f"City innovation vouchers {year}",
            currency=get_settings().currency,
            budget=5_000_000_00,
            coverage_bp=5000,
            company_yearly_cap=100_000_00,
            starts_on=date(year, 1, 1),
            ends_on=date(year, 12, 31),
        ),
    )
    return code


def print_logins() -> None:
    table = Table(title=f"Demo logins (password: {DEMO_PASSWORD})", title_justify="left")
    table.add_column("email")
    table.add_column("role")
    table.add_column("who")
    for email, role, who in DEMO_LOGINS:
        table.add_row(email, role, who)
    console.print(table)


def run_demo(
    *, instruments: int, port: int, host: str = "127.0.0.1", seed: int = DEFAULT_SEED
) -> None:
    """Migrate, seed if empty, start the components, and wait for Ctrl-C."""
    import migrations

    settings = get_settings()
    _check_port_free(host, port)
    console.print(f"database: {make_url(settings.database_url).render_as_string()}")
    migrations.upgrade(settings.database_url)
    engine = get_engine()
    with session_scope(engine=engine, write=False) as session:
        empty = database_is_empty(session)
    if empty:
        seed_database(engine, instruments=instruments, seed=seed)
    else:
        console.print("the database already holds data; not seeding")

    if not settings.secret_key:
        # Generated (and warned about) now, above the logins, not at the first sign-in.
        settings.signing_key()
    ctx = DemoContext(settings, host, port, env={**os.environ})
    if settings.public_url is None:
        # Feed links and mails name the address the demo listens at.
        settings.public_url = ctx.url
        ctx.env["LABSHARE_PUBLIC_URL"] = ctx.url
    stopping = threading.Event()
    # Both signals stop cleanly; SIGINT explicitly, since a shell may start us ignoring it.
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    running: list[Running] = []
    try:
        for component in components(ctx):
            if stopping.is_set():  # Ctrl-C while starting: start nothing more
                break
            running.append(component.start(ctx))
            console.print(f"started {component.name}")
        if not stopping.is_set():
            console.print(f"\nlabshare is running at [bold]{ctx.url}[/bold]", soft_wrap=True)
            console.print(f"API docs: {ctx.url}/docs", soft_wrap=True)
            print_logins()
            console.print("Ctrl-C stops the demo.")
        while not stopping.wait(0.5):
            dead = [r.name for r in running if not r.alive()]
            if dead:
                raise fail(f"{', '.join(dead)} stopped unexpectedly")
    except KeyboardInterrupt:
        pass
    finally:
        for item in reversed(running):
            _stop(item)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped")


def _stop(item: Running) -> None:
    try:
        item.stop()
    except Exception as exc:  # one component's failure to stop must not keep others running
        console.print(f"{item.name}: {exc}")
