"""Billing's commands: `labshare invoices ...`, `labshare rates ...`, `labshare vouchers ...`."""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Annotated

import stripe
import typer
from pydantic import ValidationError
from sqlmodel import col, select

from billing.invoices import invoice_close, invoice_run
from billing.models import Invoice, RateCard
from billing.rates import policy_set, rate_card_create, rates_sync
from billing.schemas import ChargingPolicyIn, RateCardIn
from billing.stripe_gateway import invoice_send, invoices_to_send, stripe_client
from billing.vouchers import ProgrammeIn, programme_create, programmes_list
from core.cli_support import err_console, fail, reasons
from core.db import session_scope
from core.money import format_money
from core.periods import parse_period
from core.settings import get_settings

invoices_app = typer.Typer(help="Monthly charges and invoices.", no_args_is_help=True)
rates_app = typer.Typer(help="Rate cards and charging policies.", no_args_is_help=True)
vouchers_app = typer.Typer(help="Innovation voucher programmes.", no_args_is_help=True)


class _Clock:
    """Progress lines on stderr, each with the seconds since the command began."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        err_console.print(
            f"[{time.perf_counter() - self.started:6.1f}s] {message}", highlight=False
        )


def _period(value: str) -> str:
    parse_period(value)  # BadPeriod -> one-line reason via @reasons
    return value


@invoices_app.command("run")
@reasons
def invoices_run(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM")],
) -> None:
    """Charge the month's bookings, usage and fees (each once) and gather draft invoices."""
    _period(period)
    clock = _Clock()
    with session_scope() as session:
        report = invoice_run(session, period=period, progress=clock)
    clock("committed")
    c = report.charges
    typer.echo(
        f"{period}: {c.total:,} new charges ({c.booking:,} bookings, {c.overtime:,} overtime, "
        f"{c.no_show:,} no-shows, {c.late_cancel:,} late cancellations, {c.walk_up:,} walk-ups); "
        f"{report.lines_added:,} lines on {report.invoices:,} invoices "
        f"({report.invoices_created:,} new); vouchers {report.vouchers_granted:,}; "
        f"{c.unpriced:,} uses without a rate or payer left uncharged; {report.seconds:.1f} s"
    )


@invoices_app.command("close")
@reasons
def invoices_close(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM")],
) -> None:
    """Run the month a last time, finalize its invoices and post them to the ledger; then send
    them to Stripe when LABSHARE_STRIPE_API_KEY is set."""
    _period(period)
    clock = _Clock()
    with session_scope() as session:
        invoices = invoice_close(session, period=period, progress=clock)
    typer.echo(f"{period}: closed, {len(invoices):,} invoices final")
    _send(period, clock)


def _send(period: str, clock: _Clock) -> None:
    client = stripe_client()
    if client is None:
        clock("LABSHARE_STRIPE_API_KEY is unset: invoices are kept locally")
        return
    with session_scope(write=False) as session:
        ids = invoices_to_send(session, period=period)
    for n, invoice_id in enumerate(ids, 1):
        try:
            with session_scope() as session:
                invoice = session.get(Invoice, invoice_id)
                assert invoice is not None
                invoice_send(session, client, invoice)
        except stripe.StripeError as exc:
            # What was sent carries idempotency keys: `labshare invoices send` resumes safely.
            raise fail(f"stripe: {exc.user_message or exc} (sent {n - 1} of {len(ids)})")
        clock(f"sent {n:,}/{len(ids):,} {invoice.number} -> {invoice.stripe_invoice_id}")
    typer.echo(f"{period}: {len(ids):,} invoices sent to Stripe")


@invoices_app.command("send")
@reasons
def invoices_send(period: Annotated[str, typer.Option(help="The month, YYYY-MM")]) -> None:
    """Send the month's final invoices to Stripe (again safe: idempotency keys)."""
    _period(period)
    if stripe_client() is None:
        raise fail("LABSHARE_STRIPE_API_KEY is unset; invoices are kept locally")
    _send(period, _Clock())


