"""Benchmark: the monthly invoice run over a month of the 12,600-instrument network (PostgreSQL).

Builds its own database (default labshare_bench_billing), generates the network and a
month of data with generate_series SQL (520,000 bookings by default: completed with
matching usage, some overtime, no-shows, late cancellations; walk-up sessions; rate
cards, charging policies, a voucher programme), then runs `labshare invoices run` in a
fresh process and reports its wall time and peak memory (max RSS), runs it again
(nothing is charged twice), and closes the month (finalize and post to the ledger).

    .venv/bin/python bench/billing.py [--bookings N] [--instruments N] [--db NAME] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("LABSHARE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PERIOD = "2026-11"
MONTH_START = "2026-11-01 00:00:00+08"

GENERATE = """
INSERT INTO institution (code, name, kind, is_small_company, created_at)
SELECT 'I' || g, 'Institution ' || g,
       CASE WHEN g <= 80 THEN (ARRAY['university', 'institute', 'hospital'])[1 + g %% 3]
            WHEN g <= 380 THEN 'company' ELSE 'small_company' END,
       g > 380, now()
FROM generate_series(1, %(institutions)s) g;

-- 405 labs (130 key labs, 275 centres) at the 80 academic institutions.
INSERT INTO lab (code, name, institution_id, is_key_lab, no_show_grace_minutes, created_at)
SELECT 'L' || g, 'Lab ' || g, (SELECT min(id) FROM institution) + g %% 80, g <= 130, 30, now()
FROM generate_series(1, 405) g;

INSERT INTO category (code, name, name_zh) VALUES ('g', 'Group', '');
INSERT INTO category (code, name, name_zh, parent_id)
SELECT 'c' || g, 'Category ' || g, '', (SELECT id FROM category WHERE code = 'g')
FROM generate_series(1, 40) g;

INSERT INTO instrument (code, name, category_id, lab_id, model, manufacturer, description,
    location, asset_value, status, slot_step_minutes, min_minutes, max_minutes, lead_minutes,
    horizon_days, approval_required, qualification_required, created_at, updated_at)
SELECT 'X' || g, 'Instrument ' || g,
       (SELECT min(id) FROM category WHERE parent_id IS NOT NULL) + g %% 40,
       (SELECT min(id) FROM lab) + g %% 405, '', '', '', '', 100000, 'active',
       30, 30, 480, 60, 90, false, false, now(), now()
FROM generate_series(1, %(instruments)s) g;

-- Researchers at every institution.
INSERT INTO "user" (email, name, password_hash, role, institution_id, feed_token, is_active,
                    created_at)
SELECT 'u' || g || '@bench.example', '', 'x', 'researcher',
       (SELECT min(id) FROM institution) + g %% %(institutions)s, 'feed' || g, true, now()
FROM generate_series(1, %(users)s) g;

-- Rate cards: every instrument has its own internal, academic and company prices (every
-- tenth per sample); small companies use a per-lab category default.
INSERT INTO rate_card (lab_id, instrument_id, category_id, payer_class, unit, amount, currency,
    minimum_charge, rounding_minutes, assisted_surcharge, effective_from, effective_to,
    created_at)
SELECT i.lab_id, i.id, NULL, c.payer_class, CASE WHEN i.id %% 10 = 0 THEN 'sample' ELSE 'hour' END,
       c.amount + (i.id %% 50) * 100, 'cny', 5000, CASE WHEN i.id %% 3 = 0 THEN 15 ELSE 1 END,
       8000, timestamptz '2026-01-01 00:00+08', NULL, now()
FROM instrument i,
     (VALUES ('internal', 8000), ('academic', 15000), ('company', 40000)) c(payer_class, amount);
INSERT INTO rate_card (lab_id, instrument_id, category_id, payer_class, unit, amount, currency,
    minimum_charge, rounding_minutes, assisted_surcharge, effective_from, effective_to,
    created_at)
