"""Benchmark: voucher claims for a month at city scale. Target: assemble and verify the
claims of 2,000 companies' 20,000 voucher uses in under 10 s and 300 MB.

Builds its own database (PostgreSQL `labshare_bench_vouchers` by default, or a SQLite
file): 2,000 small companies each holding an approved voucher, 20 provider institutions
with 200 instruments, and a closed, paid month in which each company used the
instruments ten times (20,000 bookings, each with its usage session, three telemetry
events and its charge on the company's invoice, whose voucher share was redeemed). Then
every provider claims the month (assembling one line per use with its evidence digest)
and every claim is verified (its evidence read and hashed again).

Speed is reported against a baseline in the same run: reading the same evidence rows
with no hashing and no claim written (what the database and driver cost), so the ratio
says what labshare adds. Memory is the peak resident size of the measuring process (the
database is built by another), interpreter and libraries included.

    .venv/bin/python bench/vouchers.py [--backend postgres|sqlite] [--companies N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("LABSHARE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PERIOD = "2026-10"
MONTH = datetime(2026, 10, 1, tzinfo=UTC)
PROVIDERS, INSTRUMENTS_EACH, USES_EACH = 20, 10, 10
TARGET_S, TARGET_MB = 10.0, 300.0


def _url(backend: str, db: str) -> str:
    if backend == "sqlite":
        Path(f"/tmp/{db}.db").unlink(missing_ok=True)
        return f"sqlite:////tmp/{db}.db"
    import psycopg

    base = SERVER.split("://", 1)[1].rsplit("/", 1)[0]
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    return f"postgresql+psycopg://{base}/{db}"


def build(url: str, companies: int) -> dict[str, Any]:
    """The month: companies, providers, instruments, bookings, usage, events, charges,
    invoices (paid) and redemptions from each company's voucher."""
    from sqlmodel import Session

    import migrations
    from billing.models import (
        Charge,
        ChargeKind,
        ChargeUnit,
        Invoice,
        InvoiceStatus,
        Voucher,
        VoucherProgramme,
        VoucherRedemption,
        VoucherStatus,
    )  # fmt: skip
    from booking.models import Booking, BookingStatus
    from core.db import make_engine
    from core.models import Role, User
    from instruments.models import (
        Category,
        Institution,
        InstitutionKind,
        Instrument,
        Lab,
        PayerClass,
    )
    from telemetry.models import EventType, Gateway, TelemetryEvent, UsageKind, UsageSession

    started = time.monotonic()
    migrations.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s:
        category = Category(code="ms", name="Mass spectrometry")
        s.add(category)
        s.flush()
        programme = VoucherProgramme(
            code="IV", name="Innovation vouchers", currency="cny", budget=10**12,
            coverage_bp=5000, company_yearly_cap=10**8, starts_on=date(2026, 1, 1),
            ends_on=date(2026, 12, 31), committed=companies * 10**6,
        )  # fmt: skip
        providers = [
            Institution(code=f"P{p}", name=f"Provider {p}", kind=InstitutionKind.university)
            for p in range(PROVIDERS)
        ]
        firms = [
            Institution(code=f"F{f}", name=f"Firm {f}", kind=InstitutionKind.small_company,
                        is_small_company=True)
            for f in range(companies)
        ]  # fmt: skip
        s.add(programme)
        s.add_all(providers + firms)
        s.flush()
        labs = [Lab(code=f"L{p.id}", name=f"Lab {p.id}", institution_id=p.id) for p in providers]
        s.add_all(labs)
        s.flush()
        instruments = [
            Instrument(code=f"I{lab.id}-{n}", name=f"MS {lab.id}-{n}", category_id=category.id,
                       lab_id=lab.id)
            for lab in labs
            for n in range(INSTRUMENTS_EACH)
        ]  # fmt: skip
        gateways = [
            Gateway(uid=f"gw{lab.id}", lab_id=lab.id, mqtt_username=f"gw{lab.id}",
                    password_hash="x")
            for lab in labs
        ]  # fmt: skip
        users = [
            User(email=f"u{f.id}@f.example", name=f"U{f.id}", password_hash="x",
                 role=Role.researcher, institution_id=f.id)
            for f in firms
        ]  # fmt: skip
        s.add_all(instruments + gateways + users)
        s.flush()
        vouchers = [
            Voucher(programme_id=programme.id, institution_id=f.id, applicant_id=u.id, year=2026,
                    requested=10**6, needs="tests", status=VoucherStatus.approved, amount=10**6,
                    expires_on=date(2026, 12, 31))
            for f, u in zip(firms, users, strict=True)
        ]  # fmt: skip
        invoices = [
            Invoice(number=f"INV-{PERIOD}-{f.code}", payer_institution_id=f.id, period=PERIOD,
                    currency="cny", status=InvoiceStatus.paid, paid_at=MONTH + timedelta(days=40))
            for f in firms
        ]  # fmt: skip
        s.add_all(vouchers + invoices)
        s.flush()
        gateway_of = {g.lab_id: g.id for g in gateways}
        lab_of = {i.id: i.lab_id for i in instruments}
        provider_of = {lab.id: lab.institution_id for lab in labs}
        slot = dict.fromkeys((i.id for i in instruments), 0)
        bookings, rows = [], []
        for n, (firm, user) in enumerate(zip(firms, users, strict=True)):
            for k in range(USES_EACH):
                instrument = instruments[(n * USES_EACH + k) % len(instruments)]
                start = MONTH + timedelta(hours=6 * slot[instrument.id])
                slot[instrument.id] += 1
                bookings.append(Booking(instrument_id=instrument.id, user_id=user.id,
                                        start_at=start, end_at=start + timedelta(hours=2),
                                        status=BookingStatus.completed))  # fmt: skip
                rows.append((firm, user, instrument, start))
        s.add_all(bookings)
        s.flush()
        sessions, events, charges = [], [], []
        for booking, (_firm, user, instrument, start) in zip(bookings, rows, strict=True):
            end = start + timedelta(minutes=110)
            sessions.append(UsageSession(instrument_id=instrument.id, user_id=user.id,
                                         start_at=start, end_at=end, last_event_at=end,
                                         booking_id=booking.id, kind=UsageKind.booked))  # fmt: skip
            for m, kind in enumerate(
                (EventType.session_start, EventType.meter, EventType.session_end)
            ):
                events.append(TelemetryEvent(gateway_id=gateway_of[lab_of[instrument.id]],
                                             message_id=f"{booking.id}-{m}",
                                             instrument_id=instrument.id,
                                             ts=start + timedelta(minutes=55 * m), type=kind))  # fmt: skip
        s.add_all(sessions + events)
        s.flush()
        invoice_of = {inv.payer_institution_id: inv for inv in invoices}
        lines: dict[int, int] = {}
        for booking, (firm, user, instrument, start) in zip(bookings, rows, strict=True):
            invoice = invoice_of[firm.id]
            lines[invoice.id] = lines.get(invoice.id, 0) + 1
            charges.append(Charge(
                kind=ChargeKind.booking, source_id=booking.id, period=PERIOD,
                payer_institution_id=firm.id, provider_institution_id=provider_of[lab_of[instrument.id]],
                lab_id=lab_of[instrument.id], instrument_id=instrument.id, user_id=user.id,
                booking_id=booking.id, payer_class=PayerClass.small_company,
                unit=ChargeUnit.minute, quantity=120, unit_amount=30000, amount=60000,
                currency="cny", voucher_eligible=True, service_start_at=start,
                service_end_at=start + timedelta(hours=2), invoice_id=invoice.id,
                line_no=lines[invoice.id],
            ))  # fmt: skip
        s.add_all(charges)
        for invoice in invoices:
            invoice.line_count = USES_EACH
            invoice.subtotal = USES_EACH * 60000
            invoice.voucher_total = USES_EACH * 30000
            invoice.total = invoice.subtotal - invoice.voucher_total
            invoice.amount_paid = invoice.total
        s.add_all(
            VoucherRedemption(programme_id=programme.id, invoice_id=invoice_of[v.institution_id].id,
                              institution_id=v.institution_id, voucher_id=v.id, year=2026,
                              eligible_amount=USES_EACH * 60000, amount=USES_EACH * 30000)
            for v in vouchers
        )  # fmt: skip
        s.commit()
    # Statistics, as autovacuum leaves a database after a bulk load (without them the
    # planner takes the month's tables for empty and nests loops over them).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    engine.dispose()
    return {"seconds": round(time.monotonic() - started, 1), "uses": len(bookings),
            "events": len(bookings) * 3}  # fmt: skip


