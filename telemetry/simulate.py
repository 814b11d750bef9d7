"""`labshare simulate`: gateways publishing realistic telemetry for the demo network."""

from __future__ import annotations

import random
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

import paho.mqtt.client as mqtt
import typer
from sqlalchemy import case
from sqlmodel import Session, col, select

from booking.models import Booking, BookingStatus
from core.cli_support import fail, reasons
from core.db import get_engine, session_scope
from core.models import Role, User
from core.settings import get_settings
from instruments.models import Instrument, Lab
from instruments.seed import DEMO_LOGINS
from telemetry.models import Badge, Gateway, GatewayInstrument
from telemetry.protocol import TOPIC_ROOT, encode, events_topic, presence_topic
from telemetry.service import gateway_create, mosquitto_hash

SIM_NAME = "simulated gateway"


@dataclass
class SimInstrument:
    code: str
    bookings: list[tuple[datetime, datetime, str]]  # start, end, badge of who booked
    in_use_until: datetime | None = None
    badge: str | None = None
    faulted: bool = False


@dataclass
class SimGateway:
    uid: str
    password: str
    instruments: list[SimInstrument]
    client: mqtt.Client | None = None
    seq: int = 0
    down_until: float = 0.0
    run: str = field(default_factory=lambda: secrets.token_hex(3))

    def next_id(self) -> str:
        self.seq += 1
        return f"{self.run}-{self.seq}"


def prepare_gateways(session: Session, *, count: int, horizon: timedelta) -> list[SimGateway]:
    """Reuse (with fresh passwords) or create one simulated gateway per lab, for `count` labs."""
    # The labs that the demo's own lab managers run come first: the first thing a manager
    # signing in to the demo sees is their lab's board, and it should be alive.
    demo_managers = [email for email, role, _ in DEMO_LOGINS if role == Role.lab_manager]
    demo_labs = select(User.lab_id).where(col(User.email).in_(demo_managers))
    labs = session.exec(
        select(Lab)
        .where(col(Lab.id).in_(select(Instrument.lab_id).distinct()))
        .order_by(case((col(Lab.id).in_(demo_labs), 0), else_=1), col(Lab.id))
    ).all()
    if not labs:
        raise ValueError("no instruments: run `labshare seed` first")
    now = datetime.now(UTC)
    # A gateway names people by their registered badges (a booker without one: no badge,
    # and the session still counts for the booking it falls in).
    badge_of = dict(session.exec(select(Badge.user_id, Badge.code).order_by(col(Badge.id))).all())
    out: list[SimGateway] = []
    for lab in labs[:count]:
        gateway = session.exec(
            select(Gateway).where(Gateway.lab_id == lab.id, Gateway.name == SIM_NAME)
            .where(col(Gateway.revoked_at).is_(None))
        ).first()  # fmt: skip
        password = secrets.token_urlsafe(18)
        if gateway is None:
            gateway, password = gateway_create(session, lab_code=lab.code, name=SIM_NAME)
        else:
            gateway.password_hash = mosquitto_hash(password)
            session.add(gateway)
        served = set(
            session.exec(
                select(GatewayInstrument.instrument_id).where(
                    GatewayInstrument.gateway_id == gateway.id
                )
            ).all()
        )
        instruments = session.exec(
            select(Instrument).where(Instrument.lab_id == lab.id).order_by(col(Instrument.id))
        ).all()
        sims = []
        for instrument in instruments:
            if served and instrument.id not in served:
                continue
            bookings = session.exec(
                select(Booking)
                .where(Booking.instrument_id == instrument.id)
                .where(Booking.status == BookingStatus.confirmed)
                .where(Booking.end_at > now, Booking.start_at < now + horizon)
            ).all()
            sims.append(
                SimInstrument(
                    instrument.code,
                    [(b.start_at, b.end_at, badge_of.get(b.user_id, "")) for b in bookings],
                )
            )
        out.append(SimGateway(gateway.uid, password, sims))
    session.flush()
    return out