SELECT DISTINCT i.lab_id, NULL::int, i.category_id, 'small_company', 'hour', 20000, 'cny', 0, 30,
       0, timestamptz '2026-01-01 00:00+08', NULL::timestamptz, now()
FROM instrument i;

INSERT INTO charging_policy (lab_id, basis, no_show_fee, late_cancel_window_minutes,
    late_cancel_fee, bill_overtime, currency, updated_at)
SELECT id, (ARRAY['booked', 'used', 'larger'])[1 + id %% 3], 10000, 1440, 5000, true, 'cny', now()
FROM lab;

INSERT INTO voucher_programme (code, name, currency, budget, coverage_bp, company_yearly_cap,
    starts_on, ends_on, spent, created_at)
VALUES ('IV2026', 'Innovation vouchers 2026', 'cny', 2000000000, 5000, 5000000,
        date '2026-01-01', date '2026-12-31', 0, now());

-- The month's bookings: about 41 per instrument, 2 to 4 hours each, on a 16-hour grid.
INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, purpose, version,
                     created_at, updated_at, cancelled_at, cancelled_by_id)
SELECT (SELECT min(id) FROM instrument) + g %% %(instruments)s,
       (SELECT min(id) FROM "user") + (g::bigint * 7919) %% %(users)s,
       timestamptz %(month_start)s + (g / %(instruments)s) * interval '16 hours',
       timestamptz %(month_start)s + (g / %(instruments)s) * interval '16 hours'
           + (2 + g %% 3) * interval '1 hour',
       CASE WHEN g %% 20 = 0 THEN 'no_show' WHEN g %% 20 = 1 THEN 'cancelled' ELSE 'completed' END,
       '', 1, now(), now(),
       CASE WHEN g %% 20 = 1 THEN timestamptz %(month_start)s + (g / %(instruments)s)
            * interval '16 hours' - (CASE WHEN g %% 40 = 1 THEN 2 ELSE 72 END) * interval '1 hour'
       END,
       -- The booker cancelled (the late ones pay the fee).
       CASE WHEN g %% 20 = 1 THEN (SELECT min(id) FROM "user") + (g::bigint * 7919) %% %(users)s END
FROM generate_series(0, %(bookings)s - 1) g;

-- Usage matching each completed booking: starts on time, runs -30..+45 minutes around it.
INSERT INTO usage_session (instrument_id, user_id, start_at, end_at, last_event_at, booking_id,
                           kind, overtime_minutes, samples, kwh, created_at)
SELECT b.instrument_id, b.user_id, b.start_at,
       b.end_at + ((b.id %% 6) * 15 - 30) * interval '1 minute',
       b.end_at + ((b.id %% 6) * 15 - 30) * interval '1 minute', b.id, 'booked',
       GREATEST(0, (b.id %% 6) * 15 - 30), 1 + b.id %% 12, 0, now()
FROM booking b WHERE b.status = 'completed';

-- Walk-up use without a booking, in the gaps of the grid.
INSERT INTO usage_session (instrument_id, user_id, start_at, end_at, last_event_at, booking_id,
                           kind, overtime_minutes, samples, kwh, created_at)
SELECT (SELECT min(id) FROM instrument) + g %% %(instruments)s,
       (SELECT min(id) FROM "user") + (g::bigint * 104729) %% %(users)s,
       timestamptz %(month_start)s + (g %% 40) * interval '16 hours' + interval '5 hours',
       timestamptz %(month_start)s + (g %% 40) * interval '16 hours' + interval '6 hours',
       timestamptz %(month_start)s + (g %% 40) * interval '16 hours' + interval '6 hours',
       NULL, 'walk_up', 0, 3, 0, now()
FROM generate_series(1, %(walk_ups)s) g;

