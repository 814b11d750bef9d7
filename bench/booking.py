"""Benchmark: booking on PostgreSQL with the 12,600-instrument network and a year of history.

Builds its own database (default labshare_bench_booking): migrations, `seed_network`, then
over 1,000,000 bookings with generate_series SQL (a past year, plus confirmed bookings in
the coming weeks). Then, through the served API (`labshare serve --workers 2`):

1. booking throughput: 32 concurrent clients create bookings, a third of them conflicting;
   bookings/s, p50/p99 latency, and the database's own ceiling for the same inserts into the
   same constrained table (32 psycopg connections, one INSERT per transaction);
2. /slots over a category of a few hundred instruments for 14 days: p50/p95;
3. availability of one instrument for 90 days: p50/p95; the instrument's iCalendar feed.

    .venv/bin/python bench/booking.py [--requests N] [--skip-setup] [--db NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("LABSHARE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-key-bench-secret-key-0123456789"
# Each run books on its own sample of instruments, so reruns on one database find free time.
RUN_SEED = int(time.time())

HISTORY = """
WITH u AS (SELECT array_agg(id ORDER BY id) AS ids FROM "user" WHERE role = 'researcher'),
ins AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM instrument)
INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, purpose, version,
                     created_at, updated_at)
SELECT ins.id,
       u.ids[1 + (ins.n * 7 + d + 1000) %% array_length(u.ids, 1)],
       date_trunc('day', now()) + d * interval '1 day' + interval '1 hour' * (1 + (ins.n %% 4) * 2),
       date_trunc('day', now()) + d * interval '1 day' + interval '1 hour' * (3 + (ins.n %% 4) * 2),
       CASE WHEN d < 0 THEN 'completed' ELSE 'confirmed' END, '', 1, now(), now()
FROM ins, u, generate_series(%(first_day)s::int, %(last_day)s::int) d
WHERE (ins.n + d) %% %(every)s::int = 0
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(values, 0.50) * 1000, 2),
        "p95_ms": round(pct(values, 0.95) * 1000, 2),
        "p99_ms": round(pct(values, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2) if values else float("nan"),
    }


def setup(url: str, dsn: str, db: str, instruments: int) -> dict[str, object]:
    """A fresh database with the network and a year of bookings."""
    import migrations
    from core.db import make_engine, session_scope
    from instruments.seed import seed_network

    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    started = time.monotonic()
    migrations.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine=engine) as session:
        seed_network(session, instruments=instruments)
    engine.dispose()
    seeded = time.monotonic() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.monotonic()
        # A past year in one statement, 60 days ahead in another: ~1.3 million rows.
        conn.execute(HISTORY, {"first_day": -365, "last_day": -1, "every": 4})
        conn.execute(HISTORY, {"first_day": 1, "last_day": 60, "every": 4})
        conn.execute("VACUUM ANALYZE")
        loaded = time.monotonic() - started
        total = conn.execute("SELECT count(*) FROM booking").fetchone()[0]
        active = conn.execute(
            "SELECT count(*) FROM booking WHERE status IN ('pending', 'confirmed')"
        ).fetchone()[0]
    print(
        f"setup: seeded in {seeded:.1f} s; {total:,} bookings ({active:,} active) in {loaded:.1f} s"
    )
    return {
        "bookings": total,
        "active": active,
        "seed_s": round(seeded, 1),
        "history_s": round(loaded, 1),
    }


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        if int(entry.name) == pid or ppid == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LABSHARE_DATABASE_URL": url, "LABSHARE_SECRET_KEY": SECRET}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/labshare"), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/tmp",
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the server did not come up")


