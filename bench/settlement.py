"""Benchmark: settle a month of the 12,600-instrument network on PostgreSQL.

Builds its own database (default labshare_bench_settlement), generates the network and
a month of data with generate_series SQL (500,000 usage sessions by default, charges,
invoices and voucher redemptions), then previews and finalizes the settlement in a
fresh process and reports its wall time and peak memory (max RSS).

    .venv/bin/python bench/settlement.py [--sessions N] [--instruments N] [--db NAME]
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
PERIOD = "2026-10"

GENERATE = """
INSERT INTO institution (code, name, kind, is_small_company, created_at)
SELECT 'BI' || g, 'Institution ' || g,
       CASE WHEN g %% 4 = 0 THEN 'small_company' WHEN g %% 4 = 1 THEN 'university'
            ELSE 'institute' END,
       g %% 4 = 0, now()
FROM generate_series(1, %(institutions)s) g;

INSERT INTO lab (code, name, institution_id, is_key_lab, no_show_grace_minutes, created_at)
SELECT 'BL' || g, 'Lab ' || g,
       -- labs belong to the universities and institutes, not to the small companies
       (SELECT min(id) FROM institution) + (g * 4 + g %% 3) %% %(institutions)s,
       g <= 130, 30, now()
FROM generate_series(1, %(labs)s) g;

INSERT INTO category (code, name, name_zh) VALUES ('bg', 'Group', '');
INSERT INTO category (code, name, name_zh, parent_id)
SELECT 'bc' || g, 'Category ' || g, '', (SELECT id FROM category WHERE code = 'bg')
FROM generate_series(1, 40) g;

INSERT INTO instrument (code, name, category_id, lab_id, model, manufacturer, description,
    location, asset_value, status, slot_step_minutes, min_minutes, max_minutes, lead_minutes,
    horizon_days, approval_required, qualification_required, created_at, updated_at)
SELECT 'BX' || g, 'Instrument ' || g,
       (SELECT min(id) FROM category WHERE parent_id IS NOT NULL) + g %% 40,
       (SELECT min(id) FROM lab) + g %% %(labs)s, '', '', '', '',
       (g * 7919) %% 5000000 * 100, 'active', 30, 30, 480, 60, 90, false, false, now(), now()
FROM generate_series(1, %(instruments)s) g;

INSERT INTO opening_hours (instrument_id, weekday, opens, closes)
SELECT i.id, d, time '08:00', time '20:00' FROM instrument i, generate_series(0, 6) d;

INSERT INTO "user" (email, name, password_hash, role, institution_id, is_active, feed_token,
    created_at)
SELECT 'bench' || g || '@example.org', '', 'x', 'researcher',
       (SELECT min(id) FROM institution) + g %% %(institutions)s, true, 'bench-ft-' || g, now()
FROM generate_series(1, %(users)s) g;

INSERT INTO usage_session (instrument_id, user_id, start_at, end_at, last_event_at, kind,
    overtime_minutes, samples, kwh, created_at)
SELECT i0 + (g * 7 + g / 13) %% %(instruments)s, u0 + (g * 31) %% %(users)s, s, s + d, s + d,
       'walk_up', 0, 0, 0, now()
FROM generate_series(1, %(sessions)s) g,
     LATERAL (SELECT min(id) AS i0 FROM instrument) mi,
     LATERAL (SELECT min(id) AS u0 FROM "user") mu,
     LATERAL (SELECT timestamptz '2026-09-30 16:00+00' + (g %% 44000) * interval '1 minute' AS s,
                     (30 + g %% 210) * interval '1 minute' AS d) t;

INSERT INTO invoice (number, payer_institution_id, period, currency, status, line_count,
    subtotal, voucher_total, total, amount_paid, payment_failures, created_at)
SELECT 'BINV-' || i.id, i.id, '2026-10', 'cny', 'finalized', 0, 0, 0, 0, 0, 0, now()
FROM institution i WHERE i.is_small_company;

INSERT INTO charge (kind, source_id, period, payer_institution_id, provider_institution_id,
    lab_id, instrument_id, user_id, usage_session_id, payer_class, unit, quantity, unit_amount,
    surcharge_amount, amount, currency, voucher_eligible, service_start_at, service_end_at,
    invoice_id, created_at)
SELECT 'walk_up', s.id, '2026-10', u.institution_id, l.institution_id, l.id, s.instrument_id,
       s.user_id, s.id, 'academic', 'minute', 60, 30000, 0, 30000 + s.id %% 1000, 'cny',
       pi.is_small_company, s.start_at, s.end_at, inv.id, now()