@invoices_app.command("list")
@reasons
def invoices_list(period: Annotated[str, typer.Option(help="The month, YYYY-MM")]) -> None:
    """The month's invoices: number, status, lines, total due."""
    _period(period)
    with session_scope(write=False) as session:
        rows = session.exec(
            select(Invoice).where(Invoice.period == period).order_by(col(Invoice.number))
        ).all()
        for inv in rows:
            typer.echo(
                f"{inv.number}\t{inv.status.value}\t{inv.line_count} lines\t"
                f"{format_money(inv.subtotal, inv.currency)}\tvoucher "
                f"{format_money(inv.voucher_total, inv.currency)}\tdue "
                f"{format_money(inv.total, inv.currency)}"
            )


def _validated(model, **fields):  # type: ignore[no-untyped-def]
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "input"
        raise fail(f"{where}: {error['msg']}")


@rates_app.command("set")
@reasons
def rates_set(
    payer_class: Annotated[str, typer.Option(help="internal, academic, company, small_company")],
    amount: Annotated[int, typer.Option(help="Minor units per hour or per sample")],
    instrument: Annotated[str | None, typer.Option(help="Instrument code")] = None,
    category: Annotated[str | None, typer.Option(help="Category code (a lab default)")] = None,
    lab: Annotated[str | None, typer.Option(help="Lab code, for a category default")] = None,
    unit: Annotated[str, typer.Option(help="hour or sample")] = "hour",
    currency: Annotated[str | None, typer.Option(help="ISO 4217")] = None,
    minimum_charge: Annotated[int, typer.Option(help="Minor units")] = 0,
    rounding_minutes: Annotated[int, typer.Option(help="Round billed time up to")] = 1,
    assisted_surcharge: Annotated[int, typer.Option(help="Minor units per unit")] = 0,
    effective_from: Annotated[str | None, typer.Option(help="RFC 3339; now by default")] = None,
) -> None:
    """Add a rate card (a new price from a date; history is kept)."""
    from instruments.models import Instrument

    with session_scope() as session:
        instrument_id = None
        if instrument:
            found = session.exec(select(Instrument).where(Instrument.code == instrument)).first()
            if found is None:
                raise fail(f"no instrument with the code {instrument!r}")
            instrument_id = found.id
        data = _validated(
            RateCardIn,
            instrument_id=instrument_id,
            category=category,
            lab=lab,
            payer_class=payer_class,
            unit=unit,
            amount=amount,
            currency=currency,
            minimum_charge=minimum_charge,
            rounding_minutes=rounding_minutes,
            assisted_surcharge=assisted_surcharge,
            effective_from=effective_from,
        )
        card = rate_card_create(session, user=None, data=data)
        typer.echo(
            f"rate card {card.id}: {card.payer_class.value} "
            f"{format_money(card.amount, card.currency)}/{card.unit.value} from "
            f"{card.effective_from.isoformat()}"
        )


@rates_app.command("policy")
@reasons
def rates_policy(
    lab: Annotated[str, typer.Option(help="Lab code")],
    basis: Annotated[str, typer.Option(help="booked, used or larger")] = "booked",
    no_show_fee: Annotated[int, typer.Option(help="Minor units")] = 0,
    late_cancel_window_minutes: Annotated[int, typer.Option(help="Minutes before start")] = 0,
    late_cancel_fee: Annotated[int, typer.Option(help="Minor units")] = 0,
    bill_overtime: Annotated[bool, typer.Option(help="Bill usage past the booking")] = True,
) -> None:
    """Set a lab's charging policy."""
    data = _validated(
        ChargingPolicyIn,
        basis=basis,
        no_show_fee=no_show_fee,
        late_cancel_window_minutes=late_cancel_window_minutes,
        late_cancel_fee=late_cancel_fee,
        bill_overtime=bill_overtime,
    )
    with session_scope() as session:
        policy = policy_set(session, user=None, lab_code=lab, data=data)
    typer.echo(f"lab {policy.lab}: bills {policy.basis.value} time")


