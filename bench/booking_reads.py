"""The booking benchmark's read figures: /slots, availability and the instrument feed."""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from bench.common import ms, run_clients


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
