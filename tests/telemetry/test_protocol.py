"""The wire protocol: topics and payloads as the contract writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from telemetry.models import EventType, InstrumentLiveState
from telemetry.protocol import (
    EventTopic,
    PresenceTopic,
    ProtocolError,
    encode,
    parse_payload,
    parse_presence,
    parse_topic,
)

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def payload(**fields: object) -> bytes:
    body = {"id": "m1", "ts": "2026-11-25T16:00:00+08:00", "type": "heartbeat"} | fields
    return json.dumps(body).encode()


def test_topics() -> None:
    assert parse_topic("labshare/v1/gateways/gw-1/instruments/NMR.600/events") == EventTopic(
        "gw-1", "NMR.600"
    )
    assert parse_topic("labshare/v1/gateways/gw-1/status") == PresenceTopic("gw-1")
    for bad in [
        "labshare/v1/gateways/gw-1/instruments/X/event",
        "labshare/v2/gateways/gw-1/status",
        "labshare/v1/gateways/gw 1/status",
        "labshare/v1/gateways//instruments/X/events",
        "labshare/v1/gateways/gw-1/instruments/X/events/extra",
        "",
    ]:
        with pytest.raises(ProtocolError):
            parse_topic(bad)
    assert parse_topic("t/x/gw-2/status", root="t/x") == PresenceTopic("gw-2")


def test_a_valid_message_keeps_utc_time_user_and_data() -> None:
    m = parse_payload(payload(type="status", user="B17", data={"state": "in_use"}), now=NOW)
    assert m.ts == NOW and m.ts.tzinfo == UTC
    assert m.type == EventType.status and m.state == InstrumentLiveState.in_use
    assert m.user == "B17"
    meter = parse_payload(payload(type="meter", data={"samples": 3, "kwh": 0.25}), now=NOW)
    assert (meter.meter.samples, meter.meter.kwh) == (3, 0.25)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "payload"),
        (b"[1,2]", "payload"),
        (b"\xff\xfe{", "payload"),
        (b'{"id": "m1"', "payload"),
        (payload(ts="2026-11-25T08:00:00"), "ts"),  # no offset
        (payload(ts=1764057600), "ts"),  # a number, not RFC 3339
        (payload(type="reboot"), "type"),
        (payload(id=""), "id"),
        (payload(id=7), "id"),
        (payload(id="x" * 129), "id"),
        (payload(user=""), "user"),
        (payload(extra=1), "extra"),
        (payload(type="status"), "state"),
        (payload(type="status", data={"state": "broken"}), "state"),
        (payload(type="meter", data={"samples": -1}), "samples"),
        (payload(data={"x": "\u0000"}), "NUL"),
        (b'{"id":"m1","ts":"2026-11-25T08:00:00Z","type":"heartbeat","data":{"x":NaN}}', "data"),
        (payload(ts="2026-09-01T08:00:00Z"), "older"),
        (payload(ts="2026-11-25T08:06:00Z"), "future"),
        (b"{" + b" " * 20000 + b"}", "larger"),
    ],
)
def test_bad_messages_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_payload(raw, now=NOW)
    assert reason in str(exc.value)


def test_time_bounds_are_relative_to_now() -> None:
    parse_payload(payload(ts=(NOW - timedelta(days=29)).isoformat()), now=NOW)
    parse_payload(payload(ts=(NOW + timedelta(minutes=4)).isoformat()), now=NOW)


def test_encode_round_trips() -> None:
    raw = encode(id="a", ts=NOW, type="session_start", user="B1", data={"sample": "S-1"})
    m = parse_payload(raw, now=NOW)
    assert (m.id, m.ts, m.type, m.user, m.data) == (
        "a",
        NOW,
        "session_start",
        "B1",
        {"sample": "S-1"},
    )


def test_presence() -> None:
    assert parse_presence(b"online") == "online"
    assert parse_presence(b"OFFLINE\n") == "offline"
    with pytest.raises(ProtocolError):
        parse_presence(b"maybe")
