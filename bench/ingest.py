"""Ingest benchmark: end-to-end stored messages/s for one worker against a bare paho ceiling.

    .venv/bin/python bench/ingest.py [--messages 150000] [--database-url URL] [--broker URL]

On PostgreSQL with the 12,600-instrument demo network (seeded if the database is empty),
a separate publisher process sends QoS 1 messages as fast as the broker takes them, for
every instrument in turn (one gateway per lab). Two runs over the same messages:

1. ceiling: a bare paho subscriber process that only counts (QoS 1, on the shared group);
2. ingest: one `labshare ingest` worker process storing them (COPY, ack after commit).

Reported: messages/s for each (from the publisher's first message to the last one counted or
stored), the ratio, ingest lag p50/p90/p99 (message ts to commit, from the worker's own
summary), the worker's peak RSS (VmHWM), and the publisher's own rate. The broker is a
private Mosquitto (same binary as the machine's) whose queue is unbounded: the machine's
default `max_queued_messages 1000` would drop messages whenever the worker falls behind.
Results go to bench/results/ingest-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/labshare_bench_telemetry"


# -- child processes -------------------------------------------------------------------------
def run_publisher(host: str, port: int, plan_file: str, root: str, messages: int) -> None:
    """Publish `messages` QoS 1 messages round the plan's instruments, as fast as possible."""
    import paho.mqtt.client as mqtt

    from telemetry.protocol import encode, events_topic

    plan = json.loads(Path(plan_file).read_text())
    topics = [events_topic(uid, code, root) for uid, code in plan]
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}"
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
    client.connect(host, port)
    client.loop_start()
    run = uuid.uuid4().hex[:6]
    open_sessions: set[int] = set()
    start = time.time()
    info = None
    for i in range(messages):
        k = i % len(topics)
        now = datetime.now(UTC)
        if (
            i % 200 == 0
        ):  # 0.5% session starts and ends (real life: far fewer), the rest meters and heartbeats
            kind = "session_end" if k in open_sessions else "session_start"
            open_sessions.symmetric_difference_update({k})
            payload = encode(id=f"{run}-{i}", ts=now, type=kind, user=f"B{k % 700}")
        elif i % 3 == 0:
            payload = encode(
                id=f"{run}-{i}", ts=now, type="meter", data={"samples": 1, "kwh": 0.01}
            )
        else:
            payload = encode(id=f"{run}-{i}", ts=now, type="heartbeat")
        # No more outstanding than the in-flight window: a message is stamped (ts) when the
        # broker can take it, not left waiting in paho's own queue (that would count as lag).
        while i - acked[0] >= 1000:
            time.sleep(0.001)
        info = client.publish(topics[k], payload, qos=1)
    if info is not None:
        info.wait_for_publish(timeout=600)
    end = time.time()
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"start": start, "end": end, "messages": messages}), flush=True)