@rates_app.command("sync")
@reasons
def rates_sync_all() -> None:
    """Refresh the published rates instrument pages show from the cards in force now."""
    with session_scope() as session:
        labs = session.exec(select(RateCard.lab_id).distinct()).all()
        synced = sum(rates_sync(session, lab_id=lab_id) for lab_id in labs)
    typer.echo(f"published rates refreshed on {synced:,} instruments")


@vouchers_app.command("create")
@reasons
def vouchers_create(
    code: Annotated[str, typer.Option(help="Short code")],
    budget: Annotated[int, typer.Option(help="Minor units")],
    coverage_bp: Annotated[int, typer.Option(help="Basis points of eligible lines, 1..10000")],
    company_yearly_cap: Annotated[int, typer.Option(help="Minor units per company per year")],
    starts_on: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])],
    ends_on: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])],
    name: Annotated[str, typer.Option(help="Display name")] = "Innovation vouchers",
    currency: Annotated[str | None, typer.Option(help="ISO 4217")] = None,
) -> None:
    """Open an innovation voucher programme."""
    data = ProgrammeIn(
        code=code,
        name=name,
        currency=currency or get_settings().currency,
        budget=budget,
        coverage_bp=coverage_bp,
        company_yearly_cap=company_yearly_cap,
        starts_on=date.fromordinal(starts_on.toordinal()),
        ends_on=date.fromordinal(ends_on.toordinal()),
    )
    with session_scope() as session:
        programme = programme_create(session, data=data)
    typer.echo(f"voucher programme {programme.id} {programme.code}")


@vouchers_app.command("list")
@reasons
def vouchers_list() -> None:
    """Programmes with budget, spent and remaining."""
    with session_scope(write=False) as session:
        for p in programmes_list(session):
            typer.echo(
                f"{p.code}\t{p.coverage_bp / 100:g}%\tbudget {format_money(p.budget, p.currency)}"
                f"\tcommitted {format_money(p.committed, p.currency)}"
                f"\tspent {format_money(p.spent, p.currency)}\t{p.starts_on}..{p.ends_on}"
            )


@vouchers_app.command("expire")
@reasons
def vouchers_expire_due(
    today: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="As of this day (today)")
    ] = None,
) -> None:
    """Expire approved vouchers past their day; what they left unused goes back to the
    programme's budget and the company's cap. Safe to run daily."""
    from billing.voucher_applications import vouchers_expire

    day = date.fromordinal(today.toordinal()) if today else None
    with session_scope() as session:
        count, returned = vouchers_expire(session, today=day)
    typer.echo(f"{count} vouchers expired; {returned} (minor units) back to their programmes")


@vouchers_app.command("verify")
@reasons
def vouchers_verify(claim: Annotated[int, typer.Option(help="The claim's id", min=1)]) -> None:
    """Recompute a claim's evidence digests from the database: exit 1 naming each line
    whose records changed since it was submitted."""
    from billing.voucher_claims import claim_verify

    with session_scope(write=False) as session:
        findings = claim_verify(session, claim)
    if not findings:
        typer.echo(f"claim {claim}: every line's evidence matches its digest")
        return
    for f in findings:
        where = f"line {f.line_id} (charge {f.charge_id})" if f.line_id else f"claim {claim}"
        typer.echo(f"claim {claim}: {where}: {f.problem}", err=True)
    raise typer.Exit(1)


def mount(app: typer.Typer) -> None:
    """Add billing's commands to the `labshare` command."""
    app.add_typer(invoices_app, name="invoices")
    app.add_typer(rates_app, name="rates")
    app.add_typer(vouchers_app, name="vouchers")
