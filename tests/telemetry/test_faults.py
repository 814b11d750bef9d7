"""Faults the ingest survives: killed mid-stream, PostgreSQL away for a while."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, func, select

from core.db import make_engine
from telemetry.ingest import IngestWorker
from telemetry.models import TelemetryEvent, UsageSession
from telemetry.protocol import encode, events_topic
from tests.telemetry.conftest import Net, publish_all, publisher, wait_until

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def stored(engine: Engine) -> int:
    """Events stored, not counting the probes that check a worker is subscribed."""
    with Session(engine) as s:
        return s.exec(
            select(func.count())
            .select_from(TelemetryEvent)
            .where(col(TelemetryEvent.message_id).not_like("probe-%"))
        ).one()


def wait_subscribed(engine: Engine, net: Net, root: str, timeout: float = 30) -> None:
    """Publish probes until one is stored: from then on the worker's session is subscribed."""
    pub = publisher()
    topic = events_topic(net.gateway.uid, net.codes[1], root)
    deadline = time.monotonic() + timeout
    n = 0
    try:
        while time.monotonic() < deadline:
            n += 1
            payload = encode(id=f"probe-{n}", ts=datetime.now(UTC), type="heartbeat")
            publish_all(pub, [(topic, payload)])
            with Session(engine) as s:
                if s.exec(select(func.count()).select_from(TelemetryEvent)).one():
                    return
            time.sleep(0.3)
        raise AssertionError("the worker never subscribed")
    finally:
        pub.loop_stop()


def samples(engine: Engine) -> int:
    with Session(engine) as s:
        return s.exec(select(func.coalesce(func.sum(UsageSession.samples), 0))).one()


def _diagnose(engine: Engine) -> str:
    from telemetry.models import DeadLetter

    with Session(engine) as s:
        reasons = s.exec(select(DeadLetter.reason)).all()
        ids = s.exec(select(TelemetryEvent.message_id)).all()
    missing = sorted(set(range(700)) - {int(i[1:]) for i in ids if i.startswith("m")})
    return f"stored {len(ids)}, dead letters {reasons[:5]}, missing {missing[:20]}..{missing[-5:]}"


def _stream(net: Net, root: str, n: int, per_second: float) -> threading.Thread:
    """Publish a session start then `n` one-sample meters, paced, from a background thread."""

    def run() -> None:
        pub = publisher()
        topic = events_topic(net.gateway.uid, net.codes[0], root)
        publish_all(pub, [(topic, encode(id="start", ts=datetime.now(UTC), type="session_start"))])
        for i in range(n):
            payload = encode(id=f"m{i}", ts=datetime.now(UTC), type="meter", data={"samples": 1})
            pub.publish(topic, payload, qos=1)
            time.sleep(1 / per_second)
        publish_all(pub, [(topic, encode(id="last", ts=datetime.now(UTC), type="heartbeat"))])
        pub.loop_stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _ingest_process(broker: str, root: str, client_id: str, group: str) -> subprocess.Popen:
    env = dict(os.environ, LABSHARE_MQTT_URL=broker)
    return subprocess.Popen(
        [sys.executable, "-m", "labshare.cli", "ingest", "--client-id", client_id,
         "--topic-root", root, "--group", group, "--reconcile-every", "0"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_killed_mid_stream_and_restarted_loses_nothing_and_stores_nothing_twice(
    engine: Engine, broker: str, net: Net, root: str
) -> None:
    client_id, group = f"kill-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    first = _ingest_process(broker, root, client_id, group)
    try:
        # A fresh session has no subscription yet: what is published before it is dropped.
        wait_subscribed(engine, net, root)
        total = 700
        stream = _stream(net, root, total, per_second=350)
        assert wait_until(lambda: stored(engine) > 150, timeout=20), first.stderr
        first.send_signal(signal.SIGKILL)  # no flush, no goodbye
        first.wait(10)
        killed_at = stored(engine)
        assert killed_at < total + 2, "killed too late to prove anything"
        time.sleep(1)  # messages keep arriving and queue in the broker for the session
        second = _ingest_process(broker, root, client_id, group)
        try:
            stream.join(30)
            assert wait_until(lambda: stored(engine) == total + 2, timeout=30), _diagnose(engine)
            assert samples(engine) == total  # each meter counted once, no more
            second.send_signal(signal.SIGTERM)  # a clean stop: flush and exit 0
            assert second.wait(15) == 0
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()


class TcpProxy:
    """A TCP proxy to PostgreSQL that can be stopped (every connection cut) and restarted."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(50)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_postgres_away_for_a_while_waits_retries_without_acking_and_catches_up(
    engine: Engine, backend: str, worker_factory: Callable[..., IngestWorker], net: Net, root: str
) -> None:
    if backend != "postgresql":
        pytest.skip("a database server outage is a PostgreSQL matter")
    url = make_url(engine.url.render_as_string(hide_password=False))
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    proxied = make_engine(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
    worker = worker_factory(engine=proxied)
    pub = publisher()
    topic = events_topic(net.gateway.uid, net.codes[0], root)

    def batch(prefix: str, n: int) -> list[tuple[str, bytes]]:
        return [
            (
                topic,
                encode(id=f"{prefix}{i}", ts=datetime.now(UTC), type="meter", data={"samples": 1}),
            )
            for i in range(n)
        ]

    try:
        publish_all(pub, [(topic, encode(id="start", ts=datetime.now(UTC), type="session_start"))])
        publish_all(pub, batch("a", 200))
        assert wait_until(lambda: stored(engine) == 201)
        proxy.stop()
        publish_all(pub, batch("b", 300))
        assert wait_until(lambda: worker.metrics.values["db_retries"] >= 2, timeout=20)
        assert stored(engine) == 201  # nothing got through
        assert worker.metrics.values["stored"] == 201  # and nothing was acknowledged
        proxy.start()
        assert wait_until(lambda: stored(engine) == 501, timeout=40), stored(engine)
        assert samples(engine) == 500

        # Stopped while the database is away: it gives up without acknowledging, and a
        # new worker on the same session gets those messages again.
        proxy.stop()
        publish_all(pub, batch("c", 100))
        assert wait_until(lambda: worker.metrics.values["received"] >= 601)
        worker.stop()
        time.sleep(3)
        proxy.start()
        worker_factory(engine=proxied, client_id=worker.config.client_id)
        assert wait_until(lambda: stored(engine) == 601, timeout=40), stored(engine)
        assert samples(engine) == 600
    finally:
        pub.loop_stop()
        proxy.stop()
        proxied.dispose()