def run_counter(host: str, port: int, root: str, messages: int, ready_file: str) -> None:
    """The ceiling: a bare paho subscriber that only counts messages (and acks them)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    state = {"n": 0, "first": 0.0, "last": 0.0}

    def on_message(_c: object, _u: object, _m: object) -> None:
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = time.time()
        state["last"] = time.time()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-count-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.on_message = on_message
    client.on_subscribe = lambda *_a: Path(ready_file).write_text("ready")
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 20000
    client.connect(host, port, properties=props)
    client.subscribe(f"$share/bench-ceiling/{root}/+/instruments/+/events", qos=1)
    client.loop_start()
    deadline = time.time() + 600
    while state["n"] < messages and time.time() < deadline:
        time.sleep(0.01)
    client.loop_stop()
    print(json.dumps(state), flush=True)


# -- the driver ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(tmp: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\n"
        f"user {os.environ.get('USER', 'root')}\n"
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the private mosquitto did not start")


def prepare(database_url: str) -> list[tuple[str, str]]:
    """Seed if empty, make one gateway per lab; returns (gateway uid, instrument code) pairs."""
    os.environ["LABSHARE_DATABASE_URL"] = database_url
    from sqlmodel import Session, col, func, select

    import migrations
    from core.db import make_engine
    from instruments.models import Instrument, Lab
    from telemetry.models import Gateway
    from telemetry.service import gateway_create

    migrations.upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as s:
        if s.exec(select(func.count()).select_from(Instrument)).one() == 0:
            # The catalog only, as when the recorded figures were taken (no demo history).
            seed = [sys.executable, "-m", "labshare.cli", "seed", "--no-history"]
            subprocess.run(seed, cwd=REPO, check=True)
    with Session(engine) as s:
        uids: dict[int, str] = {}
        for lab in s.exec(select(Lab).order_by(col(Lab.id))):
            gw = s.exec(
                select(Gateway).where(Gateway.lab_id == lab.id, Gateway.name == "bench gateway")
            ).first()
            if gw is None:
                gw, _ = gateway_create(s, lab_code=lab.code, name="bench gateway")
            uids[lab.id] = gw.uid
        s.commit()
        plan = [
            (uids[lab_id], code)
            for code, lab_id in s.exec(
                select(Instrument.code, Instrument.lab_id).order_by(col(Instrument.id))
            )
        ]
    engine.dispose()
    return plan


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def publisher(host: str, port: int, plan_file: str, root: str, messages: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--publish", host, str(port), plan_file, root, str(messages)],
        stdout=subprocess.PIPE,
        text=True,
    )


def start_worker(
    env: dict, client_id: str, root: str, batch_max: int
) -> tuple[subprocess.Popen, int]:
    metrics_port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "labshare.cli", "ingest", "--client-id", client_id,
         "--topic-root", root, "--group", "bench", "--metrics-port", str(metrics_port),
         "--reconcile-every", "0", "--batch-max", str(batch_max)],
        cwd=REPO, env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return worker, metrics_port


def stop(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()


def handled(metrics: dict[str, float]) -> float:
    return sum(
        metrics[f"labshare_ingest_{k}_total"] for k in ("stored", "duplicates", "dead_letters")
    )


def probe_until_stored(host: str, port: int, plan: list, root: str, metrics_port: int) -> None:
    """Publish probes until the worker stores one: its subscription is in place."""
    import paho.mqtt.client as mqtt

    from telemetry.protocol import encode, events_topic

    probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    probe.connect(host, port)
    probe.loop_start()
    for _i in range(300):
        probe.publish(events_topic(plan[0][0], plan[0][1], root),
                      encode(id=f"probe-{uuid.uuid4().hex}", ts=datetime.now(UTC), type="heartbeat"), qos=1)  # fmt: skip
        time.sleep(0.1)
        try:
            if scrape(metrics_port).get("labshare_ingest_stored_total", 0) > 0:
                break
        except OSError:
            pass
    probe.loop_stop()


def wait_done(metrics_port: int, base: dict, m: int, pub: subprocess.Popen | None) -> float | None:
    """When `m` more messages were handled; None if it stalled for 30 s."""
    last, stall = handled(base), time.time()
    while True:
        time.sleep(0.05)
        done = handled(scrape(metrics_port))
        if done - handled(base) >= m:
            return time.time()
        if done != last:
            last, stall = done, time.time()
        elif (pub is None or pub.poll() is not None) and time.time() - stall > 30:
            return None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=150_000)
    ap.add_argument("--database-url", default=DEFAULT_DB)
    ap.add_argument("--broker", default="private", help="'private' or mqtt://host:port")
    ap.add_argument("--batch-max", type=int, default=5000)
    args = ap.parse_args()
    m = args.messages
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker_proc = None
    if args.broker == "private":
        broker_proc, port = start_broker(tmp)
        host = "127.0.0.1"
    else:
        from telemetry.ingest import parse_mqtt_url

        b = parse_mqtt_url(args.broker)
        host, port = b.host, b.port
    try:
        print(f"preparing {args.database_url.rsplit('/', 1)[-1]} ...", flush=True)
        plan = prepare(args.database_url)
        plan_file = tmp / "plan.json"
        plan_file.write_text(json.dumps(plan))
        print(
            f"{len(plan)} instruments, {len({u for u, _ in plan})} gateways; {m} messages per run",
            flush=True,
        )

        # 1. The ceiling.
        root = f"bench-{uuid.uuid4().hex[:6]}/labshare/v1/gateways"
        ready = tmp / "counter.ready"
        counter = subprocess.Popen(
            [sys.executable, __file__, "--count", host, str(port), root, str(m), str(ready)],
            stdout=subprocess.PIPE,
            text=True,
        )
        while not ready.exists():
            time.sleep(0.05)
        pub = publisher(host, port, str(plan_file), root, m)
        pub_stats = json.loads(pub.communicate()[0])
        counted = json.loads(counter.communicate()[0])
        ceiling = counted["n"] / (counted["last"] - pub_stats["start"])
        print(
            f"ceiling: {counted['n']} counted, {ceiling:,.0f} msg/s "
            f"(publisher alone {m / (pub_stats['end'] - pub_stats['start']):,.0f} msg/s)",
            flush=True,
        )

        # 2. One ingest worker, with the publisher running at full speed.
        root = f"bench-{uuid.uuid4().hex[:6]}/labshare/v1/gateways"
        client_id = f"bench-{uuid.uuid4().hex[:6]}"
        env = dict(
            os.environ,
            LABSHARE_DATABASE_URL=args.database_url,
            LABSHARE_MQTT_URL=f"mqtt://{host}:{port}",
        )
        worker, metrics_port = start_worker(env, client_id, root, args.batch_max)
        try:
            probe_until_stored(host, port, plan, root, metrics_port)
            base = scrape(metrics_port)
            pub = publisher(host, port, str(plan_file), root, m)
            finished_at = wait_done(metrics_port, base, m, pub)
            pub_stats = json.loads(pub.communicate()[0])
            cur = scrape(metrics_port)
            done = handled(cur) - handled(base)
            rate = done / ((finished_at or time.time()) - pub_stats["start"])
            batches = cur["labshare_ingest_batches_total"] - base["labshare_ingest_batches_total"]
            result = {
                "when": datetime.now(UTC).isoformat(),
                "database": "postgresql",
                "broker": "private mosquitto 2.0.11 (unbounded queue)"
                if broker_proc
                else args.broker,
                "instruments": len(plan),
                "gateways": len({u for u, _ in plan}),
                "messages": m,
                "stored": int(
                    cur["labshare_ingest_stored_total"] - base["labshare_ingest_stored_total"]
                ),
                "dead_letters": int(
                    cur["labshare_ingest_dead_letters_total"]
                    - base["labshare_ingest_dead_letters_total"]
                ),
                "ingest_msgs_per_s": round(rate),
                "ceiling_msgs_per_s": round(ceiling),
                "ratio": round(rate / ceiling, 3),
                "publisher_msgs_per_s": round(m / (pub_stats["end"] - pub_stats["start"])),
                "lag_p50_s": cur['labshare_ingest_recent_lag_seconds{quantile="0.5"}'],
                "lag_p90_s": cur['labshare_ingest_recent_lag_seconds{quantile="0.9"}'],
                "lag_p99_s": cur['labshare_ingest_recent_lag_seconds{quantile="0.99"}'],
                "mean_batch": round(done / max(batches, 1)),
                "worker_peak_rss_mb": round(peak_rss_mb(worker.pid), 1),
                "targets": {"ingest_msgs_per_s": 12_600, "ratio": 0.5, "worker_peak_rss_mb": 200},
                "complete": finished_at is not None,
            }
        finally:
            stop(worker)

        # 3. The worker's own capacity: a backlog queued in its session while it was down.
        pub = publisher(host, port, str(plan_file), root, m)
        pub.communicate()
        worker, metrics_port = start_worker(env, client_id, root, args.batch_max)
        try:
            first, base = None, None
            while first is None:
                try:
                    cur = scrape(metrics_port)
                    if cur["labshare_ingest_received_total"] > 0:
                        first, base = time.time(), {k: 0.0 for k in cur}
                except OSError:
                    pass
                time.sleep(0.02)
            finished_at = wait_done(metrics_port, base, m, None)
            result["backlog_drain_msgs_per_s"] = round(m / ((finished_at or time.time()) - first))
            result["backlog_peak_rss_mb"] = round(peak_rss_mb(worker.pid), 1)
        finally:
            stop(worker)
        print(json.dumps(result, indent=2))
        out = REPO / "bench" / "results" / f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {out.relative_to(REPO)}")
    finally:
        if broker_proc is not None:
            broker_proc.terminate()
            broker_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        run_publisher(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--count":
        run_counter(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        main()
