"""Benchmark: server time of every web page on the 12,600-instrument demo with a year of bookings.

Builds its own database (PostgreSQL `labshare_bench_pages` by default, or a SQLite file):
migrations, the demo network (`seed_network`), then a year of bookings (about 1.3 million,
past ones completed, the next 60 days confirmed), pending requests and a month of usage for
the demo lab, and a previewed settlement for last month. Serves the app with uvicorn on a
free port and asks for each page as the demo's people (researcher, lab manager, network
admin), signed in through the sign-in form; reports p50/p95/max per page (target: 100 ms)
and the JSON the pages' scripts load (availability, KPIs) separately.

    .venv/bin/python bench/pages.py [--backend postgres|sqlite] [--requests N] [--skip-setup]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import SECRET  # noqa: E402  (after the path)

SERVER = os.environ.get("LABSHARE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 100.0

# A year back and 60 days ahead, one two-hour booking every fourth day per instrument, in
# working hours of Asia/Shanghai (01:00-09:00 UTC), spread over the researchers.
BOOKINGS_PG = """
WITH u AS (SELECT array_agg(id ORDER BY id) AS ids FROM "user" WHERE role = 'researcher'),
ins AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM instrument)
INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, purpose, version,
                     created_at, updated_at)
SELECT ins.id, u.ids[1 + (ins.n * 7 + d + 1000) % array_length(u.ids, 1)],
       date_trunc('day', now()) + d * interval '1 day' + interval '1 hour' * (1 + (ins.n % 4) * 2),
       date_trunc('day', now()) + d * interval '1 day' + interval '1 hour' * (3 + (ins.n % 4) * 2),
       CASE WHEN d < 0 THEN 'completed' ELSE 'confirmed' END, '', 1, now(), now()
FROM ins, u, generate_series(-365, 60) d
WHERE (ins.n + d) % 4 = 0
"""
BOOKINGS_SQLITE = """
WITH RECURSIVE days(d) AS (SELECT -365 UNION ALL SELECT d + 1 FROM days WHERE d < 60),
u AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM "user" WHERE role = 'researcher'),
nu AS (SELECT count(*) AS c FROM u),
ins AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM instrument)
INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, purpose, version,
                     created_at, updated_at)
SELECT ins.id, u.id,
       datetime(:today, d || ' days', (1 + (ins.n % 4) * 2) || ' hours'),
       datetime(:today, d || ' days', (3 + (ins.n % 4) * 2) || ' hours'),
       CASE WHEN d < 0 THEN 'completed' ELSE 'confirmed' END, '', 1, :now, :now
