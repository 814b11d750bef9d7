"""`labshare ingest`: the MQTT worker that stores telemetry and acknowledges only after commit."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from core.db import session_scope
from telemetry.metrics import IngestMetrics
from telemetry.protocol import SHARED_GROUP, TOPIC_ROOT
from telemetry.reconcile import usage_reconcile
from telemetry.store import (
    BatchResult,
    Directory,
    Incoming,
    Prepared,
    commit_batch,
    dead_letter_raw,
    prepare_batch,
    write_batch,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str) -> BrokerAddress:
    """`mqtt://[user:pass@]host:port` as in LABSHARE_MQTT_URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"LABSHARE_MQTT_URL must look like mqtt://host:1883, not {url!r}")
    return BrokerAddress(
        parts.hostname,
        parts.port or 1883,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


@dataclass(slots=True)
class IngestConfig:
    mqtt_url: str
    client_id: str = "labshare-ingest-1"
    group: str = SHARED_GROUP
    root: str = TOPIC_ROOT
    batch_max: int = 2000
    batch_wait: float = 0.1  # seconds a partial batch waits for more messages
    receive_maximum: int = 20000  # unacknowledged messages the broker may have in flight to us
    session_expiry: int = 7 * 24 * 3600  # the broker keeps our session (and queue) this long
    reconcile_every: float = 60.0
    keepalive: int = 30
    # MQTT 5 and a shared subscription (Mosquitto, EMQX); the embedded demo broker (amqtt)
    # speaks 3.1.1 only and has no shared subscriptions, so it runs one worker without them.
    mqtt5: bool = True
    shared: bool = True


class IngestWorker:
    """Receives on the shared subscription, writes batches, acknowledges after each commit."""

    def __init__(self, engine: Engine, config: IngestConfig, metrics: IngestMetrics | None = None):
        self.engine = engine
        self.config = config
        self.metrics = metrics or IngestMetrics()
        self.directory = Directory()
        # paho's thread appends, the worker pops in bulk (deque operations are thread-safe).
        self.inbox: deque[Incoming] = deque()
        self._arrived = threading.Event()
        self._stop = threading.Event()
        self._generation = 0
        self._connected = threading.Event()
        self.subscribed = threading.Event()  # set once the broker confirmed our subscriptions
        self._unsubscribed = threading.Event()
        self._topics: list[str] = []
        self.broker = parse_mqtt_url(config.mqtt_url)
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        v5 = self.config.mqtt5
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # 3.1.1's persistent session
            manual_ack=True,
        )
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = lambda *_args: self.subscribed.set()
        client.on_unsubscribe = lambda *_args: self._unsubscribed.set()
        return client

    # -- MQTT callbacks (paho's network thread) --------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason, _p) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self._generation += 1
        if self._generation > 1:
            self.metrics.inc("reconnects")
        root = self.config.root
        # Events are shared among the workers; presence is retained, and retained messages
        # are never sent to shared subscriptions, so each worker takes presence itself.
        events = f"{root}/+/instruments/+/events"
        if self.config.shared:
            events = f"$share/{self.config.group}/{events}"
        self._topics = [events, f"{root}/+/status"]
        client.subscribe([(t, 1) for t in self._topics])
        self._connected.set()
        log.info(
            "connected to %s:%s as %s", self.broker.host, self.broker.port, self.config.client_id
        )

    def _on_disconnect(self, _c: object, _u: object, _f: object, reason, _p) -> None:  # type: ignore[no-untyped-def]
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        self.metrics.values["received"] += 1  # only this thread writes it
        self.inbox.append(
            Incoming(
                message.mid, message.qos, message.topic, bytes(message.payload), self._generation
            )
        )
        if not self._arrived.is_set():
            self._arrived.set()

    # -- the worker's own thread -----------------------------------------------------------
    def connect(self) -> None:
        """Connect with backoff until the broker answers (or stop() is called)."""
        props = None
        if self.config.mqtt5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.config.session_expiry
            props.ReceiveMaximum = self.config.receive_maximum
        delay = 0.5
        while not self._stop.is_set():
            try:
                if props is not None:
                    self.client.connect(
                        self.broker.host, self.broker.port, keepalive=self.config.keepalive,
                        clean_start=False, properties=props,
                    )  # fmt: skip
                else:
                    self.client.connect(
                        self.broker.host, self.broker.port, keepalive=self.config.keepalive
                    )
                break
            except OSError as exc:
                log.warning("broker %s:%s unreachable (%s); retrying in %.1fs",
                            self.broker.host, self.broker.port, exc, delay)  # fmt: skip
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        self.client.loop_start()

    def stop(self) -> None:
        """Ask the worker to flush what it holds and exit."""
        self._stop.set()

    def _stop_receiving(self, timeout: float = 3.0) -> None:
        if self._topics and self._connected.is_set():
            self.client.unsubscribe(self._topics)
            self._unsubscribed.wait(timeout)
            time.sleep(0.2)  # what the broker had already put on the wire arrives meanwhile

    def _take(self) -> list[Incoming]:
        """Up to batch_max messages, waiting batch_wait for a partial batch to fill."""
        if not self.inbox:
            self._arrived.wait(0.5)
            self._arrived.clear()
            if not self.inbox:
                return []
        deadline = time.monotonic() + self.config.batch_wait
        while len(self.inbox) < self.config.batch_max and time.monotonic() < deadline:
            time.sleep(0.005)
        inbox = self.inbox
        return [inbox.popleft() for _ in range(min(len(inbox), self.config.batch_max))]

    def _write(self, batch: list[Incoming], prepared: Prepared | None) -> BatchResult | None:
        """Write until it succeeds; None if asked to stop while the database was away."""
        delay = 0.5
        while True:
            try:
                try:
                    if prepared is not None:
                        return commit_batch(self.engine, prepared)
                    return write_batch(self.engine, self.directory, batch, root=self.config.root)
                except (OperationalError, InterfaceError):
                    raise
                except Exception:
                    # Not an outage: some message the database (or our code) refuses.
                    log.exception("batch refused; storing its messages one by one")
                    return self._write_one_by_one(batch)
            except (OperationalError, InterfaceError) as exc:
                # An outage, a lost connection, a deadlock or a busy SQLite: nothing was
                # stored and nothing acknowledged, so waiting and retrying is always safe.
                self.metrics.inc("db_retries")
                reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc) else "?"
                log.warning("database unavailable (%s); retrying in %.1fs", reason, delay)
                if self._stop.is_set():
                    return None  # shutting down: the broker keeps the messages unacknowledged
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _write_one_by_one(self, batch: list[Incoming]) -> BatchResult:
        """Find the messages that cannot be stored and dead-letter them; store the rest."""
        total = BatchResult()
        for item in batch:
            try:
                r = write_batch(self.engine, self.directory, [item], root=self.config.root)
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                log.warning("message refused (%s); dead-lettering it", exc)
                dead_letter_raw(self.engine, item, f"store: {type(exc).__name__}")
                total.dead += 1
                continue
            total.stored += r.stored
            total.duplicates += r.duplicates
            total.dead += r.dead
            total.presence += r.presence
            total.lags += r.lags
        return total

    def _ack(self, batch: list[Incoming]) -> None:
        for item in batch:
            # An ack belongs to the connection that delivered the message; after a reconnect
            # the broker redelivers it, and the de-duplication makes that harmless.
            if item.qos > 0 and item.generation == self._generation:
                self.client.ack(item.mid, item.qos)

    def flush(self, batch: list[Incoming], prepared: Prepared | None = None) -> bool:
        """Store and acknowledge one batch; False if it could not be stored."""
        result = self._write(batch, prepared)
        if result is None:
            return False
        self._ack(batch)
        m = self.metrics
        m.inc("stored", result.stored)
        m.inc("duplicates", result.duplicates)
        m.inc("dead_letters", result.dead)
        m.inc("presence", result.presence)
        m.inc("batches")
        m.batch_size.observe(len(batch))
        for lag in result.lags:
            m.lag.observe(lag)
        m.recent_lags.values.extend(result.lags)
        m.queue_depth = len(self.inbox)
        return True

    def reconcile(self) -> None:
        """Close silent sessions, mark no-shows and completed bookings."""
        try:
            with session_scope(engine=self.engine) as session:
                r = usage_reconcile(session)
            if r.closed_silent or r.no_shows or r.completed:
                log.info("reconciled: %s", r)
        except SQLAlchemyError as exc:
            log.warning("reconcile failed: %s", exc)

    def _prepare(self, batch: list[Incoming]) -> Prepared | None:
        try:
            return prepare_batch(self.engine, self.directory, batch, root=self.config.root)
        except Exception:
            return None  # the writer prepares it again, with its retries and fallbacks

    def _writer(self) -> None:
        """The second stage: commits batches in order while the first parses the next."""
        gave_up = False
        while True:
            item = self._pending.get()
            if item is None:
                return
            if item == "reconcile":
                if not gave_up:
                    self.reconcile()
                continue
            batch, prepared = item
            # After giving up (stopping while the database is away) nothing more is written
            # or acknowledged: the broker keeps those messages for the next run.
            if not gave_up and not self.flush(batch, prepared):
                gave_up = True

    def run(self) -> None:
        """Run until stop(): connect, then write batches; on stop, flush and disconnect."""
        self.connect()
        # One batch is parsed while the previous one is being committed (psycopg releases
        # the GIL while it waits on the server), so CPU and database overlap.
        self._pending: queue.Queue = queue.Queue(maxsize=1)
        writer = threading.Thread(target=self._writer, name="ingest-writer", daemon=True)
        writer.start()
        next_reconcile = time.monotonic() + random.uniform(1, 5)
        try:
            while not self._stop.is_set():
                batch = self._take()
                if batch:
                    self._pending.put((batch, self._prepare(batch)))
                if self.config.reconcile_every and time.monotonic() >= next_reconcile:
                    self._pending.put("reconcile")
                    next_reconcile = time.monotonic() + self.config.reconcile_every
            # Clean shutdown: first ask the broker to stop sending (a message that arrived
            # after the last batch would be received and never stored), then store and
            # acknowledge everything that has arrived, then leave.
            self._stop_receiving()
            rest = [self.inbox.popleft() for _ in range(len(self.inbox))]
            for i in range(0, len(rest), self.config.batch_max):
                chunk = rest[i : i + self.config.batch_max]
                self._pending.put((chunk, self._prepare(chunk)))
        finally:
            self._pending.put(None)
            writer.join()
            self.client.disconnect()
            self.client.loop_stop()