INSERT INTO assisted_use (booking_id, created_at)
SELECT id, now() FROM booking WHERE id %% 50 = 7 AND status = 'completed';
ANALYZE;
"""


def _conninfo(db: str) -> str:
    return SERVER.rsplit("/", 1)[0] + "/" + db


def build(db: str, params: dict[str, object]) -> float:
    """Create, migrate and fill the bench database; returns seconds spent."""
    started = time.perf_counter()
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    import migrations

    migrations.upgrade(_conninfo(db).replace("postgresql://", "postgresql+psycopg://"))
    with psycopg.connect(_conninfo(db), autocommit=False) as conn:
        # Client-side binding: one round trip for the whole script.
        with psycopg.ClientCursor(conn) as cursor:
            cursor.execute(GENERATE, params)  # type: ignore[arg-type]
        conn.commit()
    return time.perf_counter() - started


def timed(args: list[str], url: str) -> dict[str, object]:
    """Run a labshare command in a fresh process: wall seconds, its peak RSS, its output."""
    env = {**os.environ, "LABSHARE_DATABASE_URL": url}
    env.pop("LABSHARE_STRIPE_API_KEY", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "labshare"), *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    # ru_maxrss of children is the largest of them so far: each step runs after a smaller one.
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return {
        "seconds": round(seconds, 2),
        "maxrss_mb": round(max(maxrss, before) / 1024, 1),
        "stdout": out.stdout.strip(),
        "progress": out.stderr.strip().splitlines(),
    }


def counts(db: str) -> dict[str, int]:
    with psycopg.connect(_conninfo(db)) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM instrument), (SELECT count(*) FROM booking),
                      (SELECT count(*) FROM usage_session), (SELECT count(*) FROM charge),
                      (SELECT count(*) FROM invoice), (SELECT coalesce(sum(total), 0) FROM invoice),
                      (SELECT coalesce(sum(voucher_total), 0) FROM invoice),
                      (SELECT coalesce(sum(amount), 0) FROM posting)"""
        ).fetchone()
    assert row is not None
    keys = (
        "instruments",
        "bookings",
        "usage_sessions",
        "charges",
        "invoices",
        "invoiced_total",
        "vouchers_total",
        "ledger_sum",
    )
    return dict(zip(keys, (int(v) for v in row), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=520_000)
    parser.add_argument("--instruments", type=int, default=12_600)
    parser.add_argument("--institutions", type=int, default=1_600)
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--walk-ups", type=int, default=40_000)
    parser.add_argument("--db", default="labshare_bench_billing")
    args = parser.parse_args()
    params = {
        "bookings": args.bookings,
        "instruments": args.instruments,
        "institutions": args.institutions,
        "users": args.users,
        "walk_ups": args.walk_ups,
        "month_start": MONTH_START,
    }
    print(
        f"building {args.db}: {args.bookings:,} bookings on {args.instruments:,} instruments",
        file=sys.stderr,
    )
    build_s = build(args.db, params)
    url = _conninfo(args.db).replace("postgresql://", "postgresql+psycopg://")
    print(f"built in {build_s:.1f} s; running the month", file=sys.stderr)
    first = timed(["invoices", "run", "--period", PERIOD], url)
    print(first["stdout"], file=sys.stderr)
    second = timed(["invoices", "run", "--period", PERIOD], url)
    close = timed(["invoices", "close", "--period", PERIOD], url)
    after = counts(args.db)
    result = {
        "benchmark": "billing invoice run",
        "database": "postgresql",
        "period": PERIOD,
        "build_s": round(build_s, 1),
        "run_s": first["seconds"],
        "run_maxrss_mb": first["maxrss_mb"],
        "rerun_s": second["seconds"],
        "rerun_output": second["stdout"],
        "close_s": close["seconds"],
        "close_maxrss_mb": close["maxrss_mb"],
        "run_output": first["stdout"],
        "run_progress": first["progress"],
        **after,
        "targets": {"run_s": 30, "maxrss_mb": 500},
    }
    result["ok"] = bool(
        first["seconds"] < 30 and first["maxrss_mb"] < 500 and after["ledger_sum"] == 0
    )
    print(json.dumps(result, indent=2))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "billing.json").write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
