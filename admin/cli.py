"""Administration commands: `labshare settle`, `labshare admin ...`, `labshare reports ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.cli_support import reasons, run_passes
from core.db import session_scope
from core.money import format_money
from core.settings import CURRENCY_EXPONENTS, get_settings

app = typer.Typer(help="Network administration: KPIs, reports, policies.", no_args_is_help=True)


@reasons
def settle(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM")],
    policy: Annotated[
        Path | None, typer.Option(help="Policy YAML; stored, then used (default: newest stored)")
    ] = None,
    finalize: Annotated[
        bool, typer.Option(help="Finalize: immutable, posted to the ledger")
    ] = False,
    csv: Annotated[
        Path | None, typer.Option(help="Also write the per-institution CSV here")
    ] = None,
) -> None:
    """Sharing-subsidy and voucher settlement for a month: a preview, or --finalize it."""
    from admin.policies import policy_find_or_create
    from admin.reports import institution_rows, settlement_csv
    from admin.settlement import settlement_finalize, settlement_preview
    from admin.subsidy import policy_load

    document = policy_load(policy) if policy else None
    with session_scope() as session:
        policy_id = None
        if document is not None:
            policy_id = policy_find_or_create(session, document=document, actor_id=None).id
        row = settlement_preview(session, period=period, policy_id=policy_id, actor_id=None)
        assert row.id is not None
        if finalize:
            row = settlement_finalize(session, settlement_id=row.id, actor_id=None)
        rows = institution_rows(session, row)
        if csv is not None:
            csv.write_text(settlement_csv(session, settlement_id=row.id or 0), encoding="utf-8")
    money = lambda amount: format_money(amount, row.currency)  # noqa: E731
    typer.echo(
        f"settlement {row.id} {row.period} ({row.status.value}); policy {row.policy_id}; "
        f"inputs sha256 {row.inputs_hash}"
    )
    typer.echo(f"{'institution':<16} {'ext hours':>10} {'reward':>18} {'vouchers':>16}")
    for r in rows:
        reward, vouchers = int(str(r[10])), int(str(r[11]))
        if reward or vouchers or float(str(r[5])) > 0:
            typer.echo(f"{r[0]!s:<16} {r[5]!s:>10} {money(reward):>18} {money(vouchers):>16}")
    typer.echo(
        f"total reward {money(row.total_reward)} of budget {money(row.budget)} "
        f"(scale {row.scale}); voucher reimbursements {money(row.total_voucher_reimbursement)}"
    )


@app.command("policy-check")
@reasons
def policy_check(path: Annotated[Path, typer.Argument(help="Policy YAML file")]) -> None:
    """Validate a subsidy policy file; exit 1 with the reason when it is bad."""
    from admin.subsidy import policy_load

    doc = policy_load(path)
    typer.echo(f"ok: {doc.name}, budget {format_money(doc.budget, doc.currency)}")


@app.command("kpis")
@reasons
def kpis(period: Annotated[str, typer.Option(help="The month, YYYY-MM")]) -> None:
    """The network's KPIs for a month, as JSON."""
    import json

    from admin.kpis import network_kpis
    from core.timeutil import to_utc_z

    with session_scope(write=False) as session:
        data = network_kpis(session, period=period)
    data["computed_at"] = to_utc_z(data["computed_at"])  # type: ignore[arg-type]
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.command("assessment")
@reasons
def assessment(
    period: Annotated[str, typer.Option(help="YYYY or YYYY-MM")],
    out: Annotated[Path, typer.Option(help="CSV file to write")],
) -> None:
    """The national-assessment export per instrument."""
    from admin.reports import assessment_csv

    with session_scope(write=False) as session:
        body = assessment_csv(session, period=period)
    out.write_text(body, encoding="utf-8")
    typer.echo(f"wrote {out} ({body.count(chr(10)) - 1} instruments)")


@app.command("pay")
@reasons
def pay(settlement: Annotated[int, typer.Option(help="A finalized settlement's id")]) -> None:
    """Pay out a finalized settlement (Stripe Connect transfers, or payout records)."""
    from admin.payouts import settlement_pay

    with session_scope() as session:
        rows = settlement_pay(session, settlement_id=settlement, actor_id=None)
        for p in rows:
            typer.echo(
                f"institution {p.institution_id}: {format_money(p.amount, p.currency)} "
                f"{p.status.value} {p.stripe_transfer_id or ''}".rstrip()
            )


reports_app = typer.Typer(help="Reports for the bureaus.", no_args_is_help=True)


@reports_app.command("assessment")
@reasons
def reports_assessment(
    year: Annotated[int, typer.Option(help="The year, YYYY", min=2000, max=2100)],
    out: Annotated[Path, typer.Option(help="Folder to write the files in")] = Path("."),
    min_value: Annotated[
        int | None,
        typer.Option(help="Smallest original value, major units (the national 500,000 CNY)"),
    ] = None,
) -> None:
    """The yearly sharing assessment of large instruments, per instrument and per
    institution: assessment-YYYY-instruments.csv, -institutions.csv and .xlsx."""
    from admin.assessment import assessment_files

    currency = get_settings().currency
    minor = None if min_value is None else min_value * 10 ** CURRENCY_EXPONENTS[currency]
    with session_scope(write=False) as session:
        instruments, institutions, workbook = assessment_files(
            session, year=year, currency=currency, min_value=minor
        )
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"assessment-{year}"
    Path(f"{stem}-instruments.csv").write_text(instruments, encoding="utf-8")
    Path(f"{stem}-institutions.csv").write_text(institutions, encoding="utf-8")
    Path(f"{stem}.xlsx").write_bytes(workbook)
    count = instruments.count("\n") - 1
    typer.echo(f"wrote {stem}-instruments.csv ({count} instruments), -institutions.csv and .xlsx")


webhooks_app = typer.Typer(help="Outgoing webhooks.", no_args_is_help=True)


@webhooks_app.command("send")
@reasons
def webhooks_send(
    loop: Annotated[bool, typer.Option("--loop", help="Keep sending until stopped")] = False,
    interval: Annotated[
        float, typer.Option(min=0.5, help="Seconds between passes with --loop")
    ] = 5.0,
    limit: Annotated[int, typer.Option(min=1, help="Deliveries per pass")] = 100,
) -> None:
    """Fan new events out to the endpoints that asked for them and post the deliveries
    that are due (signed; retried with backoff). Several senders may run at once."""
    import time

    from admin.webhooks import webhooks_prune, webhooks_send_due
    from core.timeutil import utcnow

    pruned_at = 0.0

    def one_pass() -> None:
        nonlocal pruned_at
        report = webhooks_send_due(limit=limit)
        if time.monotonic() - pruned_at > 3600 or not loop:
            with session_scope() as session:
                webhooks_prune(session, now=utcnow())
            pruned_at = time.monotonic()
        if report.dispatched or report.delivered or report.retrying or report.failed or not loop:
            typer.echo(
                f"{report.dispatched} new delivery(ies); delivered {report.delivered}, "
                f"retrying {report.retrying}, failed {report.failed}"
            )
        for delivery_id, error in report.errors.items():
            typer.echo(f"delivery {delivery_id}: {error}", err=True)

    run_passes(one_pass, loop=loop, interval=interval, name="webhooks")


def mount(root: typer.Typer) -> None:
    """Add `settle`, `admin`, `reports` and `webhooks` to the root command."""
    root.command("settle")(settle)
    root.add_typer(app, name="admin")
    root.add_typer(reports_app, name="reports")
    root.add_typer(webhooks_app, name="webhooks")