FROM ins, days, nu JOIN u ON u.k = (ins.n * 7 + d + 1000) % nu.c
WHERE (ins.n + d) % 4 = 0
"""


def _urls(backend: str, db: str) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:////tmp/{db}.db", None
    base = SERVER.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+psycopg://{base}/{db}", f"postgresql://{base}/{db}"


def setup(backend: str, db: str) -> dict[str, Any]:
    """A fresh database: the demo network, a year of bookings, lab activity, a settlement."""
    import sqlalchemy as sa

    import migrations
    from core.db import make_engine, session_scope
    from instruments.seed import seed_network

    url, _dsn = _urls(backend, db)
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"/tmp/{db}.db{suffix}").unlink(missing_ok=True)
    else:
        import psycopg

        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
    started = time.monotonic()
    migrations.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine=engine) as session:
        seed_network(session)
    seeded = time.monotonic() - started
    started = time.monotonic()
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        if backend == "sqlite":
            conn.execute(
                sa.text(BOOKINGS_SQLITE),
                {"today": today.strftime("%Y-%m-%d %H:%M:%S"),
                 "now": now.strftime("%Y-%m-%d %H:%M:%S")},
            )  # fmt: skip
        else:
            # A year of bookings in one statement outlasts the app's statement timeout.
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            conn.execute(sa.text(BOOKINGS_PG))
    _lab_activity(engine, now)
    loaded = time.monotonic() - started
    started = time.monotonic()
    settlement_id = _settlement(engine)
    settled = time.monotonic() - started
    with engine.begin() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM booking")).scalar_one()
    # As autovacuum leaves a database that has settled after a bulk load: statistics, and
    # on PostgreSQL visibility maps, so that counts read indexes only.
    statement = "VACUUM ANALYZE" if backend == "postgres" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(statement))
    engine.dispose()
    print(
        f"setup: seeded in {seeded:.1f} s; {total:,} bookings and lab activity in {loaded:.1f} s; "
        f"settlement preview in {settled:.1f} s"
    )
    return {"bookings": total, "seed_s": round(seeded, 1), "bookings_s": round(loaded, 1),
            "settlement_preview_s": round(settled, 1), "settlement_id": settlement_id}  # fmt: skip


def _lab_activity(engine: Any, now: datetime) -> None:
    """The demo people's share: the researcher's bookings, the lab's requests, usage, no-shows."""
    import sqlalchemy as sa

    from instruments.seed import DEMO_DOMAIN, DEMO_LAB

    with engine.begin() as conn:
        researcher = conn.execute(
            sa.text('SELECT id FROM "user" WHERE email = :e'), {"e": f"researcher@{DEMO_DOMAIN}"}
        ).scalar_one()
        lab = conn.execute(
            sa.text("SELECT id FROM lab WHERE code = :c"), {"c": DEMO_LAB}
        ).scalar_one()
        conn.execute(
            sa.text("UPDATE booking SET user_id = :u WHERE id % 3000 = 0"), {"u": researcher}
        )
        in_lab = "instrument_id IN (SELECT id FROM instrument WHERE lab_id = :lab)"
        conn.execute(
            sa.text(f"UPDATE booking SET status = 'pending', expires_at = start_at "
                    f"WHERE {in_lab} AND start_at > :now AND id % 3 = 0"),
            {"lab": lab, "now": now},
        )  # fmt: skip
        month_ago = now - timedelta(days=31)
        conn.execute(
            sa.text(f"UPDATE booking SET status = 'no_show' WHERE {in_lab} AND start_at > :since "
                    f"AND end_at < :now AND id % 7 = 0"),
            {"lab": lab, "since": month_ago, "now": now},
        )  # fmt: skip
        rows = conn.execute(
            sa.text(f"SELECT id, instrument_id, user_id, start_at, end_at FROM booking "
                    f"WHERE {in_lab} AND status = 'completed' AND start_at > :since"),
            {"lab": lab, "since": month_ago},
        ).all()  # fmt: skip
        usage = []
        for n, (booking_id, instrument_id, user_id, start, end) in enumerate(rows):
            start, end = _aware(start), _aware(end)
            over = 25 if n % 6 == 0 else 0
            usage.append({"instrument_id": instrument_id, "user_id": user_id, "start_at": start,
                          "end_at": end + timedelta(minutes=over), "last_event_at": end,
                          "booking_id": booking_id, "kind": "booked", "overtime_minutes": over,
                          "samples": 0, "kwh": 0.0, "created_at": now})  # fmt: skip
            if n % 5 == 0:  # someone walked up the evening after
                walk = end + timedelta(hours=6)
                usage.append({"instrument_id": instrument_id, "user_id": None, "start_at": walk,
                              "end_at": walk + timedelta(hours=1), "last_event_at": walk,
                              "booking_id": None, "kind": "walk_up", "overtime_minutes": 0,
                              "samples": 0, "kwh": 0.0, "created_at": now})  # fmt: skip
        if usage:
            from telemetry.models import UsageSession

            conn.execute(sa.insert(UsageSession.__table__), usage)  # type: ignore[attr-defined]


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _settlement(engine: Any) -> int:
    """A policy and last month's preview settlement, through the admin services."""
    from admin.policies import policy_create
    from admin.settlement import settlement_preview
    from admin.subsidy import policy_parse
    from core.db import session_scope
    from core.periods import last_month

    with session_scope(engine=engine) as session:
        policy = policy_create(
            session,
            document=policy_parse({"name": "bench", "budget": 500_000_000,
                                   "weights": {"external_hours": 10, "utilisation": 5}}),
            actor_id=None,
        )  # fmt: skip
        row = settlement_preview(session, period=last_month(), policy_id=policy.id, actor_id=None)
        assert row.id is not None
        return row.id


