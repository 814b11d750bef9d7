"""Benchmark: CPU a request's hop to a worker thread and back costs, three ways, one run.

Each unit of work (core.routing) runs in a worker thread; the hop there and back is paid
on every request. A trivial call is made `--calls` times, one at a time, on uvloop (what
`labshare serve` runs), through: Starlette's run_in_threadpool (anyio), concurrent.futures'
ThreadPoolExecutor with asyncio.wrap_future, and core.threads.in_worker_thread. Printed:
the process's CPU per call for each (both threads and the wake-ups), and the ratios to
core.threads. What limits all three is the same: two thread wake-ups a call.

    .venv/bin/python bench/thread_hop.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from pathlib import Path
from typing import Any

import uvloop
from starlette.concurrency import run_in_threadpool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_result
from core.threads import WorkerThreads, in_worker_thread


def _same(value: int) -> int:
    return value


def _hops() -> dict[str, Callable[[int], Awaitable[Any]]]:
    executor = ThreadPoolExecutor(8)
    threads = WorkerThreads(8, name="bench-hop")
    return {
        "anyio run_in_threadpool": lambda n: run_in_threadpool(_same, n),
        "ThreadPoolExecutor": lambda n: asyncio.wrap_future(
            executor.submit(copy_context().run, _same, n)
        ),
        "core.threads": lambda n: in_worker_thread(_same, n, threads=threads),
    }


async def _cpu_per_call(hop: Callable[[int], Awaitable[Any]], calls: int) -> float:
    for n in range(200):  # threads started, caches warm
        await hop(n)
    began = time.process_time()
    for n in range(calls):
        await hop(n)
    return (time.process_time() - began) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    async def measure() -> dict[str, list[float]]:
        hops = _hops()
        figures: dict[str, list[float]] = {name: [] for name in hops}
        for _ in range(args.rounds):  # taking turns, so a drift of the machine hits all
            for name, hop in hops.items():
                figures[name].append(await _cpu_per_call(hop, args.calls))
        return figures

    figures = uvloop.run(measure())
    ours = min(figures["core.threads"])
    report: dict[str, Any] = {"calls": args.calls, "rounds": args.rounds, "us_per_call": {}}
    print(f"CPU a thread hop costs (best of {args.rounds} rounds of {args.calls} calls, uvloop):")
    for name, values in figures.items():
        best = min(values)
        report["us_per_call"][name] = round(best, 1)
        print(f"   {name}: {best:.1f} us ({best / ours:.2f}x core.threads)")
    print(f"written {write_result('thread-hop', report)}")


if __name__ == "__main__":
    main()
