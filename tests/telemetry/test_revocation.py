"""A revoked gateway is refused from the next batch on, not after the directory's cache
expires (it used to keep publishing for 30 s after `labshare gateways revoke`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from core.db import session_scope
from telemetry.models import DeadLetter, TelemetryEvent
from telemetry.protocol import encode, events_topic
from telemetry.service import gateway_revoke
from telemetry.store import Directory, Incoming, write_batch
from tests.telemetry.conftest import Net


def _heartbeat(net: Net, n: int) -> Incoming:
    payload = encode(id=f"hb{n}", ts=datetime.now(UTC), type="heartbeat")
    return Incoming(0, 1, events_topic(net.gateway.uid, net.codes[0]), payload)


def test_a_revoked_gateway_is_refused_at_once(engine: Engine, session: Session, net: Net) -> None:
    directory = Directory(ttl=3600)  # a cache that would otherwise hold for an hour
    assert write_batch(engine, directory, [_heartbeat(net, 1)]).stored == 1
    with session_scope() as s:
        gateway_revoke(s, uid=net.gateway.uid)
    result = write_batch(engine, directory, [_heartbeat(net, 2)])
    assert (result.stored, result.dead) == (0, 1)
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(TelemetryEvent)).one() == 1
        assert "revoked" in s.exec(select(DeadLetter.reason)).one()