def plan_slots(
    url: str, count: int, days: tuple[int, int], seed: int
) -> list[tuple[int, datetime, datetime]]:
    """`count` distinct free, rule-abiding slots on open instruments without approval,
    qualification or quota, spread across instruments."""
    from sqlmodel import select

    from booking.timeline import grid_starts, load_timelines
    from core.db import make_engine, session_scope
    from instruments.models import Instrument, InstrumentStatus

    engine = make_engine(url)
    now = datetime.now(UTC)
    lo, hi = now + timedelta(days=days[0]), now + timedelta(days=days[1])
    per_instrument: list[list[tuple[int, datetime, datetime]]] = []
    with session_scope(engine=engine, write=False) as session:
        instruments = session.exec(
            select(Instrument).where(
                Instrument.status == InstrumentStatus.active,
                Instrument.approval_required == False,  # noqa: E712
                Instrument.qualification_required == False,  # noqa: E712
                Instrument.weekly_quota_hours == None,  # noqa: E711
                Instrument.horizon_days >= days[1] + 1,
                Instrument.lead_minutes <= days[0] * 24 * 60 - 60,
            )
        ).all()
        rng = random.Random(seed)
        instruments = rng.sample(list(instruments), min(len(instruments), max(50, count // 20)))
        timelines = load_timelines(session, instruments, lo, hi)
        for timeline in timelines.values():
            inst = timeline.instrument
            minutes = max(inst.min_minutes, inst.slot_step_minutes)
            length = timedelta(minutes=minutes)
            slots = []
            for gap in timeline.free(lo, hi):
                cursor = gap[0]
                while True:
                    start = next(
                        grid_starts((cursor, gap[1]), length, inst.slot_step_minutes, timeline.tz),
                        None,
                    )
                    if start is None:
                        break
                    slots.append((inst.id, start, start + length))
                    cursor = start + length
            rng.shuffle(slots)
            per_instrument.append(slots)
    engine.dispose()
    out: list[tuple[int, datetime, datetime]] = []
    while len(out) < count and any(per_instrument):
        for slots in per_instrument:
            if slots and len(out) < count:
                out.append(slots.pop())
    return out


def with_conflicts(unique: list, rng: random.Random) -> list:
    """Two thirds unique, one third repeating an earlier unique request a little later."""
    mixed = list(unique)
    for _i in range(len(unique) // 2):
        original = rng.randrange(len(unique))
        mixed.insert(min(len(mixed), original + rng.randrange(5, 200)), unique[original])
    return mixed


def tokens(url: str, n: int) -> list[str]:
    from sqlmodel import select

    from core.db import make_engine, session_scope
    from core.models import Role, User
    from core.security import create_access_token

    engine = make_engine(url)
    with session_scope(engine=engine, write=False) as session:
        ids = session.exec(select(User.id).where(User.role == Role.researcher).limit(n)).all()
    engine.dispose()
    return [create_access_token(i) for i in ids]


def run_clients(base: str, jobs: list, clients: int, call) -> tuple[list, float]:
    """Run `call(http, job, worker)` over jobs from `clients` threads; returns the results."""
    results: list = [None] * len(jobs)
    counter = iter(range(len(jobs)))
    lock = threading.Lock()

    def worker(index: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                results[n] = call(http, jobs[n], index)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return results, time.monotonic() - started


def bench_throughput(
    base: str, url: str, requests: int, clients: int, server_pid: int
) -> dict[str, object]:
    rng = random.Random(1)
    unique = plan_slots(url, requests * 2 // 3, (2, 9), seed=RUN_SEED)
    jobs = with_conflicts(unique, rng)[:requests]
    heads = [{"Authorization": f"Bearer {t}"} for t in tokens(url, clients)]

    def book(http: httpx.Client, job, index: int):
        instrument_id, start, end = job
        t = time.perf_counter()
        r = http.post(
            "/api/v1/bookings",
            headers=heads[index % len(heads)],
            json={
                "instrument_id": instrument_id,
                "start": start.isoformat(),
                "end": end.isoformat(),
            },
        )
        return r.status_code, time.perf_counter() - t

    # Warm both workers and their pools on other slots first.
    warm = plan_slots(url, 200, (10, 12), seed=RUN_SEED + 1)
    run_clients(base, warm, clients, book)
    server_cpu, client_cpu = tree_cpu_seconds(server_pid), time.process_time()
    results, wall = run_clients(base, jobs, clients, book)
    server_cpu = tree_cpu_seconds(server_pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    codes = [c for c, _ in results]
    ok = codes.count(201)
    latencies = [t for _, t in results]
    out = {
        "requests": len(jobs),
        "clients": clients,
        "created": ok,
        "refused_409": codes.count(409),
        "other": len(codes) - ok - codes.count(409),
        "expected_created": len(set(jobs)),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(jobs) / wall, 1),
        "bookings_per_s": round(ok / wall, 1),
        **ms(latencies),
        "created_latency": ms([t for c, t in results if c == 201]),
        "server_cpu_ms_per_request": round(server_cpu / len(jobs) * 1000, 2),
        "client_cpu_ms_per_request": round(client_cpu / len(jobs) * 1000, 2),
        "load_average": os.getloadavg(),
    }
    print(
        f"1. API: {out['bookings_per_s']} bookings/s ({out['requests_per_s']} requests/s, "
        f"{ok} created, {out['refused_409']} refused, {out['other']} other); "
        f"p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms"
    )
    return out


def bench_ceiling(url: str, dsn: str, requests: int, clients: int) -> dict[str, object]:
    """The same mix of inserts straight into the constrained table over psycopg."""
    rng = random.Random(2)
    unique = plan_slots(url, requests * 2 // 3, (10, 13), seed=RUN_SEED + 2)
    jobs = with_conflicts(unique, rng)[:requests]
    with psycopg.connect(dsn) as conn:
        users = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM \"user\" WHERE role = 'researcher' LIMIT %s", (clients,)
            )
        ]
    counter = iter(range(len(jobs)))
    lock = threading.Lock()
    outcome: list[tuple[bool, float]] = []

    def worker(index: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                instrument_id, start, end = jobs[n]
                t = time.perf_counter()
                try:
                    conn.execute(
                        "INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, "
                        "purpose, version, created_at, updated_at) "
                        "VALUES (%s, %s, %s, %s, 'confirmed', '', 1, now(), now())",
                        (instrument_id, users[index % len(users)], start, end),
                    )
                    ok = True
                except psycopg.errors.ExclusionViolation:
                    ok = False
                with lock:
                    outcome.append((ok, time.perf_counter() - t))

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.monotonic() - started
    ok = sum(1 for o, _ in outcome if o)
    out = {
        "requests": len(jobs),
        "created": ok,
        "wall_s": round(wall, 2),
        "bookings_per_s": round(ok / wall, 1),
        **ms([t for _, t in outcome]),
    }
    print(
        f"   ceiling (psycopg, {clients} connections): {out['bookings_per_s']} bookings/s; "
        f"p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms"
    )
    return out


def timed_gets(base: str, paths: list[str], clients: int = 1) -> dict[str, object]:
    def get(http: httpx.Client, path: str, index: int):
        t = time.perf_counter()
        r = http.get(path)
        return r.status_code, time.perf_counter() - t, len(r.content)

    run_clients(base, paths[:20], clients, get)  # warm
    results, _wall = run_clients(base, paths, clients, get)
    codes = {c for c, _, _ in results}
    return {
        "requests": len(paths),
        "statuses": sorted(codes),
        **ms([t for _, t, _ in results]),
        "mean_bytes": int(statistics.fmean(b for _, _, b in results)),
    }


def bench_reads(base: str, dsn: str, n: int) -> dict[str, object]:
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        category, size = conn.execute(
            "SELECT c.code, count(*) FROM instrument i JOIN category c ON c.id = i.category_id "
            "GROUP BY c.code HAVING count(*) BETWEEN 150 AND 600 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        ids = [r[0] for r in conn.execute("SELECT id FROM instrument ORDER BY random() LIMIT 200")]
    rng = random.Random(3)
    start = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    slot_paths = [
        f"/api/v1/slots?category={category}&start={(start + timedelta(hours=rng.randrange(48))).isoformat()}"
        f"&end={(start + timedelta(days=14)).isoformat()}&duration_minutes={rng.choice((60, 120))}"
        for _ in range(n)
    ]
    slots = timed_gets(base, [p.replace("+00:00", "Z") for p in slot_paths])
    slots.update(category=category, instruments=size)
    print(
        f"2. /slots ({category}, {size} instruments, 14 days): p50 {slots['p50_ms']} ms, "
        f"p95 {slots['p95_ms']} ms"
    )
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
    avail_paths = [
        f"/api/v1/instruments/{rng.choice(ids)}/availability?start={day0.isoformat()}"
        f"&end={(day0 + timedelta(days=90)).isoformat()}".replace("+00:00", "Z")
        for _ in range(n)
    ]
    availability = timed_gets(base, avail_paths)
    print(
        f"3. availability (90 days): p50 {availability['p50_ms']} ms, p95 {availability['p95_ms']} ms"
    )
    ical = timed_gets(base, [f"/ical/instruments/{rng.choice(ids)}.ics" for _ in range(n)])
    print(
        f"   iCalendar feed: statuses {ical['statuses']}, p50 {ical['p50_ms']} ms, p95 {ical['p95_ms']} ms"
    )
    return {"slots": slots, "availability_90d": availability, "ical_feed": ical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="labshare_bench_booking")
    parser.add_argument("--instruments", type=int, default=12_600)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--skip-setup", action="store_true", help="reuse the database")
    args = parser.parse_args()

    base_dsn = psycopg.conninfo.conninfo_to_dict(SERVER)
    dsn = psycopg.conninfo.make_conninfo(**{**base_dsn, "dbname": args.db})
    url = "postgresql+psycopg://" + SERVER.split("://", 1)[1].rsplit("/", 1)[0] + "/" + args.db
    os.environ["LABSHARE_SECRET_KEY"] = SECRET
    os.environ["LABSHARE_DATABASE_URL"] = url
    report: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(),
        "seed": RUN_SEED,
        "cores": os.cpu_count(),
        "workers": args.workers,
    }
    if not args.skip_setup:
        report["setup"] = setup(url, dsn, args.db, args.instruments)
    port = free_port()
    server = serve(url, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        report["throughput"] = bench_throughput(base, url, args.requests, args.clients, server.pid)
        report["reads"] = bench_reads(base, dsn, args.reads)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report["ceiling"] = bench_ceiling(url, dsn, args.requests, args.clients)
    api, ceiling = report["throughput"]["bookings_per_s"], report["ceiling"]["bookings_per_s"]
    report["api_over_ceiling"] = round(api / ceiling, 3) if ceiling else None
    print(f"   API / ceiling = {report['api_over_ceiling']}")
    out = ROOT / "bench" / "results" / f"booking-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
