"""MQTT past one broker: two Mosquitto brokers bridged both ways, gateways on either, the
ingest on one. Every message reaches the ingest, and each is stored once, also when a
gateway that moved to the other broker sends its queue again (docs/scaling.md)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy.engine import Engine

from telemetry.ingest import IngestWorker
from telemetry.models import TelemetryEvent
from telemetry.protocol import encode, events_topic
from tests.served import free_port
from tests.telemetry.conftest import IN_CI, Net, publish_all, wait_until
from tests.telemetry.test_ingest import count

pytestmark = pytest.mark.mqtt


def _broker(binary: str, conf: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"mosquitto did not listen on {port}")


def _client(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_bridged_brokers_deliver_each_message_once(
    worker_factory: Callable[..., IngestWorker], engine: Engine, net: Net, root: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    if engine.dialect.name != "postgresql":
        pytest.skip("the brokers are what is tested; the ingest's database is PostgreSQL's here")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        if IN_CI:
            pytest.fail("mosquitto is not installed")
        pytest.skip("mosquitto is not installed")
    a, b = free_port(), free_port()
    (tmp_path / "a.conf").write_text(
        f"listener {a} 127.0.0.1\nallow_anonymous true\npersistence false\n")  # fmt: skip
    (tmp_path / "b.conf").write_text(
        f"listener {b} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"connection to-a\naddress 127.0.0.1:{a}\ntopic {root}/# both 1\n"
        "cleansession false\ntry_private true\nrestart_timeout 1\n"
    )  # fmt: skip
    brokers = [_broker(binary, tmp_path / "a.conf", a)]
    try:
        brokers.append(_broker(binary, tmp_path / "b.conf", b))
        time.sleep(0.5)  # the bridge connects
        worker = worker_factory(mqtt_url=f"mqtt://127.0.0.1:{b}")
        now = datetime.now(UTC)
        on_a, on_b = _client(a), _client(b)
        topic = events_topic(net.gateway.uid, net.codes[0], root)
        first = [(topic, encode(id=f"a{i}", ts=now, type="meter", data={"samples": 1}))
                 for i in range(100)]  # fmt: skip
        publish_all(on_a, first)  # through the bridge
        publish_all(on_b, [(topic, encode(id=f"b{i}", ts=now, type="meter")) for i in range(100)])
        # The gateway moved to broker B and sends its last 50 from A again: stored once.
        publish_all(on_b, first[50:])
        assert wait_until(lambda: count(engine, TelemetryEvent) == 200, timeout=30)
        assert wait_until(lambda: worker.metrics.values["received"] >= 250, timeout=30)
        time.sleep(0.5)
        assert count(engine, TelemetryEvent) == 200
        assert worker.metrics.values["duplicates"] >= 50
        for client in (on_a, on_b):
            client.loop_stop()
    finally:
        for process in brokers:
            process.terminate()
            process.wait(5)
