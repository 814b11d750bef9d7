"""A facility's daily work against `labshare serve` over many connections at once, on both
databases: forty people after five training seats (then the five giving theirs up as the
rest try again), a tablet's check-in tapped thirty times,
and a burst of reports from a kiosk without an account."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from booking.attendance import booking_pin
from booking.models import Booking, Incident, TrainingSeat
from core.models import Role
from telemetry.models import UsageSession
from tests.factories import auth, create_instrument, create_lab, create_user
from tests.served import all_at_once, served


def test_bursts_at_the_facility(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    lab = create_lab(session)
    trained = create_instrument(session, lab=lab)
    kiosk = create_instrument(session, lab=lab)
    manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
    people = [auth(create_user(session)) for _ in range(40)]
    booker = create_user(session)
    now = datetime.now(UTC)
    booking = Booking(instrument_id=kiosk.id, user_id=booker.id,
                      start_at=now - timedelta(minutes=5), end_at=now + timedelta(hours=1))  # fmt: skip
    session.add(booking)
    session.commit()
    pin = booking_pin(booking.id)
    engine.pool.dispose()  # the servers have their own pools

    start = (now + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    workers = 2 if backend == "postgresql" else 1
    with served(tmp_path, workers=workers) as server:
        made = httpx.post(
            f"{server.url}/api/v1/training/sessions",
            json={"title": "Race", "instrument_id": trained.id, "start": start.isoformat(),
                  "end": (start + timedelta(hours=2)).isoformat(), "capacity": 5},
            headers=manager,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        seats = f"/api/v1/training/sessions/{made.json()['id']}/seats"
        taken = asyncio.run(all_at_once(server.url, [(seats, who, {}) for who in people]))
        # The five give their seats up while the thirty-five refused try again, all at once.
        holders = [who for (code, _), who in zip(taken, people, strict=True) if code == 201]
        refused = [who for (code, _), who in zip(taken, people, strict=True) if code == 409]
        mine = seats.removesuffix("s")
        churn = asyncio.run(all_at_once(
            server.url,
            [(mine, who, {}, "DELETE") for who in holders] + [(seats, who, {}) for who in refused],
        ))  # fmt: skip
        check_ins = asyncio.run(all_at_once(
            server.url, [(f"/api/v1/instruments/{kiosk.id}/check-in", {}, {"pin": pin})] * 30
        ))  # fmt: skip
        reports = asyncio.run(all_at_once(
            server.url,
            [(f"/api/v1/instruments/{kiosk.id}/incidents", {},
              {"kind": "dirty", "description": "spill on the bench"})] * 20,
        ))  # fmt: skip
        log = server.log()
    assert Counter(code for code, _ in taken) == Counter({201: 5, 409: 35}), taken[:3]
    assert all("full" in text for code, text in taken if code == 409)
    given_up, retaken = churn[: len(holders)], churn[len(holders) :]
    assert Counter(code for code, _ in given_up) == Counter({200: 5}), given_up[:3]
    assert set(code for code, _ in retaken) <= {201, 409}, retaken[:3]
    seated_again = sum(1 for code, _ in retaken if code == 201)
    assert Counter(code for code, _ in check_ins) == Counter({200: 30})
    assert Counter(code for code, _ in reports) == Counter({201: 5, 429: 15})
    assert "Traceback" not in log, log[-3000:]
    session.rollback()
    # Never more seats than the session has, and each one someone was told they got.
    assert session.exec(select(func.count()).select_from(TrainingSeat)).one() == seated_again
    assert seated_again <= 5
    assert session.exec(
        select(func.count()).select_from(UsageSession).where(col(UsageSession.booking_id) == booking.id)
    ).one() == 1  # fmt: skip
    assert session.exec(select(func.count()).select_from(Incident)).one() == 5
