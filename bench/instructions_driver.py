"""bench/instructions.py's driver: run under valgrind with PYTHONPATH at the tree measured.

Serves booking requests to labshare's ASGI app in-process, one at a time: `--warm` of them,
then `--requests` with valgrind's instruction counting switched on (callgrind_control).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
from collections import Counter
from typing import Any

from bench.booking_setup import plan_slots, tokens, with_conflicts
from labshare.app import create_app


def _scope(body: bytes, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/bookings",
        "raw_path": b"/api/v1/bookings",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


async def _post(app: Any, body: bytes, token: str) -> int:
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(body, token), receive, send)
    return int(sent[0]["status"])


def _counting(on: bool) -> None:
    switch = "on" if on else "off"
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], capture_output=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warm", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    url = os.environ["LABSHARE_DATABASE_URL"]
    app = create_app()
    try:  # trees that read every instrument's hours at start: do it before counting
        from sqlmodel import Session

        from booking.timeline import warm_hours  # type: ignore[attr-defined]
        from core.db import get_engine

        with Session(get_engine()) as session:
            warm_hours(session)
    except ImportError:
        pass
    people = tokens(url, 8)
    plan = plan_slots(url, args.warm + args.requests, (3, 28), seed=args.seed)
    rng = random.Random(args.seed)
    warm = with_conflicts(plan[: args.warm * 2 // 3], rng)[: args.warm]
    measured = with_conflicts(plan[args.warm :], rng)[: args.requests]

    def bodies(jobs: list[Any]) -> list[bytes]:
        return [
            json.dumps({"instrument_id": i, "start": s.isoformat(), "end": e.isoformat()}).encode()
            for i, s, e in jobs
        ]

    statuses: Counter[int] = Counter()
    async with app.router.lifespan_context(app):
        for n, body in enumerate(bodies(warm)):
            await _post(app, body, people[n % len(people)])
        _counting(True)
        for n, body in enumerate(bodies(measured)):
            statuses[await _post(app, body, people[n % len(people)])] += 1
        _counting(False)
    print("statuses", dict(sorted(statuses.items())))


if __name__ == "__main__":
    asyncio.run(main())
