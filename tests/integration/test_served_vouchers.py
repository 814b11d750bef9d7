"""Vouchers against `labshare serve` over many connections at once, on both databases: a
company's burst of applications leaves one waiting, and approvals sent together never
take a programme past its budget."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.models import Voucher, VoucherProgramme, VoucherStatus
from billing.vouchers import ProgrammeIn, programme_create
from core.models import Role
from instruments.credit_code import check_character
from instruments.models import InstitutionKind
from tests.factories import auth, create_institution, create_user
from tests.served import served

TODAY = date.today()


def _code(n: int) -> str:
    first17 = f"9161010000{n:07d}"
    return first17 + check_character(first17)


async def _all_at_once(url: str, calls: list[tuple[str, dict, dict]]) -> Counter[object]:
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=40)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(path: str, headers: dict, body: dict) -> object:
            try:
                return (await client.post(path, json=body, headers=headers)).status_code
            except httpx.HTTPError as exc:
                return f"dropped ({type(exc).__name__})"

        return Counter(await asyncio.gather(*(one(*call) for call in calls)))


def test_bursts_of_applications_and_approvals(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    programme = programme_create(
        session,
        data=ProgrammeIn(
            code="RACE", name="Race vouchers", currency="cny", budget=100_000, coverage_bp=5000,
            company_yearly_cap=100_000, starts_on=TODAY - timedelta(days=1),
            ends_on=TODAY + timedelta(days=90),
        ),
    )  # fmt: skip
    session.commit()
    firms = [
        create_institution(
            session, kind=InstitutionKind.small_company, is_small_company=True, code=f"F{n}"
        )
        for n in range(20)
    ]
    people = [auth(create_user(session, institution=f)) for f in firms]
    admin = auth(create_user(session, role=Role.network_admin))
    engine.pool.dispose()  # the servers have their own pools

    def apply(n: int, who: dict) -> tuple[str, dict, dict]:
        body = {"programme_id": programme.id, "amount": 10_000, "needs": "NMR",
                "credit_code": _code(n)}  # fmt: skip
        return ("/api/v1/vouchers", who, body)

    workers = 2 if backend == "postgresql" else 1
    with served(tmp_path, workers=workers) as server:
        burst = asyncio.run(_all_at_once(server.url, [apply(0, people[0])] * 20))
        assert burst == Counter({201: 1, 409: 19}), burst
        others = asyncio.run(_all_at_once(server.url, [apply(n, people[n]) for n in range(1, 20)]))
        assert others == Counter({201: 19}), others
        ids = session.exec(select(Voucher.id)).all()
        session.commit()
        approvals = asyncio.run(
            _all_at_once(server.url, [(f"/api/v1/vouchers/{i}/approve", admin, {}) for i in ids])
        )
        log = server.log()
    # Room for ten of the twenty: the rest are told the budget has too little left.
    assert approvals == Counter({200: 10, 409: 10}), approvals
    assert "Traceback" not in log, log[-3000:]
    session.expire_all()
    session.commit()
    assert session.get(VoucherProgramme, programme.id).committed == 100_000  # type: ignore[union-attr]
    statuses = Counter(session.exec(select(Voucher.status)).all())
    assert statuses == Counter({VoucherStatus.approved: 10, VoucherStatus.pending: 10})
