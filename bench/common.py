"""What the benchmarks share: servers on free ports, client pools, CPU and latency figures."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVER = os.environ.get("LABSHARE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-key-bench-secret-key-0123456789"
# The environment running the benchmark serves the apps too (the README's .venv, or any).
BIN = Path(sys.executable).parent
PYTHON = BIN / "python"


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_of(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _cpu_of(int(entry.name))
            if found and (int(entry.name) == pid or found[0] == pid):
                total += found[1]
    return total


def connections_by_worker(pid: int, base: str) -> list[int]:
    """How many connections to `base`'s port each worker process under `pid` holds, most
    first (uvicorn's workers are the supervisor's children)."""
    import psutil

    port = int(base.rsplit(":", 1)[1])
    counts = []
    for child in psutil.Process(pid).children():
        try:
            counts.append(
                sum(
                    1
                    for c in child.net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
                )
            )
        except psutil.Error:
            continue
    return sorted((n for n in counts if n), reverse=True)


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on the machine (backends come and go: this is
    a lower bound for a run, good for ratios of runs measured the same way)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            found = _cpu_of(int(entry.name))
            if found:
                total += found[1]
    return total


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"{url} did not come up")


def serve_labshare(url: str, port: int, workers: int, **env: str) -> subprocess.Popen[bytes]:
    """`labshare serve` as users run it."""
    proc = subprocess.Popen(
        [str(BIN / "labshare"), "serve", "--port", str(port), "--workers", str(workers)],
        env={**os.environ, "LABSHARE_DATABASE_URL": url, "LABSHARE_SECRET_KEY": SECRET, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/tmp",
    )
    wait_for(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def serve_baseline(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    """bench/baseline_app.py, served the same way (uvicorn, the same worker count)."""
    proc = subprocess.Popen(
        [
            str(BIN / "uvicorn"), "baseline_app:app", "--port", str(port),
            "--workers", str(workers), "--no-access-log", "--log-level", "warning",
            "--timeout-keep-alive", "30",
        ],
        env={**os.environ, "BASELINE_DATABASE_URL": url, "BASELINE_SECRET": SECRET},
        cwd=str(ROOT / "bench"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_clients(
    base: str, jobs: list[Any], clients: int, call: Callable[[httpx.Client, Any, int], Any]
) -> tuple[list[Any], float]:
    """Run `call(http, job, worker)` over jobs from `clients` threads; the results, in order,
    and the wall time."""
    results: list[Any] = [None] * len(jobs)
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


def write_result(name: str, report: dict[str, Any]) -> Path:
    import json

    report.setdefault("when", datetime.now(UTC).isoformat())
    report.setdefault("load_average_after", os.getloadavg())
    out = ROOT / "bench" / "results" / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    return out
