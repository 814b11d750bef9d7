"""Benchmark the catalog: seeding the demo network, and search through the served API.

For each database (SQLite file, PostgreSQL database; both created afresh):
  1. migrate and seed N instruments (default 12,600), timed (target < 15 s);
  2. start `labshare serve`, then C concurrent clients (default 8) send R requests
     (default 4,000) of `GET /api/v1/instruments` with `q` plus one filter; report p50,
     p95, p99 and throughput (target p95 < 20 ms).
Figures are printed and written to bench/results/catalog-<database>-<time>.json.

    .venv/bin/python bench/catalog.py                       # both databases
    .venv/bin/python bench/catalog.py --backends sqlite --requests 2000
    .venv/bin/python bench/catalog.py --backends postgres --compare-only   # the ratio alone

On PostgreSQL it then runs labshare beside bench/baseline_app.py's search endpoint (one
page's SQL in one statement, no framework beyond FastAPI) with the same q+category mix,
and prints the ratio of their throughput (target >= 0.8), CPU per request and the
statements labshare runs per search.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import migrations  # noqa: E402
from core.db import make_engine, session_scope  # noqa: E402
from instruments.seed import seed_network  # noqa: E402

TERMS = ("orbitrap", "sem", "nmr", "bruker", "thermo", "confocal", "hplc", "diffractometer",
         "质谱", "raman", "flow", "agilent", "krios", "zeiss", "icp", "xjtu", "testing")  # fmt: skip
GROUPS = ("ms", "em", "nmr", "xray", "chrom", "spec", "cell", "seq", "mat")
LEAVES = ("ms-lcms", "em-sem", "nmr-solution", "xray-xrd", "chrom-hplc", "spec-ftir", "cell-flow")
INSTITUTIONS = ("XJTU", "NWPU", "XIDIAN", "NWU", "SNNU", "CHD", "XIOPM", "FMMU", "LONGI")
LABS = ("XJTU-ATC", "NWPU-ATC", "XIDIAN-ATC", "NWU-SKL-CD", "XIOPM-PTC", "FMMU-SKL-CB")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fresh_database(backend: str, args: argparse.Namespace) -> str:
    if backend == "sqlite":
        path = Path(args.sqlite)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    url = make_url(args.postgres)
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{url.database}"')
    return url.render_as_string(hide_password=False)


def _seed(url: str, instruments: int) -> float:
    migrations.upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    with session_scope(engine=engine) as session:
        seed_network(session, instruments=instruments)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def _requests(count: int, rng: random.Random) -> list[dict[str, str]]:
    """`q` plus exactly one filter, spread over the four filters."""
    params = []
    for n in range(count):
        q = rng.choice(TERMS)
        kind = n % 4
        if kind == 0:
            params.append({"q": q, "category": rng.choice(GROUPS + LEAVES)})
        elif kind == 1:
            params.append({"q": q, "institution": rng.choice(INSTITUTIONS)})
        elif kind == 2:
            params.append({"q": q, "lab": rng.choice(LABS)})
        else:
            params.append({"q": q, "status": rng.choice(("active", "maintenance"))})
    return params


def _serve(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LABSHARE_DATABASE_URL": url,
           "LABSHARE_SECRET_KEY": "bench-secret-bench-secret-bench-secret"}  # fmt: skip
    command = [sys.executable, "-m", "labshare.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


def _load(base: str, params: list[dict[str, str]], clients: int) -> tuple[list[float], float]:
    """Send every request from `clients` threads; latencies in ms and the wall time."""
    queue = list(reversed(params))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                started = time.perf_counter()
                response = http.get("/api/v1/instruments", params=item)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {item}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return latencies, time.perf_counter() - started


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(backend: str, args: argparse.Namespace) -> dict[str, object]:
    url = _fresh_database(backend, args)
    seed_seconds = _seed(url, args.instruments)
    print(f"[{backend}] seeded {args.instruments} instruments in {seed_seconds:.2f} s", flush=True)
    port = _free_port()
    server = _serve(url, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        rng = random.Random(1)
        _load(base, _requests(min(300, args.requests), rng), args.clients)  # warm up
        load_before = os.getloadavg()[0]
        latencies, wall = _load(base, _requests(args.requests, rng), args.clients)
        # One client alone: the service time without queueing behind the other seven.
        alone, _ = _load(base, _requests(min(500, args.requests), rng), 1)
        load_after = os.getloadavg()[0]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    result: dict[str, object] = {
        "benchmark": "catalog",
        "database": backend,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "instruments": args.instruments,
        "seed_seconds": round(seed_seconds, 2),
        "seed_target_seconds": 15,
        "search": {
            "requests": len(latencies),
            "clients": args.clients,
            "server_workers": args.workers,
            "query": "q plus one of category, institution, lab, status",
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(_percentile(latencies, 95), 2),
            "p99_ms": round(_percentile(latencies, 99), 2),
            "mean_ms": round(statistics.fmean(latencies), 2),
            "requests_per_second": round(len(latencies) / wall, 1),
            "p95_target_ms": 20,
            "single_client_p50_ms": round(statistics.median(alone), 2),
            "single_client_p95_ms": round(_percentile(alone, 95), 2),
        },
        # The machine is shared: its 1-minute load average says how contended the run was.
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
    }
    search = result["search"]
    assert isinstance(search, dict)
    print(
        f"[{backend}] search: p50 {search['p50_ms']} ms, p95 {search['p95_ms']} ms, "
        f"p99 {search['p99_ms']} ms, {search['requests_per_second']} req/s "
        f"({len(latencies)} requests, {args.clients} clients, {args.workers} worker(s)); "
        f"one client alone: p50 {search['single_client_p50_ms']} ms, "
        f"p95 {search['single_client_p95_ms']} ms; load average {load_before:.1f}",
        flush=True,
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"catalog-{backend}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[{backend}] wrote {path.relative_to(ROOT)}")
    return result


def _statements_per_search(url: str, params: dict[str, str]) -> int:
    """SQL statements one search runs, counted in-process on the same database."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from core.db import get_engine
    from core.settings import get_settings
    from labshare.app import create_app

    os.environ["LABSHARE_DATABASE_URL"] = url
    os.environ.setdefault("LABSHARE_SECRET_KEY", "bench-secret-bench-secret-bench-secret")
    get_settings.cache_clear()
    seen: list[str] = []
    listener = lambda *a: seen.append(a[2])  # noqa: E731
    with TestClient(create_app()) as client:
        # The start-up reads (every instrument's hours, the dashboard's figures) run in
        # threads of their own: let them finish, or their statements land in the count.
        for thread in threading.enumerate():
            if thread.name in ("labshare-hours-warm", "labshare-kpi-warm"):
                thread.join(60)
        client.get("/api/v1/instruments", params=params)  # warm the caches
        engine = get_engine()
        event.listen(engine, "before_cursor_execute", listener)
        client.get("/api/v1/instruments", params=params)
        event.remove(engine, "before_cursor_execute", listener)
    return len(seen)


