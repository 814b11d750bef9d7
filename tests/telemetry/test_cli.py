"""`labshare gateways ...`, and the broker files checked by a private Mosquitto using them."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from telemetry.cli import gateways_app
from telemetry.models import Gateway, GatewayInstrument
from telemetry.service import mosquitto_verify
from tests.telemetry.conftest import IN_CI, Net

runner = CliRunner()


def test_create_list_revoke(session: Session, net: Net) -> None:
    result = runner.invoke(
        gateways_app,
        [
            "create",
            "--lab",
            net.lab_code,
            "--instruments",
            f"{net.codes[0]},{net.codes[1]}",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert set(created) == {"gateway_id", "password"}
    gateway = session.exec(select(Gateway).where(Gateway.uid == created["gateway_id"])).one()
    assert mosquitto_verify(created["password"], gateway.password_hash)
    assert created["password"] not in gateway.password_hash
    assert (
        len(
            session.exec(
                select(GatewayInstrument).where(GatewayInstrument.gateway_id == gateway.id)
            ).all()
        )
        == 2
    )

    listing = runner.invoke(gateways_app, ["list"])
    assert listing.exit_code == 0 and created["gateway_id"] in listing.output
    assert created["password"] not in listing.output
    assert runner.invoke(gateways_app, ["revoke", created["gateway_id"]]).exit_code == 0
    again = runner.invoke(gateways_app, ["revoke", created["gateway_id"]])
    assert again.exit_code == 1 and "already revoked" in again.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["create", "--lab", "NOPE"], "no lab"),
        (["create", "--lab", "{lab}", "--instruments", "NOPE"], "no instrument"),
        (["revoke", "gw-nope"], "no gateway"),
        (["list", "--lab", "NOPE"], "no lab"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(net: Net, args: list[str], reason: str) -> None:
    result = runner.invoke(gateways_app, [a.format(lab=net.lab_code) for a in args])
    assert result.exit_code == 1 and reason in result.output
    assert len(result.output.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int, user: str, password: str) -> tuple[mqtt.Client, list[str]]:
    got: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"c-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(user, password)
    client.on_message = lambda _c, _u, m: got.append(m.topic)
    result: list[object] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: result.append(reason)
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
    client.connected_ok = bool(result) and not result[0].is_failure  # type: ignore[attr-defined]
    return client, got


def test_acl_files_restrict_each_gateway_to_its_prefix(
    session: Session, net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        if IN_CI:
            pytest.fail("mosquitto is not installed")
        pytest.skip("mosquitto is not installed")
    other = json.loads(
        runner.invoke(gateways_app, ["create", "--lab", net.lab_code, "--json"]).output
    )
    revoked = json.loads(
        runner.invoke(gateways_app, ["create", "--lab", net.lab_code, "--json"]).output
    )
    runner.invoke(gateways_app, ["revoke", revoked["gateway_id"]])
    port = _free_port()
    monkeypatch.setenv("LABSHARE_MQTT_URL", f"mqtt://ingest:ingest-secret@127.0.0.1:{port}")
    from core.settings import get_settings

    get_settings.cache_clear()
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    result = runner.invoke(gateways_app, ["acl", "--passwd", str(passwd), "--acl", str(acl)])
    assert result.exit_code == 0, result.output
    assert revoked["gateway_id"] not in passwd.read_text()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
        f"password_file {passwd}\nacl_file {acl}\n"
        # Run as whoever runs the tests, so it can read files in pytest's private tmp dir.
        f"user {getpass.getuser()}\n"
    )
    broker = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        root = "labshare/v1/gateways"
        ingest, seen = _connect(port, "ingest", "ingest-secret")
        assert ingest.connected_ok
        ingest.subscribe(f"{root}/#", qos=1)
        time.sleep(0.3)
        mine, _ = _connect(port, net.gateway.uid, net.password)
        assert mine.connected_ok
        mine.publish(
            f"{root}/{net.gateway.uid}/instruments/{net.codes[0]}/events", b"{}", qos=1
        ).wait_for_publish(5)
        # Pretending to be another gateway: the broker drops it silently.
        mine.publish(
            f"{root}/{other['gateway_id']}/instruments/{net.codes[0]}/events", b"{}", qos=1
        ).wait_for_publish(5)
        theirs, _ = _connect(port, other["gateway_id"], other["password"])
        theirs.publish(f"{root}/{other['gateway_id']}/status", b"online", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert sorted(seen) == sorted([
            f"{root}/{net.gateway.uid}/instruments/{net.codes[0]}/events",
            f"{root}/{other['gateway_id']}/status",
        ])  # fmt: skip
        wrong, _ = _connect(port, net.gateway.uid, "wrong password")
        assert not wrong.connected_ok
        gone, _ = _connect(port, revoked["gateway_id"], revoked["password"])
        assert not gone.connected_ok
        for c in (ingest, mine, theirs, wrong, gone):
            c.loop_stop()
    finally:
        broker.terminate()
        broker.wait(5)
