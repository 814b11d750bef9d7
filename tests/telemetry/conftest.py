"""Telemetry fixtures: the machine's Mosquitto, unique topic roots, and an in-thread worker.

Broker tests are marked `mqtt`; without a broker they skip, and with CI=true they fail.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from telemetry.ingest import IngestConfig, IngestWorker
from telemetry.models import Gateway
from telemetry.service import gateway_create
from tests.factories import create_instrument, create_lab

MQTT_HOST = os.environ.get("LABSHARE_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("LABSHARE_TEST_MQTT_PORT", "1883"))
MQTT_URL = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def broker_reachable() -> bool:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker() -> str:
    """The MQTT URL of the machine's broker."""
    if not broker_reachable():
        message = f"no MQTT broker at {MQTT_HOST}:{MQTT_PORT}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return MQTT_URL


@pytest.fixture
def root() -> str:
    """A topic root of our own, so parallel runs never see each other's messages."""
    return f"test-{uuid.uuid4().hex[:10]}/labshare/v1/gateways"


@dataclass
class Net:
    """A lab with instruments and a gateway serving them."""

    lab_code: str
    codes: list[str]
    instrument_ids: list[int]
    gateway: Gateway
    password: str


@pytest.fixture
def net(session: Session) -> Net:
    lab = create_lab(session)
    instruments = [create_instrument(session, lab=lab) for _ in range(3)]
    gateway, password = gateway_create(session, lab_code=lab.code)
    session.commit()
    return Net(
        lab.code, [i.code for i in instruments], [i.id for i in instruments], gateway, password
    )  # type: ignore[misc]


def publisher(client_id: str | None = None) -> mqtt.Client:
    """A connected paho client with its network loop running."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}"
    )
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    return client


def publish_all(
    client: mqtt.Client, messages: list[tuple[str, bytes]], retain: bool = False
) -> None:
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=30)


def wait_until(check: Callable[[], bool], timeout: float = 20.0, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


@pytest.fixture
def worker_factory(engine: Engine, broker: str, root: str) -> Iterator[Callable[..., IngestWorker]]:
    """Start in-thread workers on this test's root; all are stopped at the end."""
    started: list[tuple[IngestWorker, threading.Thread]] = []
    group = f"g-{uuid.uuid4().hex[:8]}"

    def start(*, engine: Engine = engine, **overrides: object) -> IngestWorker:
        config = IngestConfig(
            mqtt_url=broker, client_id=f"w-{uuid.uuid4().hex[:10]}", group=group, root=root,
            batch_wait=0.05, reconcile_every=0, session_expiry=60,
        )  # fmt: skip
        for key, value in overrides.items():
            setattr(config, key, value)
        worker = IngestWorker(engine, config)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        assert worker.subscribed.wait(15), "the worker did not subscribe"
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(15)
