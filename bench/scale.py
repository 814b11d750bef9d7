"""Benchmark: the parts that take labshare past one process, each against its absence, in
one run on this machine.

1. Catalog reads (`GET /api/v1/instruments`, q + category, 8 clients) served with one
   streaming replica beside the primary, against the primary alone. The replica is a
   cluster of our own (tests/pg_cluster.py), as the tests build it.
2. Booking throughput (`POST /api/v1/bookings`, a third conflicting, 32 clients) through two
   `labshare serve` processes behind HAProxy, against one process alone; both through
   PgBouncer in transaction mode, and one process straight to PostgreSQL for reference.

Each figure is printed and written to bench/results/scale-<time>.json, with the load
average. On this machine (2 cores) every process shares the same two cores, so a part can
show what it costs and that it works, not the capacity it adds on its own hardware: the
ratios say what limits each figure.

    .venv/bin/python bench/scale.py [--instruments N] [--requests N]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.booking_setup import plan_slots, tokens, with_conflicts
from bench.catalog import _requests as catalog_requests
from bench.common import (
    BIN,
    SECRET,
    free_port,
    ms,
    postgres_cpu_seconds,
    run_clients,
    serve_labshare,
    stop,
    tree_cpu_seconds,
    write_result,
)
from tests.pg_cluster import primary_and_replica
from tests.scale_parts import haproxy, pgbouncer


def _seed(url: str, instruments: int) -> None:
    env = {**os.environ, "LABSHARE_DATABASE_URL": url, "LABSHARE_SECRET_KEY": SECRET}
    for command in (["db", "upgrade"], ["seed", "--instruments", str(instruments)]):
        subprocess.run([str(BIN / "labshare"), *command], env=env, check=True, cwd="/tmp",
                       stdout=subprocess.DEVNULL)  # fmt: skip


SIZED = (
    "booking",
    "usage_session",
    "telemetry_event",
    "charge",
    "invoice",
    "notification",
    "audit_entry",
)


def _sizes(url: str) -> dict[str, dict[str, float]]:
    """Rows, bytes (with indexes and TOAST) and bytes per row of the tables that grow."""
    import psycopg

    out = {}
    from sqlmodel import Session, select

    from core.db import make_engine
    from instruments.models import Instrument, Lab
    from telemetry.models import GatewayInstrument
    from telemetry.service import gateway_create

    # The seed has no raw telemetry: 200,000 messages as a gateway sends them (a meter
    # reading with its JSON), to weigh a row with its indexes.
    engine = make_engine(url)
    with Session(engine) as session:
        lab, code = session.exec(
            select(Lab.code, Instrument.code).join(Instrument, Instrument.lab_id == Lab.id)
        ).first() or (None, None)
        assert lab is not None and code is not None
        gateway, _ = gateway_create(session, lab_code=lab, instrument_codes=[code])
        session.commit()
        served = session.exec(
            select(GatewayInstrument.instrument_id).where(
                GatewayInstrument.gateway_id == gateway.id
            )
        ).first()
        gateway_id = gateway.id
    engine.dispose()
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute(
            """INSERT INTO telemetry_event (gateway_id, message_id, instrument_id, ts, type,
                                            user_badge, data, received_at)
               SELECT %s, 'm-' || n, %s, now() - n * interval '1 second', 'meter',
                      'B' || (n %% 500),
                      jsonb_build_object('samples', n %% 7, 'kwh', round((n %% 100) / 10.0, 1)),
                      now()
               FROM generate_series(1, 200000) n""",
            (gateway_id, served),
        )
        conn.commit()
        conn.execute("ANALYZE")
        for table in SIZED:
            found = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if not found or found[0] is None:
                continue
            rows, size = conn.execute(
                f'SELECT COUNT(*), pg_total_relation_size(%s) FROM "{table}"', (table,)
            ).fetchone()  # type: ignore[misc]
            out[table] = {"rows": rows, "bytes": size,
                          "bytes_per_row": round(size / rows, 1) if rows else 0.0}  # fmt: skip
    return out


def _catalog(base: str, requests: int, pids: list[int]) -> dict[str, object]:
    jobs = catalog_requests(requests, random.Random(7))
    served_from: Counter[str] = Counter()

    def call(http: httpx.Client, params: dict[str, str], _worker: int) -> float:
        began = time.perf_counter()
        r = http.get("/api/v1/instruments", params=params)
        r.raise_for_status()
        # No header: no replicas are set (the primary), or the answer needed no query.
        served_from[r.headers.get("labshare-read-from", "primary (no header)")] += 1
        return time.perf_counter() - began

    cpu, pg = sum(tree_cpu_seconds(p) for p in pids), postgres_cpu_seconds()
    times, wall = run_clients(base, jobs, 8, call)
    cpu = sum(tree_cpu_seconds(p) for p in pids) - cpu
    return {"requests_per_s": round(len(jobs) / wall, 1), **ms(times),
            "server_cpu_ms_per_request": round(cpu / len(jobs) * 1000, 2),
            "postgres_cpu_ms_per_request": round((postgres_cpu_seconds() - pg) / len(jobs) * 1000, 2),
            "served_from": dict(served_from), "load_average": os.getloadavg()}  # fmt: skip


def _bookings(base: str, jobs: list, heads: list[str], pids: list[int]) -> dict[str, object]:
    statuses: Counter[int] = Counter()

    def call(http: httpx.Client, job: tuple, worker: int) -> float:
        instrument, start, end = job
        began = time.perf_counter()
        r = http.post("/api/v1/bookings", headers={"Authorization": f"Bearer {heads[worker % len(heads)]}"},
                      json={"instrument_id": instrument, "start": start.isoformat(), "end": end.isoformat()})  # fmt: skip
        statuses[r.status_code] += 1
        return time.perf_counter() - began

    cpu, pg = sum(tree_cpu_seconds(p) for p in pids), postgres_cpu_seconds()
    times, wall = run_clients(base, jobs, 32, call)
    cpu = sum(tree_cpu_seconds(p) for p in pids) - cpu
    return {"requests_per_s": round(len(jobs) / wall, 1),
            "bookings_per_s": round(statuses[201] / wall, 1), "statuses": dict(statuses), **ms(times),
            "server_cpu_ms_per_request": round(cpu / len(jobs) * 1000, 2),
            "postgres_cpu_ms_per_request": round((postgres_cpu_seconds() - pg) / len(jobs) * 1000, 2),
            "load_average": os.getloadavg()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=12_600)
    parser.add_argument("--requests", type=int, default=3_000)
    args = parser.parse_args()
    report: dict[str, object] = {"instruments": args.instruments, "requests": args.requests}
    with primary_and_replica() as (primary, replica):
        url = primary.url()
        # The tokens made here must be signed as the servers check them.
        os.environ["LABSHARE_SECRET_KEY"] = SECRET
        os.environ["LABSHARE_DATABASE_URL"] = url
        began = time.monotonic()
        _seed(url, args.instruments)
        print(f"seeded {args.instruments:,} instruments in {time.monotonic() - began:.0f} s")
        time.sleep(2)  # the replica replays the seed
        report["sizes"] = _sizes(url)
        print(f"sizes: {report['sizes']}")

        print("1. catalog reads, 8 clients")
        for key, env in (("catalog_primary", {}),
                         ("catalog_with_replica", {"LABSHARE_DATABASE_REPLICA_URLS": replica.url()})):  # fmt: skip
            port = free_port()
            server = serve_labshare(url, port, 2, **env)
            try:
                report[key] = _catalog(f"http://127.0.0.1:{port}", args.requests, [server.pid])
            finally:
                stop(server)
        for key in ("catalog_primary", "catalog_with_replica"):
            print(f"   {key}: {report[key]}")
        report["catalog_ratio"] = round(
            report["catalog_with_replica"]["requests_per_s"]  # type: ignore[index]
            / report["catalog_primary"]["requests_per_s"],
            2,
        )  # type: ignore[index]

        print("2. bookings, 32 clients, a third conflicting")
        heads = tokens(url, 30)
        rng = random.Random(18)
        slots = plan_slots(url, args.requests * 3, (3, 60), seed=18)
        rng.shuffle(slots)
        per_run = min(args.requests * 2 // 3, len(slots) // 3)
        report["booking_unique_requests_per_run"] = per_run
        runs = {}
        with pgbouncer(url, pool_size=40) as bounced:
            pooled = {"LABSHARE_DATABASE_POOLER": "true"}
            for name, processes, target in (("one_process_direct", 1, url),
                                            ("one_process_pgbouncer", 1, bounced),
                                            ("two_processes_haproxy_pgbouncer", 2, bounced)):  # fmt: skip
                unique = [slots.pop() for _ in range(per_run)]
                jobs = with_conflicts(unique, rng)
                servers = []
                for _ in range(processes):
                    port = free_port()
                    env = pooled if target == bounced else {}
                    servers.append((port, serve_labshare(target, port, 1, **env)))
                try:
                    if processes == 1:
                        runs[name] = _bookings(f"http://127.0.0.1:{servers[0][0]}", jobs, heads,
                                               [servers[0][1].pid])  # fmt: skip
                    else:
                        with haproxy([f"http://127.0.0.1:{p}" for p, _ in servers]) as lb:
                            runs[name] = _bookings(lb, jobs, heads, [s.pid for _, s in servers])
                finally:
                    for _, server in servers:
                        stop(server)
                print(f"   {name}: {runs[name]}")
        report["bookings"] = runs
        report["bookings_ratio_two_processes"] = round(
            runs["two_processes_haproxy_pgbouncer"]["bookings_per_s"]  # type: ignore[index]
            / runs["one_process_pgbouncer"]["bookings_per_s"], 2)  # type: ignore[index]  # fmt: skip
        report["pgbouncer_cost_ratio"] = round(
            runs["one_process_pgbouncer"]["bookings_per_s"]  # type: ignore[index]
            / runs["one_process_direct"]["bookings_per_s"], 2)  # type: ignore[index]  # fmt: skip
    print(f"catalog with a replica / primary alone: {report['catalog_ratio']}")
    print(f"bookings, two processes / one (both pooled): {report['bookings_ratio_two_processes']}")
    print(f"bookings, pooled / direct (one process): {report['pgbouncer_cost_ratio']}")
    print(f"written to {write_result('scale', report)}")


if __name__ == "__main__":
    main()
