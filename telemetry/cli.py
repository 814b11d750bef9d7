"""Telemetry's commands: gateways, the ingest worker, the simulator, usage upkeep."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from core.cli_support import fail, reasons
from core.db import get_engine, session_scope
from core.settings import get_settings

gateways_app = typer.Typer(help="Lab gateways and their MQTT credentials.", no_args_is_help=True)
usage_app = typer.Typer(help="Usage sessions derived from telemetry.", no_args_is_help=True)


@gateways_app.command("create")
@reasons
def gateways_create(
    lab: Annotated[str, typer.Option(help="The lab's code")],
    instruments: Annotated[
        str | None, typer.Option(help="Instrument codes it serves, comma-separated (default: all)")
    ] = None,
    name: Annotated[str, typer.Option(help="A name people recognise")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Register a gateway; prints its id and MQTT password once."""
    from telemetry.service import gateway_create

    codes = [c.strip() for c in instruments.split(",") if c.strip()] if instruments else None
    with session_scope() as session:
        gateway, password = gateway_create(session, lab_code=lab, instrument_codes=codes, name=name)
    if as_json:
        typer.echo(json.dumps({"gateway_id": gateway.uid, "password": password}))
        return
    typer.echo(f"gateway_id: {gateway.uid}\npassword:   {password}")
    typer.echo("The password is not shown again. Run `labshare gateways acl` to update the broker.")


@gateways_app.command("list")
@reasons
def gateways_list(
    lab: Annotated[str | None, typer.Option(help="Only this lab's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Gateways with presence and when each was last seen."""
    from telemetry.service import gateway_list, lab_by_code

    with session_scope(write=False) as session:
        lab_id = lab_by_code(session, lab).id if lab else None
        rows = gateway_list(session, lab_id=lab_id)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    typer.echo(f"{'gateway':<18}{'lab':<14}{'presence':<10}{'last seen':<22}{'revoked':<8}serves")
    for r in rows:
        seen = r.last_seen_at.strftime("%Y-%m-%d %H:%M:%SZ") if r.last_seen_at else "never"
        serves = ",".join(r.instruments) or "all"
        revoked = "yes" if r.revoked_at else ""
        typer.echo(f"{r.gateway_id:<18}{r.lab:<14}{r.presence:<10}{seen:<22}{revoked:<8}{serves}")


@gateways_app.command("revoke")
@reasons
def gateways_revoke(gateway_id: Annotated[str, typer.Argument(help="The gateway's id")]) -> None:
    """Revoke a gateway: the ingest refuses it at once, the broker after `gateways acl`."""
    from telemetry.service import gateway_revoke

    with session_scope() as session:
        gateway_revoke(session, uid=gateway_id)
    typer.echo(f"revoked {gateway_id}; run `labshare gateways acl` to update the broker")


@gateways_app.command("acl")
@reasons
def gateways_acl(
    passwd: Annotated[Path, typer.Option(help="Mosquitto password file to write")] = Path(
        "mosquitto.passwd"
    ),
    acl: Annotated[Path, typer.Option(help="Mosquitto ACL file to write")] = Path("mosquitto.acl"),
) -> None:
    """Write Mosquitto's password and ACL files: each gateway may use only its own topics."""
    from telemetry.ingest import parse_mqtt_url
    from telemetry.service import broker_files

    user = password = None
    if get_settings().mqtt_url:
        broker = parse_mqtt_url(get_settings().mqtt_url or "")
        user, password = broker.username, broker.password
    with session_scope(write=False) as session:
        passwd_text, acl_text = broker_files(session, ingest_user=user, ingest_password=password)
    for path, text in ((passwd, passwd_text), (acl, acl_text)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600 if path == passwd else 0o644)
        tmp.replace(path)  # atomic: the broker never reads half a file
    count = passwd_text.count("\n")
    typer.echo(f"wrote {passwd} ({count} accounts) and {acl}; reload mosquitto (SIGHUP)")


@usage_app.command("reconcile")
@reasons
def usage_reconcile_cmd() -> None:
    """Close silent sessions, mark no-shows, complete used bookings (the worker does this too)."""
    from telemetry.reconcile import usage_reconcile

    with session_scope() as session:
        result = usage_reconcile(session)
    typer.echo(
        f"closed {result.closed_silent} silent sessions, {result.no_shows} no-shows, "
        f"{result.completed} bookings completed"
    )


@reasons
def ingest(
    client_id: Annotated[str, typer.Option(help="MQTT client id (the persistent session)")] = (
        "labshare-ingest-1"
    ),
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port")
    ] = None,
    batch_max: Annotated[int, typer.Option(min=1, max=50_000, help="Messages per batch")] = 2000,
    topic_root: Annotated[str, typer.Option(hidden=True)] = "labshare/v1/gateways",
    group: Annotated[str, typer.Option(hidden=True)] = "labshare-ingest",
    reconcile_every: Annotated[float, typer.Option(hidden=True)] = 60.0,
    mqtt311: Annotated[
        bool, typer.Option("--mqtt311", help="MQTT 3.1.1 without a shared subscription (amqtt)")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Only warnings, errors and the final summary")
    ] = False,
) -> None:
    """The MQTT telemetry ingest worker (LABSHARE_MQTT_URL)."""
    from telemetry.ingest import IngestConfig, IngestWorker, parse_mqtt_url
    from telemetry.metrics import serve_metrics

    url = get_settings().mqtt_url
    if not url:
        raise fail("set LABSHARE_MQTT_URL (mqtt://host:1883), or run `labshare demo`")
    try:
        parse_mqtt_url(url)
    except ValueError as exc:
        raise fail(str(exc))
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    config = IngestConfig(
        mqtt_url=url, client_id=client_id, batch_max=batch_max, root=topic_root, group=group,
        reconcile_every=reconcile_every, mqtt5=not mqtt311, shared=not mqtt311,
    )  # fmt: skip
    worker = IngestWorker(get_engine(), config)
    server = serve_metrics(worker.metrics, metrics_port) if metrics_port else None

    def _stop(_signum: int, _frame: object) -> None:
        worker.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if not quiet:
        where = url.split("@")[-1]
        typer.echo(f"ingest: {client_id} on {where}; Ctrl-C flushes and stops", err=True)
    worker.run()
    if server:
        server.shutdown()
    values = worker.metrics.values
    # Every message received is accounted for: stored, a duplicate, a dead letter, a
    # presence update, or left unacknowledged for the broker to deliver again.
    handled = sum(values[k] for k in ("stored", "duplicates", "dead_letters", "presence"))
    typer.echo(
        f"ingest stopped: received {values['received']}, stored {values['stored']}, "
        f"duplicates {values['duplicates']}, dead letters {values['dead_letters']}, "
        f"presence {values['presence']}, "
        f"unacknowledged (redelivered next time) {max(values['received'] - handled, 0)}",
        err=True,
    )


def mount(app: typer.Typer) -> None:
    """Add telemetry's commands to the `labshare` command."""
    from telemetry.simulate import simulate

    app.add_typer(gateways_app, name="gateways")
    app.add_typer(usage_app, name="usage")
    app.command("ingest")(ingest)
    app.command("simulate")(simulate)