def compare_with_baseline(url: str, args: argparse.Namespace) -> dict[str, object]:
    """labshare's search beside bench/baseline_app.py's endpoint running one page's SQL, on
    the same database and with the same mix (q plus a category), served the same way."""
    from bench.common import postgres_cpu_seconds, serve_baseline, stop, tree_cpu_seconds

    rng = random.Random(2)
    mix = [{"q": rng.choice(TERMS), "category": rng.choice(GROUPS + LEAVES)}
           for _ in range(args.requests)]  # fmt: skip
    out: dict[str, object] = {"query": "q plus a category", "clients": args.clients}
    for name in ("labshare", "baseline"):
        port = _free_port()
        server = (_serve(url, port, args.workers) if name == "labshare"
                  else serve_baseline(url, port, args.workers))  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            _load(base, mix[:300], args.clients)  # warm up
            cpu, pg = tree_cpu_seconds(server.pid), postgres_cpu_seconds()
            latencies, wall = _load(base, mix, args.clients)
            cpu, pg = tree_cpu_seconds(server.pid) - cpu, postgres_cpu_seconds() - pg
        finally:
            stop(server)
        out[name] = {
            "requests_per_second": round(len(latencies) / wall, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(_percentile(latencies, 95), 2),
            "p99_ms": round(_percentile(latencies, 99), 2),
            "server_cpu_ms_per_request": round(cpu / len(latencies) * 1000, 2),
            "postgres_cpu_ms_per_request": round(pg / len(latencies) * 1000, 2),
            "load_average": os.getloadavg()[0],
        }
        print(f"[compare] {name}: {out[name]}", flush=True)
    ratio = out["labshare"]["requests_per_second"] / out["baseline"]["requests_per_second"]  # type: ignore[index]
    out["ratio"] = round(ratio, 3)
    out["labshare_statements_per_search"] = _statements_per_search(url, mix[0])
    print(
        f"[compare] labshare / baseline = {out['ratio']} (target >= 0.8); labshare runs "
        f"{out['labshare_statements_per_search']} statements a search",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--sqlite", default="/tmp/labshare_bench_catalog.db")
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/labshare_bench_catalog"
    )
    parser.add_argument("--instruments", type=int, default=12_600)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument(
        "--compare-only", action="store_true",
        help="only labshare beside the baseline, on the PostgreSQL database as it is",
    )  # fmt: skip
    args = parser.parse_args()
    if not args.compare_only:
        for backend in args.backends.split(","):
            run(backend.strip(), args)
    if "postgres" in args.backends:
        result = {"benchmark": "catalog-vs-baseline", "at": datetime.now(UTC).isoformat(),
                  **compare_with_baseline(args.postgres, args)}  # fmt: skip
        out = ROOT / "bench" / "results"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = out / f"catalog-vs-baseline-{stamp}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[compare] wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
