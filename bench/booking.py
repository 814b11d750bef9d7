"""Benchmark: booking on PostgreSQL, labshare beside a minimal FastAPI app, in one run.

The database is the 12,600-instrument network with 1.3 M bookings (bench/booking_setup.py).
Both apps are served the same way (`--workers 2`), and driven by the same client with the
same mix: 32 connections, a third of the requests repeating an earlier one (a conflict). The
baseline (bench/baseline_app.py) parses the same JSON, decodes the same JWT and does one
INSERT into the same constrained table. Printed and written to bench/results/:

1. bookings/s, p50/p99, server and PostgreSQL CPU per request, for each, and the ratio
   (the load comes from wrk, Debian's, so the client is not what limits either); the two
   take turns `--rounds` times and the ratio is the median of the rounds' ratios;
2. one client alone: a 201's and a 409's latency, and their ratio (target: 409 <= 2x 201);
3. SQL statements a 201 and a 409 run (counted in-process against the same database);
   a 409 twice: with this process's caches cold, and warm;
4. a one-instrument burst: 240 requests at one instrument over 64 connections (< 5 s);
5. /slots, availability (90 days) and the instrument feed, p50/p95.

    .venv/bin/python bench/booking.py [--requests N] [--skip-setup] [--db NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.booking_reads import bench_reads
from bench.booking_setup import plan_slots, plan_window, setup, tokens, with_conflicts
from bench.common import (
    SECRET,
    SERVER,
    connections_by_worker,
    free_port,
    ms,
    postgres_cpu_seconds,
    run_clients,
    serve_baseline,
    serve_labshare,
    stop,
    tree_cpu_seconds,
    write_result,
)

# Each run books on its own sample of instruments, so reruns on one database find free time.
RUN_SEED = int(time.time())


def booking_run(
    base: str, pid: int, jobs: list, tokens_: list[str], clients: int, seconds: int, name: str
) -> dict[str, object]:
    """Drive one served app with wrk (C, so the client is not what limits it): `clients`
    connections for `seconds`, posting `jobs` in order."""
    folder = Path(tempfile.mkdtemp(prefix="labshare-bench-"))
    bodies, heads = folder / "bodies.jsonl", folder / "tokens.txt"
    bodies.write_text(
        "".join(
            json.dumps({"instrument_id": i, "start": s.isoformat(), "end": e.isoformat()}) + "\n"
            for i, s, e in jobs
        )
    )
    heads.write_text("".join(t + "\n" for t in tokens_))
    server_cpu, pg_cpu = tree_cpu_seconds(pid), postgres_cpu_seconds()
    held: list[int] = []
    sampler = threading.Timer(seconds / 2, lambda: held.extend(connections_by_worker(pid, base)))
    sampler.start()
    run = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--timeout", "60s",
         "-s", str(Path(__file__).with_name("wrk_post.lua")), base,
         "--", str(bodies), str(heads), "/api/v1/bookings", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    server_cpu = tree_cpu_seconds(pid) - server_cpu
    pg_cpu = postgres_cpu_seconds() - pg_cpu
    sampler.join()
    line = next(x for x in run.stdout.splitlines() if x.startswith("WRK "))
    figures = json.loads(line[4:])
    n, wall = figures["requests"], figures["duration_us"] / 1e6
    statuses = {int(k): v for k, v in figures["statuses"].items()}
    if n > len(jobs):
        raise SystemExit(f"{name}: {n} requests but only {len(jobs)} planned; plan more")
    out = {
        "requests": n,
        "clients": clients,
        "statuses": statuses,
        "errors": figures["errors"],
        "timeouts": figures["timeouts"],
        "wall_s": round(wall, 2),
        "requests_per_s": round(n / wall, 1),
        "bookings_per_s": round(statuses.get(201, 0) / wall, 1),
        "p50_ms": round(figures["p50_us"] / 1000, 2),
        "p90_ms": round(figures["p90_us"] / 1000, 2),
        "p99_ms": round(figures["p99_us"] / 1000, 2),
        "p99.9_ms": round(figures["p999_us"] / 1000, 2),
        "max_ms": round(figures["max_us"] / 1000, 2),
        "mean_ms": round(figures["mean_us"] / 1000, 2),
        # With `clients` connections always waiting, the mean is clients / throughput
        # (Little's law); how far p99 lies above it is what the server's fairness decides.
        "p99_over_mean": round(figures["p99_us"] / figures["mean_us"], 2),
        "server_cpu_ms_per_request": round(server_cpu / n * 1000, 2),
        "postgres_cpu_ms_per_request": round(pg_cpu / n * 1000, 2),
        "load_average": os.getloadavg(),
        # The client's connections each worker process held halfway through.
        "connections_by_worker": held,
    }
    print(
        f"   {name}: {out['bookings_per_s']} bookings/s ({out['requests_per_s']} requests/s, "
        f"{statuses}); p50 {out['p50_ms']} ms, p90 {out['p90_ms']}, p99 {out['p99_ms']} "
        f"({out['p99_over_mean']}x the mean), max {out['max_ms']}; CPU per request: "
        f"server {out['server_cpu_ms_per_request']} ms, PostgreSQL "
        f"{out['postgres_cpu_ms_per_request']} ms; connections by worker {held}"
    )
    return out


def one_client(base: str, url: str, head: dict[str, str]) -> dict[str, object]:
    """A 201's and a 409's latency with nothing else running."""
    slots = plan_slots(url, 150, (14, 16), seed=RUN_SEED + 9)
    created, refused = [], []
    with httpx.Client(base_url=base, timeout=30) as http:
        for instrument_id, start, end in slots:
            body = {"instrument_id": instrument_id, "start": start.isoformat(),
                    "end": end.isoformat()}  # fmt: skip
            for bucket in (created, refused):  # the same time twice: a 201, then a 409
                t = time.perf_counter()
                http.post("/api/v1/bookings", headers=head, json=body)
                bucket.append(time.perf_counter() - t)
    out = {"created": ms(created[10:]), "refused": ms(refused[10:])}
    ratio = out["refused"]["p50_ms"] / out["created"]["p50_ms"]  # type: ignore[index]
    out["refused_over_created"] = round(ratio, 2)
    print(
        f"2. one client: a 201 takes {out['created']['p50_ms']} ms, a 409 "  # type: ignore[index]
        f"{out['refused']['p50_ms']} ms (p50): {out['refused_over_created']}x"  # type: ignore[index]
    )
    return out


def statements(url: str) -> dict[str, int]:
    """SQL statements of a 201 and a 409, counted in-process on the same database."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from core.db import get_engine
    from labshare.app import create_app

    # Two free slots: one to warm the caches with, one to book and then be refused.
    warm, counted = plan_slots(url, 2, (17, 18), seed=RUN_SEED + 7)
    [token] = tokens(url, 1)
    head = {"Authorization": f"Bearer {token}"}

    def body(slot: tuple[int, datetime, datetime]) -> dict[str, object]:
        return {"instrument_id": slot[0], "start": slot[1].isoformat(), "end": slot[2].isoformat()}

    seen: list[str] = []
    engine = get_engine()
    listener = lambda *a: seen.append(a[2])  # noqa: E731
    with TestClient(create_app()) as client:
        # The start-up reads (every instrument's hours, the dashboard's figures) run in
        # threads of their own: let them finish, or their statements land in the counts.
        for thread in threading.enumerate():
            if thread.name in ("labshare-hours-warm", "labshare-kpi-warm"):
                thread.join(60)
        client.post("/api/v1/bookings", headers=head, json=body(warm))
        event.listen(engine, "before_cursor_execute", listener)
        counts = {}
        # The first refusal fills this process's caches of the category's instruments and
        # their hours (booking.elsewhere); the next ones read only what changes.
        for name, status in (("created", 201), ("refused_first", 409), ("refused", 409)):
            seen.clear()
            answer = client.post("/api/v1/bookings", headers=head, json=body(counted))
            if answer.status_code != status:
                raise SystemExit(f"statements: {name} answered {answer.status_code}, not {status}")
            counts[name] = len(seen)
        event.remove(engine, "before_cursor_execute", listener)
    print(
        f"3. statements: a 201 runs {counts['created']}, a 409 {counts['refused']} "
        f"({counts['refused_first']} the first time this process sees the category)"
    )
    return counts


