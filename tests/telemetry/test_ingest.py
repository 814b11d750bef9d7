"""The ingest end to end on the machine's Mosquitto: publish with paho, find the rows."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from telemetry.ingest import IngestWorker
from telemetry.models import DeadLetter, Gateway, Presence, TelemetryEvent, UsageSession
from telemetry.protocol import encode, events_topic, presence_topic
from tests.telemetry.conftest import Net, publish_all, publisher, wait_until

pytestmark = pytest.mark.mqtt


def count(engine: Engine, table: type) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(table)).one()


def test_end_to_end(
    worker_factory: Callable[..., IngestWorker], engine: Engine, net: Net, root: str
) -> None:
    worker = worker_factory()
    pub = publisher()
    topic = events_topic(net.gateway.uid, net.codes[0], root)
    now = datetime.now(UTC)
    start = encode(id="e1", ts=now - timedelta(seconds=5), type="session_start", user="B9")
    publish_all(pub, [
        (presence_topic(net.gateway.uid, root), b"online"),
        (topic, start),
        (topic, start),  # a redelivery: stored once
        (topic, encode(id="e2", ts=now, type="meter", data={"samples": 4, "kwh": 1.5})),
        (topic, b'{"id": "e3"}'),
        (events_topic(net.gateway.uid, "NOT-OURS", root), encode(id="e4", ts=now, type="heartbeat")),
    ])  # fmt: skip
    assert wait_until(lambda: worker.metrics.values["received"] >= 6)
    assert wait_until(lambda: count(engine, TelemetryEvent) == 2 and count(engine, DeadLetter) == 2)
    with Session(engine) as s:
        usage = s.exec(select(UsageSession)).one()
        assert (usage.user_badge, usage.samples, usage.kwh, usage.end_at) == ("B9", 4, 1.5, None)
        gateway = s.get(Gateway, net.gateway.id)
        assert gateway.presence == Presence.online and gateway.last_seen_at is not None
        reasons = sorted(s.exec(select(DeadLetter.reason)).all())
    assert ("does not serve" in reasons[0] and reasons[1].startswith("ts:")) or "ts" in reasons[1]
    assert worker.metrics.values["duplicates"] == 1
    assert "labshare_ingest_stored_total 2" in worker.metrics.render()
    publish_all(pub, [(presence_topic(net.gateway.uid, root), b"")], retain=True)
    pub.loop_stop()


def test_two_workers_split_the_load_and_store_each_once(
    worker_factory: Callable[..., IngestWorker], engine: Engine, net: Net, root: str
) -> None:
    a, b = worker_factory(), worker_factory()
    pub = publisher()
    now = datetime.now(UTC)
    messages = [
        (events_topic(net.gateway.uid, net.codes[i % 3], root),
         encode(id=f"m{i}", ts=now, type="meter", data={"samples": 1}))
        for i in range(600)
    ]  # fmt: skip
    publish_all(pub, messages)
    assert wait_until(lambda: count(engine, TelemetryEvent) == 600, timeout=30)
    received = (a.metrics.values["received"], b.metrics.values["received"])
    assert sum(received) == 600, received
    assert min(received) > 100, f"the load was not split: {received}"
    assert wait_until(lambda: a.metrics.values["stored"] + b.metrics.values["stored"] == 600)
    pub.loop_stop()


def _hostile_payloads() -> st.SearchStrategy[bytes]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    now = datetime.now(UTC)
    near_valid = st.fixed_dictionaries(
        {
            "id": st.one_of(
                st.text(max_size=140), st.integers(), st.sampled_from(["dup-1", "dup-2"])
            ),
            "ts": st.one_of(
                st.just(now.isoformat()),
                st.datetimes().map(lambda d: d.isoformat()),
                st.text(max_size=30),
                st.integers(),
            ),
            "type": st.one_of(
                st.sampled_from(["session_start", "session_end", "status", "meter", "heartbeat"]),
                st.text(max_size=12),
            ),
        },
        optional={"user": st.one_of(st.text(max_size=80), st.integers()), "data": json_values},
    ).map(lambda d: json.dumps(d, allow_nan=True).encode())
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        near_valid,
        near_valid,
        st.text(max_size=200).map(str.encode),
    )


def test_thousands_of_hostile_payloads_are_stored_or_dead_lettered(
    worker_factory: Callable[..., IngestWorker], engine: Engine, net: Net, root: str
) -> None:
    worker = worker_factory()
    m = worker.metrics.values
    pub = publisher()
    rng = random.Random(4)
    topics = [events_topic(net.gateway.uid, c, root) for c in net.codes]
    topics.append(events_topic("gw-stranger", net.codes[0], root))
    published = 0

    @settings(
        max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(payloads=st.lists(_hostile_payloads(), min_size=10, max_size=40))
    def publish_some(payloads: list[bytes]) -> None:
        nonlocal published
        publish_all(pub, [(rng.choice(topics), p) for p in payloads])
        published += len(payloads)

    publish_some()
    assert published >= 1000
    accounted = lambda: m["stored"] + m["duplicates"] + m["dead_letters"]  # noqa: E731
    assert wait_until(lambda: accounted() >= published, timeout=60), (published, m)
    assert m["received"] == published and accounted() == published
    assert count(engine, TelemetryEvent) == m["stored"]
    assert count(engine, DeadLetter) == m["dead_letters"]
    # And it still works.
    stored = m["stored"]
    publish_all(pub, [(topics[0], encode(id="still-ok", ts=datetime.now(UTC), type="heartbeat"))])
    assert wait_until(lambda: m["stored"] == stored + 1)
    pub.loop_stop()