def _phase(name: str, fn: Any) -> tuple[Any, dict[str, float]]:
    """Time one phase; the process's peak resident memory after it (this process does only
    the measuring: the database was built in another)."""
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1)}
    print(f"{name:<34} {seconds:>7.2f} s  peak RSS {peak_mb:>7.1f} MB")
    return result, figures


def measure(url: str) -> dict[str, Any]:
    from sqlmodel import Session, col, select

    from billing.models import Charge, VoucherClaim
    from billing.voucher_claims import claim_submit, claim_verify, evidence, uses_of
    from core.db import make_engine
    from core.models import Role, User
    from instruments.models import Institution

    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as s:
        providers = s.exec(select(Institution).where(col(Institution.code).like("P%"))).all()
        claimants = []
        for p in providers:
            person = User(email=f"m{p.id}@p.example", name="Manager", password_hash="x",
                          role=Role.institution_admin, institution_id=p.id)  # fmt: skip
            s.add(person)
            claimants.append(person)
        s.commit()
        programme_id = 1

    def baseline() -> int:
        """The evidence's rows read, unhashed: the uses, then their records."""
        with Session(engine) as s:
            uses = [
                u for p in providers
                for u in uses_of(s, provider_id=p.id or 0, programme_id=programme_id, period=PERIOD)
            ]  # fmt: skip
            proofs = evidence(s, [(u.charge_id, u.voucher_id) for u in uses])
            return len(proofs)

    def assemble() -> list[int]:
        ids = []
        for person in claimants:
            with Session(engine) as s:
                ids.append(
                    claim_submit(s, user=person, programme_id=programme_id, period=PERIOD).id
                )
                s.commit()
        return ids

    def verify(ids: list[int]) -> int:
        with Session(engine) as s:
            return sum(len(claim_verify(s, i)) for i in ids)

    read, base = _phase("baseline: read the evidence", baseline)
    ids, assembled = _phase("assemble 20 providers' claims", assemble)
    findings, verified = _phase("verify every claim", lambda: verify(ids))
    with Session(engine) as s:
        lines = sum(c.lines for c in s.exec(select(VoucherClaim)).all())
        charges = len(s.exec(select(Charge.id)).all())
    engine.dispose()
    assert findings == 0, f"{findings} lines no longer match"
    total = assembled["seconds"] + verified["seconds"]
    peak = max(assembled["peak_rss_mb"], verified["peak_rss_mb"])
    print(f"{lines:,} lines in {len(ids)} claims ({charges:,} charges); assemble + verify "
          f"{total:.2f} s (target {TARGET_S:g} s), peak {peak:.1f} MB (target {TARGET_MB:g}); "
          f"assemble / baseline {assembled['seconds'] / base['seconds']:.2f}")  # fmt: skip
    return {
        "uses_read_by_baseline": read,
        "claims": len(ids),
        "lines": lines,
        "baseline": base,
        "assemble": assembled,
        "verify": verified,
        "assemble_plus_verify_s": round(total, 2),
        "peak_mb": peak,
        "assemble_over_baseline": round(assembled["seconds"] / base["seconds"], 2),
        "verify_over_baseline": round(verified["seconds"] / base["seconds"], 2),
        "within_target": total < TARGET_S and peak < TARGET_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--companies", type=int, default=2000)
    parser.add_argument("--db", default="labshare_bench_vouchers")
    parser.add_argument("--build-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:  # the child that builds the database
        print(json.dumps(build(args.build_only, args.companies)))
        return
    url = _url(args.backend, args.db)
    child = subprocess.run(
        [sys.executable, __file__, "--build-only", url, "--companies", str(args.companies)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    built = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"built {built['uses']:,} uses of {args.companies:,} companies in {built['seconds']} s")
    results = measure(url)
    report = {
        "benchmark": "vouchers",
        "database": args.backend,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "companies": args.companies,
        "setup": built,
        "target": {"seconds": TARGET_S, "peak_mb": TARGET_MB},
        "limits": "one transaction per provider's claim; the evidence is read in a few "
        "set-based queries per claim and hashed in Python (json + sha256 per line)",
        **results,
    }
    out = ROOT / "bench" / "results" / f"vouchers-{args.backend}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