def burst(base: str, url: str, heads: list[dict[str, str]]) -> dict[str, object]:
    """240 requests at one instrument at once, 64 keep-alive connections (the race test)."""
    instrument_id, start = plan_window(url, (20, 22), hours=6, seed=RUN_SEED + 5)
    rng = random.Random(4)
    bodies = []
    for _ in range(240):
        hours = rng.randint(1, 3)
        begin = start + timedelta(hours=rng.randint(0, 6 - hours))
        bodies.append({"instrument_id": instrument_id, "start": begin.isoformat(),
                       "end": (begin + timedelta(hours=hours)).isoformat()})  # fmt: skip

    async def fire() -> tuple[Counter, float]:  # type: ignore[type-arg]
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            began = time.monotonic()
            answers = await asyncio.gather(
                *(client.post("/api/v1/bookings", json=b, headers=heads[n % len(heads)])
                  for n, b in enumerate(bodies)),
                return_exceptions=True,
            )  # fmt: skip
            wall = time.monotonic() - began
        return Counter(
            a.status_code if isinstance(a, httpx.Response) else type(a).__name__ for a in answers
        ), wall

    codes, wall = asyncio.run(fire())
    print(f"4. one-instrument burst: 240 requests in {wall:.2f} s, {dict(codes)}")
    return {"wall_s": round(wall, 2), "statuses": dict(codes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="labshare_bench_booking")
    parser.add_argument("--instruments", type=int, default=12_600)
    parser.add_argument(
        "--requests", type=int, default=30_000, help="requests planned (more than a run sends)"
    )
    parser.add_argument("--seconds", type=int, default=20, help="each throughput run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--skip-setup", action="store_true", help="reuse the database")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="labshare and the baseline take turns this many times; the ratio is the median "
        "of the rounds' ratios (the machine's speed drifts between runs)",
    )
    args = parser.parse_args()

    base_dsn = psycopg.conninfo.conninfo_to_dict(SERVER)
    dsn = psycopg.conninfo.make_conninfo(**{**base_dsn, "dbname": args.db})
    url = "postgresql+psycopg://" + SERVER.split("://", 1)[1].rsplit("/", 1)[0] + "/" + args.db
    os.environ["LABSHARE_SECRET_KEY"] = SECRET
    # Each worker warms the dashboard's figures as it starts: seconds of PostgreSQL over
    # the 1.3 M bookings, during the first run's warm-up and a third of the run itself. It
    # is start-up work, not booking work, and the baseline has none.
    os.environ["LABSHARE_KPI_WARM"] = "false"
    os.environ["LABSHARE_DATABASE_URL"] = url
    report: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(),
        "seed": RUN_SEED,
        "cores": os.cpu_count(),
        "workers": args.workers,
        "load_average_before": os.getloadavg(),
    }
    if not args.skip_setup:
        report["setup"] = setup(url, dsn, args.db, args.instruments)
    tokens_ = tokens(url, args.clients)
    heads = [{"Authorization": f"Bearer {t}"} for t in tokens_]
    rng = random.Random(1)
    print("1. throughput, the same mix on each (a third conflicting), taking turns:")
    rounds: list[dict[str, dict[str, object]]] = []
    apps = (("labshare", serve_labshare), ("baseline", serve_baseline))
    for turn in range(args.rounds):
        runs: dict[str, dict[str, object]] = {}
        for offset, (name, start) in enumerate(apps, start=2 * turn):
            port = free_port()
            server = start(url, port, args.workers)
            base = f"http://127.0.0.1:{port}"
            try:
                days = (2 + 3 * offset, 5 + 3 * offset)
                warm = plan_slots(url, 200, (9 + offset, 10 + offset), seed=RUN_SEED + 11 + offset)
                run_clients(base, warm, args.clients, lambda h, j, i: h.post(
                    "/api/v1/bookings", headers=heads[i % len(heads)],
                    json={"instrument_id": j[0], "start": j[1].isoformat(), "end": j[2].isoformat()}))  # fmt: skip
                unique = plan_slots(url, args.requests * 2 // 3, days, seed=RUN_SEED + offset)
                jobs = with_conflicts(unique, rng)[: args.requests]
                runs[name] = booking_run(
                    base, server.pid, jobs, tokens_, args.clients, args.seconds, name
                )
                if name == "labshare" and turn == 0:
                    report["one_client"] = one_client(base, url, heads[0])
                    report["burst"] = burst(base, url, heads)
                    report["reads"] = bench_reads(base, dsn, args.reads)
            finally:
                stop(server)
        ratio = runs["labshare"]["bookings_per_s"] / runs["baseline"]["bookings_per_s"]  # type: ignore[operator]
        runs["ratio"] = {"bookings": round(ratio, 3)}
        print(f"   round {turn + 1}: labshare / baseline = {ratio:.3f}")
        rounds.append(runs)
    report["throughput"] = rounds
    report["ratio"] = round(statistics.median(r["ratio"]["bookings"] for r in rounds), 3)  # type: ignore[misc]
    print(
        f"   labshare / baseline = {report['ratio']}, the median of {args.rounds} rounds "
        "(target >= 0.5; p99 < 100 ms)"
    )
    report["statements"] = statements(url)
    print(f"written {write_result('booking', report)}")


if __name__ == "__main__":
    main()
