"""What `labshare demo` runs for telemetry: the embedded broker (amqtt) and the simulator."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from booking.models import Booking
from telemetry.broker import start_embedded_broker
from telemetry.ingest import IngestConfig, IngestWorker
from telemetry.models import Gateway, Presence, TelemetryEvent, UsageKind, UsageSession
from telemetry.protocol import encode, events_topic, presence_topic
from telemetry.simulate import SIM_NAME, Simulator, prepare_gateways
from tests.factories import create_badge, create_user
from tests.telemetry.conftest import MQTT_HOST, MQTT_PORT, Net, publish_all, wait_until

pytestmark = pytest.mark.mqtt


def events(engine: Engine) -> int:
    # A new session each time: a SQLite read transaction would keep seeing its snapshot.
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(TelemetryEvent)).one()


def test_embedded_broker_with_a_mqtt311_worker(engine: Engine, net: Net) -> None:
    import paho.mqtt.client as mqtt

    broker = start_embedded_broker()
    worker = IngestWorker(
        engine,
        IngestConfig(mqtt_url=broker.url, client_id=f"w-{uuid.uuid4().hex[:8]}", mqtt5=False,
                     shared=False, batch_wait=0.05, reconcile_every=0),
    )  # fmt: skip
    thread = threading.Thread(target=worker.run, daemon=True)
    try:
        thread.start()
        assert worker.subscribed.wait(15)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        topic = events_topic(net.gateway.uid, net.codes[0])
        now = datetime.now(UTC)
        publish_all(pub, [
            (presence_topic(net.gateway.uid), b"online"),
            (topic, encode(id="1", ts=now, type="session_start", user="B1")),
            (topic, encode(id="1", ts=now, type="session_start", user="B1")),
            (topic, encode(id="2", ts=now, type="meter", data={"samples": 2})),
        ])  # fmt: skip
        assert wait_until(lambda: events(engine) == 2), worker.metrics.values
        assert wait_until(lambda: worker.metrics.values["presence"] == 1)
        pub.loop_stop()
    finally:
        worker.stop()
        thread.join(15)
        broker.stop()
    with Session(engine) as s:
        assert s.exec(select(UsageSession)).one().samples == 2
        assert s.get(Gateway, net.gateway.id).presence == Presence.online


def test_the_simulator_follows_bookings_and_says_goodbye(
    worker_factory: Callable[..., IngestWorker],
    engine: Engine,
    session: Session,
    net: Net,
    root: str,
) -> None:
    worker_factory()
    alice = create_user(session)
    create_badge(session, alice, "B-ALICE")
    now = datetime.now(UTC)
    booking = Booking(instrument_id=net.instrument_ids[0], user_id=alice.id,
                      start_at=now - timedelta(minutes=1), end_at=now + timedelta(minutes=30))  # fmt: skip
    session.add(booking)
    session.commit()
    with Session(engine) as s:
        gateways = prepare_gateways(s, count=5, horizon=timedelta(minutes=5))
        s.commit()
    [gw] = gateways
    sim = Simulator(
        gateways, host=MQTT_HOST, port=MQTT_PORT, rate=30, badges=["B-X"], root=root, seed=3
    )
    # Asked to stop (SIGTERM, as `labshare demo` stops it) long before its hour is up.
    sent_by: list[int] = []
    runner = threading.Thread(target=lambda: sent_by.append(sim.run(3600)))
    runner.start()
    time.sleep(3)
    sim.stop()
    runner.join(10)
    assert not runner.is_alive()
    [sent] = sent_by
    assert sent >= 60
    assert wait_until(lambda: events(engine) >= sent), (events(engine), sent)
    with Session(engine) as s:
        usage = s.exec(
            select(UsageSession).where(UsageSession.instrument_id == net.instrument_ids[0])
        ).one()
        assert usage.kind == UsageKind.booked and usage.booking_id == booking.id
        assert usage.user_id == alice.id
        sim_gw = s.exec(select(Gateway).where(col(Gateway.name) == SIM_NAME)).one()
        assert sim_gw.uid == gw.uid

    def presence() -> Presence:
        with Session(engine) as s:
            return s.get_one(Gateway, sim_gw.id).presence

    # Its goodbye (and the last will, had it dropped off) says offline.
    assert wait_until(lambda: presence() == Presence.offline)