FROM usage_session s
JOIN "user" u ON u.id = s.user_id
JOIN institution pi ON pi.id = u.institution_id
JOIN instrument ins ON ins.id = s.instrument_id
JOIN lab l ON l.id = ins.lab_id
LEFT JOIN invoice inv ON inv.payer_institution_id = pi.id AND inv.period = '2026-10'
WHERE s.id %% 2 = 0;

UPDATE invoice v SET subtotal = c.total, voucher_total = c.total / 2, total = c.total - c.total / 2
FROM (SELECT invoice_id, sum(amount) AS total FROM charge WHERE invoice_id IS NOT NULL
      GROUP BY invoice_id) c WHERE c.invoice_id = v.id;

INSERT INTO voucher_programme (code, name, currency, budget, coverage_bp, company_yearly_cap,
    starts_on, ends_on, spent, created_at)
VALUES ('BV', 'Bench vouchers', 'cny', 100000000000, 5000, 1000000000, '2026-01-01',
        '2026-12-31', 0, now());

INSERT INTO voucher_redemption (programme_id, invoice_id, institution_id, year,
    eligible_amount, amount, created_at)
SELECT (SELECT id FROM voucher_programme WHERE code = 'BV'), v.id, v.payer_institution_id,
       2026, v.subtotal, v.voucher_total, now()
FROM invoice v WHERE v.voucher_total > 0;

ANALYZE;
"""

POLICY = {
    "name": "bench",
    "currency": "cny",
    "budget": 5_000_000_000,
    "point_value": 100,
    "weights": {"external_hours": 50, "external_revenue": "0.1", "outside_users": 20,
                "utilisation": 10},
    "institution_cap": 60_000_000,
    "eligibility": {"min_asset_value": 10_000_000, "min_external_hours": 2},
}  # fmt: skip


def settle_in_this_process(url: str) -> None:
    """The measured part: preview then finalize, as `labshare settle --finalize` does."""
    os.environ["LABSHARE_DATABASE_URL"] = url
    from admin.policies import policy_create
    from admin.settlement import settlement_finalize, settlement_preview
    from admin.subsidy import policy_parse
    from core.db import session_scope

    with session_scope() as session:
        policy_create(session, document=policy_parse(POLICY), actor_id=None)
    t0 = time.perf_counter()
    with session_scope() as session:
        row = settlement_preview(session, period=PERIOD, policy_id=None, actor_id=None)
    t1 = time.perf_counter()
    with session_scope() as session:
        assert row.id is not None
        row = settlement_finalize(session, settlement_id=row.id, actor_id=None)
    t2 = time.perf_counter()
    print(json.dumps({
        "preview_s": round(t1 - t0, 2), "finalize_s": round(t2 - t1, 2),
        "total_reward": row.total_reward, "scale": row.scale, "instruments": row.instruments,
        "institutions": row.institutions, "inputs_hash": row.inputs_hash,
        "voucher_reimbursement": row.total_voucher_reimbursement,
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="labshare_bench_settlement")
    parser.add_argument("--instruments", type=int, default=12_600)
    parser.add_argument("--sessions", type=int, default=500_000)
    parser.add_argument("--settle-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = SERVER.rsplit("/", 1)[0] + "/" + args.db
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    if args.settle_only:
        settle_in_this_process(sa_url)
        return

    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.db}"')
    import migrations

    migrations.upgrade(sa_url)
    sizes = {
        "institutions": 400, "labs": 1200, "users": 20_000,
        "instruments": args.instruments, "sessions": args.sessions,
    }  # fmt: skip
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(GENERATE % {k: int(v) for k, v in sizes.items()})  # type: ignore[arg-type]
        counts = {
            t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # type: ignore[index]
            for t in ("instrument", "usage_session", "charge", "voucher_redemption")
        }
    generated = time.perf_counter() - t0
    print(f"generated in {generated:.1f} s: {counts}", flush=True)

    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--settle-only", "--db", args.db],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result |= {"process_wall_s": round(wall, 2), "counts": counts}
    print(json.dumps(result, indent=2))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "settlement.json").write_text(json.dumps(result, indent=2) + "\n")
    ok = result["preview_s"] + result["finalize_s"] < 10 and result["maxrss_mb"] < 500
    print("PASS" if ok else "FAIL", "(target: settle under 10 s and 500 MB)")


if __name__ == "__main__":
    main()