def serve(url: str) -> tuple[subprocess.Popen[bytes], str]:
    """`labshare serve` (one worker) as its own process, as it runs for people: the
    client's time in this process does not share the server's interpreter lock. This
    process reads the same database for its set-up queries."""
    from bench.common import free_port, serve_labshare
    from core.settings import get_settings

    os.environ["LABSHARE_DATABASE_URL"] = url
    os.environ["LABSHARE_SECRET_KEY"] = SECRET
    get_settings.cache_clear()
    port = free_port()
    return serve_labshare(url, port, 1), f"http://127.0.0.1:{port}"


def signed_in(base: str, email: str) -> httpx.Client:
    from instruments.seed import DEMO_PASSWORD

    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/signin").text
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/signin", data={"email": email, "password": DEMO_PASSWORD, "csrf_token": token}
    )
    assert response.status_code in (200, 303), response.text
    client.headers["X-CSRF-Token"] = re.search(  # type: ignore[union-attr]
        r'name="csrf-token" content="([0-9a-f]+)"', client.get("/").text
    ).group(1)
    return client


def measure(client: httpx.Client, method: str, path: str, n: int, **kw: Any) -> dict[str, Any]:
    for _ in range(2):
        client.request(method, path, **kw)
    times, status = [], 0
    for _ in range(n):
        started = time.perf_counter()
        response = client.request(method, path, **kw)
        times.append(time.perf_counter() - started)
        status = response.status_code
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {"status": status, "p50_ms": round(statistics.median(times) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1), "max_ms": round(max(times) * 1000, 1)}  # fmt: skip


