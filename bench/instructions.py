"""Benchmark: instructions a booking request costs, this tree against another revision.

Wall-clock figures on a shared two-core machine drift by a quarter within minutes, so a
change worth a few percent cannot be seen in bookings/s. Instructions can: valgrind counts
them whatever else the machine does. Each tree drives labshare's ASGI app in-process (no
sockets, one request at a time) with the same mix as bench/booking.py (a third
conflicting), on its own fresh copy of the benchmark database made from the same template,
so both trees book exactly the same slots; only the measured requests are counted. Two runs
of one tree differ by about 0.03%. PostgreSQL's own work is not counted (statements per
request say that part: bench/booking.py).

    .venv/bin/python bench/instructions.py --base <revision> [--requests 300] [--db NAME]

Needs valgrind, and the database bench/booking.py sets up (run it once first).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PYTHON, ROOT, SECRET, SERVER, write_result

DRIVER = Path(__file__).with_name("instructions_driver.py")


def _copy_database(template: str, name: str) -> str:
    """A fresh copy of the benchmark database; its URL."""
    dsn = psycopg.conninfo.conninfo_to_dict(SERVER)
    with psycopg.connect(psycopg.conninfo.make_conninfo(**dsn), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    host = SERVER.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+psycopg://{host}/{name}"


def _drop_database(name: str) -> None:
    dsn = psycopg.conninfo.conninfo_to_dict(SERVER)
    with psycopg.connect(psycopg.conninfo.make_conninfo(**dsn), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        # The copy was written through the WAL: flush it now, not during the next benchmark.
        conn.execute("CHECKPOINT")


def count(tree: Path, label: str, args: argparse.Namespace) -> dict[str, object]:
    """Instructions of `args.requests` booking requests served by the code in `tree`."""
    name = f"labshare_instructions_{label}"
    url = _copy_database(args.db, name)
    out = Path(tempfile.mkdtemp(prefix="labshare-callgrind-")) / "callgrind.out"
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "LABSHARE_DATABASE_URL": url,
        "LABSHARE_SECRET_KEY": SECRET,
        "LABSHARE_KPI_WARM": "false",
        "LABSHARE_HOURS_WARM": "false",  # the driver reads them before it counts
    }
    try:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", str(PYTHON), str(DRIVER),
             "--requests", str(args.requests), "--warm", str(args.warm),
             "--seed", str(args.seed)],
            env=env, capture_output=True, text=True, cwd=str(tree), check=True,
        )  # fmt: skip
    finally:
        _drop_database(name)
    collected = next(
        int(line.split()[-1]) for line in run.stderr.splitlines() if "Collected :" in line
    )
    statuses = next(line for line in run.stdout.splitlines() if line.startswith("statuses"))
    per_request = collected / args.requests
    print(f"   {label}: {per_request / 1e6:.3f} M instructions a request ({statuses})")
    return {"instructions_per_request": round(per_request), "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--db", default="labshare_bench_booking", help="the template")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    revision = subprocess.run(
        ["git", "rev-parse", args.base], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    base_tree = Path(tempfile.mkdtemp(prefix="labshare-base-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base_tree), revision],
        check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    print(f"instructions a booking request, {args.requests} requests after {args.warm}:")
    try:
        base = count(base_tree, "base", args)
        this = count(ROOT, "this", args)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False
        )
    ratio = this["instructions_per_request"] / base["instructions_per_request"]  # type: ignore[operator]
    print(f"   this / {args.base} = {ratio:.4f}")
    report = {"base": revision, "requests": args.requests, "warm": args.warm,
              "seed": args.seed, "base_run": base, "this_run": this, "ratio": round(ratio, 4)}  # fmt: skip
    print(f"written {write_result('instructions', report)}")


if __name__ == "__main__":
    main()