class Simulator:
    """Drives the gateways: sessions that follow bookings, walk-ups, no-shows, overtime,
    faults, meters and heartbeats, and gateways that drop off (their last will says offline)."""

    def __init__(self, gateways: list[SimGateway], *, host: str, port: int, rate: float,
                 badges: list[str], root: str = TOPIC_ROOT, seed: int | None = None) -> None:  # fmt: skip
        self.gateways = gateways
        self.host, self.port, self.rate, self.root = host, port, rate, root
        self.badges = badges or ["walkup"]
        self.random = random.Random(seed)
        self.sent = 0
        self._lock = threading.Lock()
        # Set by stop() (SIGTERM, the way `labshare demo` stops its parts): the gateways
        # say goodbye (offline, retained) and disconnect, as on Ctrl-C.
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def _connect(self, gw: SimGateway) -> None:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{gw.uid}", protocol=mqtt.MQTTv311
        )
        client.username_pw_set(gw.uid, gw.password)
        client.will_set(presence_topic(gw.uid, self.root), b"offline", qos=1, retain=True)
        client.connect(self.host, self.port, keepalive=5)
        client.loop_start()
        client.publish(presence_topic(gw.uid, self.root), b"online", qos=1, retain=True)
        gw.client = client

    def _publish(self, gw: SimGateway, ins: SimInstrument, type_: str, **kw: object) -> None:
        if gw.client is None:
            return
        payload = encode(id=gw.next_id(), ts=datetime.now(UTC), type=type_, **kw)  # type: ignore[arg-type]
        gw.client.publish(events_topic(gw.uid, ins.code, self.root), payload, qos=1)
        self.sent += 1

    def _step_instrument(self, gw: SimGateway, ins: SimInstrument, now: datetime) -> int:
        r = self.random
        before = self.sent
        if ins.in_use_until is not None:
            if now >= ins.in_use_until or (ins.faulted and r.random() < 0.2):
                self._publish(gw, ins, "session_end", user=ins.badge)
                if ins.faulted:
                    self._publish(gw, ins, "status", data={"state": "idle"})
                ins.in_use_until, ins.badge, ins.faulted = None, None, False
            elif r.random() < 0.01:
                ins.faulted = True
                self._publish(gw, ins, "status", data={"state": "fault", "code": "E42"})
            elif r.random() < 0.3:
                self._publish(
                    gw,
                    ins,
                    "meter",
                    data={"samples": r.randint(0, 3), "kwh": round(r.random() * 0.05, 4)},
                )
            return self.sent - before
        for start, end, badge in ins.bookings:
            if start <= now < end:
                ins.bookings.remove((start, end, badge))
                if r.random() < 0.15:
                    break  # a no-show: the booking's person never comes
                overtime = timedelta(minutes=r.choice([0, 0, 0, 10, 25]))
                ins.in_use_until, ins.badge = end + overtime, badge or None
                self._publish(gw, ins, "session_start", user=ins.badge)
                return self.sent - before
        if r.random() < 0.002:  # a walk-up
            ins.in_use_until = now + timedelta(minutes=r.randint(5, 60))
            ins.badge = r.choice(self.badges)
            self._publish(gw, ins, "session_start", user=ins.badge)
        return self.sent - before

    def run(self, duration: float, progress: bool = False) -> int:
        """Publish for `duration` seconds; returns the number of messages sent."""
        for gw in self.gateways:
            self._connect(gw)
        instruments = [(gw, ins) for gw in self.gateways for ins in gw.instruments]
        cursor = 0
        start = time.monotonic()
        tick = 0
        try:
            while time.monotonic() - start < duration and not self.stopping.is_set():
                t0 = time.monotonic()
                now = datetime.now(UTC)
                budget = int(self.rate)
                for gw in self.gateways:
                    self._step_gateway(gw, t0)
                for gw, ins in instruments:
                    if gw.client is not None:
                        budget -= self._step_instrument(gw, ins, now)
                # The rest of the second's budget: heartbeats round the instruments.
                while budget > 0 and instruments:
                    gw, ins = instruments[cursor % len(instruments)]
                    cursor += 1
                    if gw.client is not None:
                        self._publish(gw, ins, "heartbeat")
                        budget -= 1
                    elif cursor % len(instruments) == 0:
                        break
                tick += 1
                if progress and tick % 10 == 0:
                    typer.echo(
                        f"simulate: {self.sent} messages in {time.monotonic() - start:.0f}s",
                        err=True,
                    )
                self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - t0)))
        finally:
            for gw in self.gateways:
                if gw.client is not None:
                    gw.client.publish(
                        presence_topic(gw.uid, self.root), b"offline", qos=1, retain=True
                    )
                    gw.client.disconnect()
                    gw.client.loop_stop()
        return self.sent

    def _step_gateway(self, gw: SimGateway, mono: float) -> None:
        if gw.client is None:
            if mono >= gw.down_until:
                self._connect(gw)
            return
        if self.random.random() < 0.0005 * max(1, 50 // max(1, len(self.gateways))):
            # Drop off without a goodbye: the broker publishes the last will (offline).
            sock = gw.client.socket()
            gw.client.loop_stop()
            if sock is not None:
                sock.close()
            gw.client = None
            gw.down_until = mono + self.random.uniform(20, 90)


@reasons
def simulate(
    gateways: Annotated[
        int, typer.Option(min=1, max=1000, help="How many gateways (one per lab)")
    ] = 10,
    rate: Annotated[
        float, typer.Option(min=1, max=100_000, help="Messages per second, in all")
    ] = 100,
    duration: Annotated[float, typer.Option(min=1, help="Seconds to run")] = 60,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Print progress every ten seconds")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No start line, only the summary")] = False,
) -> None:
    """Publish realistic telemetry for the demo network to LABSHARE_MQTT_URL."""
    from telemetry.ingest import parse_mqtt_url

    url = get_settings().mqtt_url
    if not url:
        raise fail("set LABSHARE_MQTT_URL (mqtt://host:1883), or run `labshare demo`")
    try:
        broker = parse_mqtt_url(url)
    except ValueError as exc:
        raise fail(str(exc))
    try:
        with session_scope(engine=get_engine()) as session:
            gws = prepare_gateways(session, count=gateways, horizon=timedelta(seconds=duration))
            badges = list(session.exec(select(Badge.code).order_by(col(Badge.id)).limit(500)))
    except ValueError as exc:
        raise fail(str(exc))
    count = sum(len(g.instruments) for g in gws)
    if not quiet:
        typer.echo(
            f"simulate: {len(gws)} gateways, {count} instruments, {rate:g} msg/s for {duration:g}s",
            err=True,
        )
    sim = Simulator(gws, host=broker.host, port=broker.port, rate=rate, badges=badges, seed=seed)
    signal.signal(signal.SIGTERM, lambda *_: sim.stop())
    try:
        sent = sim.run(duration, progress=verbose)
    except OSError as exc:
        raise fail(f"broker {broker.host}:{broker.port}: {exc}")
    typer.echo(f"simulate: sent {sent} messages")