def pages(base: str, n: int, settlement_id: int | None) -> dict[str, dict[str, Any]]:
    """Every page, as the person who uses it."""
    import sqlalchemy as sa

    from core.db import get_engine
    from core.periods import last_month, months_back
    from instruments.seed import DEMO_DOMAIN, DEMO_LAB

    with get_engine().connect() as conn:
        busy = conn.execute(
            sa.text("SELECT i.id FROM instrument i JOIN lab l ON l.id = i.lab_id "
                    "WHERE l.code = :c ORDER BY i.id LIMIT 1"), {"c": DEMO_LAB},
        ).scalar_one()  # fmt: skip
        last = conn.execute(sa.text("SELECT max(id) FROM instrument")).scalar_one()
        settlement_id = (
            settlement_id or conn.execute(sa.text("SELECT max(id) FROM settlement")).scalar_one()
        )
        taken = conn.execute(
            sa.text("SELECT start_at, end_at FROM booking WHERE instrument_id = :i "
                    "AND start_at > :t ORDER BY start_at LIMIT 1"),
            {"i": busy, "t": datetime.now(UTC) + timedelta(days=2)},
        ).one()  # fmt: skip
    anyone = httpx.Client(base_url=base, timeout=60)
    researcher = signed_in(base, f"researcher@{DEMO_DOMAIN}")
    manager = signed_in(base, f"manager@{DEMO_DOMAIN}")
    admin = signed_in(base, f"admin@{DEMO_DOMAIN}")
    start = _aware(taken[0]).isoformat()
    end = _aware(taken[1]).isoformat()
    week = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    plan: list[tuple[str, httpx.Client, str, str, dict[str, Any]]] = [
        ("catalog", anyone, "GET", "/", {}),
        ("catalog: text search", anyone, "GET", "/?q=mass", {}),
        ("catalog: category", anyone, "GET", "/?category=ms", {}),
        ("catalog: status filter", anyone, "GET", "/?status=maintenance", {}),
        ("catalog: next page", anyone, "GET", "/?q=spectr&page=2", {}),
        ("catalog: signed in (prices)", researcher, "GET", "/?q=mass", {}),
        ("find a free slot (category, 2 h)", researcher, "GET", "/find?category=ms&hours=2", {}),
        ("instrument page", anyone, "GET", f"/instruments/{busy}", {}),
        ("instrument page (last id)", anyone, "GET", f"/instruments/{last}", {}),
        ("instrument live status", anyone, "GET", f"/instruments/{busy}/live", {}),
        ("sign-in page", anyone, "GET", "/signin", {}),
        ("book: refused with alternatives (409)", researcher, "POST",
         f"/instruments/{busy}/book", {"data": {"start": start, "end": end}}),
        ("my bookings", researcher, "GET", "/me/bookings", {}),
        ("my invoices", researcher, "GET", "/me/invoices", {}),
        ("lab desk", manager, "GET", "/lab", {}),
        ("lab status board", manager, "GET", "/lab/status", {}),
        ("lab usage (7 days)", manager, "GET", "/lab/usage?days=7", {}),
        ("lab usage (14 days)", manager, "GET", "/lab/usage?days=14", {}),
        ("lab instrument editor", manager, "GET", f"/lab/instruments/{busy}", {}),
        ("network dashboard", admin, "GET", f"/admin?period={last_month()}", {}),
        ("settlements", admin, "GET", "/admin/settlements", {}),
        ("settlement", admin, "GET", f"/admin/settlements/{settlement_id}", {}),
        ("audit log", admin, "GET", "/admin/audit", {}),
    ]  # fmt: skip
    data: list[tuple[str, httpx.Client, str, str, dict[str, Any]]] = [
        ("availability, one week (calendar)", anyone, "GET",
         f"/api/v1/instruments/{busy}/availability", {"params": {
             "start": week.isoformat(), "end": (week + timedelta(days=7)).isoformat()}}),
        ("network KPIs, one month (dashboard)", admin, "GET", "/api/v1/admin/kpis",
         {"params": {"period": last_month()}}),
        ("network KPI trend, six months (dashboard)", admin, "GET", "/api/v1/admin/kpis/trend",
         {"params": {"from": months_back(last_month(), 6)[0], "to": last_month()}}),
    ]  # fmt: skip
    results: dict[str, dict[str, Any]] = {"pages": {}, "page_data": {}}
    # The server warms the dashboard's figures in the background at start (several seconds
    # of CPU): wait for that, so the pages are measured as they run, not beside the warm-up.
    started = time.monotonic()
    trend = months_back(last_month(), 6)
    admin.get("/api/v1/admin/kpis", params={"period": last_month()}, timeout=120)
    admin.get("/api/v1/admin/kpis/trend", params={"from": trend[0], "to": trend[-1]}, timeout=120)
    print(f"(dashboard figures warm after {time.monotonic() - started:.1f} s)")
    for group, items in (("pages", plan), ("page_data", data)):
        for name, client, method, path, kw in items:
            results[group][name] = {"path": path, **measure(client, method, path, n, **kw)}
            r = results[group][name]
            flag = "" if r["p95_ms"] < TARGET_MS else "  <-- over 100 ms"
            print(f"{name:40s} {r['status']:>3}  p50 {r['p50_ms']:7.1f}  p95 {r['p95_ms']:7.1f}  "
                  f"max {r['max_ms']:7.1f} ms{flag}")  # fmt: skip
    return results


def counts() -> dict[str, int]:
    """What the measured database holds."""
    import sqlalchemy as sa

    from core.db import get_engine

    tables = ("instrument", "booking", "usage_session", "settlement", "audit_entry")
    with get_engine().connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--db", default="labshare_bench_pages")
    parser.add_argument("--skip-setup", action="store_true")
    args = parser.parse_args()
    url, _ = _urls(args.backend, args.db)
    built = None if args.skip_setup else setup(args.backend, args.db)
    from bench.common import stop

    server, base = serve(url)
    try:
        data = counts()
        results = pages(base, args.requests, built["settlement_id"] if built else None)
    finally:
        stop(server)
    over = [n for n, r in results["pages"].items() if r["p95_ms"] >= TARGET_MS]
    report = {
        "benchmark": "pages",
        "database": args.backend,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # The machine is shared: a high load average inflates every figure.
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "instruments": 12_600,
        "setup": built,
        "data": data,
        "requests_per_page": args.requests,
        "server": "labshare serve (uvicorn, 1 worker) as a subprocess, loopback; times measured by the client",
        "target_ms": TARGET_MS,
        "pages_over_target_p95": over,
        **results,
    }
    out = ROOT / "bench" / "results" / f"pages-{args.backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}; pages over {TARGET_MS:.0f} ms at p95: {over or 'none'}")


if __name__ == "__main__":
    main()
