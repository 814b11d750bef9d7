"""Many people booking at once through `labshare serve` (a subprocess, as users run it).

Every answer is a 201 or a 409 with its conflicts, never a 5xx, a dropped connection or a
time-out; the 201s are exactly the active bookings stored; no two of them overlap; and an
answer is only sent once its transaction has committed. PostgreSQL is served by two worker
processes, SQLite (the embedded default) by one.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from booking.models import ACTIVE_STATUSES, Booking
from instruments.models import Instrument
from tests.booking.helpers import at
from tests.factories import auth, create_instrument, create_lab, create_user
from tests.served import served

CONNECTIONS = 64


def _workers(backend: str) -> int:
    return 2 if backend == "postgresql" else 1


def _race_bodies(
    instrument_id: int, window_start: datetime, count: int, rng: random.Random
) -> list[dict]:
    """`count` requests for random 1-3 hour spans inside a 6-hour window."""
    bodies = []
    for _ in range(count):
        hours = rng.randint(1, 3)
        start = window_start + timedelta(hours=rng.randint(0, 6 - hours))
        end = start + timedelta(hours=hours)
        bodies.append(
            {"instrument_id": instrument_id, "start": start.isoformat(), "end": end.isoformat()}
        )
    return bodies


async def _fire(url: str, requests: list[tuple[dict, dict]]) -> list[httpx.Response | str]:
    """All requests at once over CONNECTIONS keep-alive connections, a 60 s time-out each."""
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(headers: dict, body: dict) -> httpx.Response | str:
            try:
                return await client.post("/api/v1/bookings", json=body, headers=headers)
            except httpx.TimeoutException:
                return "time-out"
            except httpx.HTTPError as exc:
                return f"dropped ({type(exc).__name__})"

        return await asyncio.gather(*(one(h, b) for h, b in requests))


def _outcome(answers: list[httpx.Response | str]) -> Counter[object]:
    return Counter(a.status_code if isinstance(a, httpx.Response) else a for a in answers)


def _check_instrument(session: Session, instrument: Instrument, answers: list) -> None:
    """The 201s are exactly the active bookings, which never overlap."""
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    active = session.exec(
        select(Booking)
        .where(Booking.instrument_id == instrument.id, col(Booking.status).in_(ACTIVE_STATUSES))
        .order_by(col(Booking.start_at))
    ).all()
    assert {b.id for b in active} == created
    for before, after in pairwise(active):
        assert before.end_at <= after.start_at, (before, after)


def _race(
    engine: Engine,
    session: Session,
    tmp_path: Path,
    backend: str,
    *,
    instruments: int,
    per_instrument: int,
) -> None:
    lab = create_lab(session)
    targets = [create_instrument(session, lab=lab) for _ in range(instruments)]
    headers = [auth(create_user(session)) for _ in range(3)]
    rng = random.Random(10)
    requests = []
    for n, instrument in enumerate(targets):
        assert instrument.id is not None
        window = at(10, 9) + timedelta(hours=n % 4)
        for m, body in enumerate(_race_bodies(instrument.id, window, per_instrument, rng)):
            requests.append((headers[m % 3], body))
    rng.shuffle(requests)

    with served(tmp_path, workers=_workers(backend)) as server:
        began = time.monotonic()
        answers = asyncio.run(_fire(server.url, requests))
        elapsed = time.monotonic() - began
        log = server.log()

    outcome = _outcome(answers)
    print(f"\n{backend}: {instruments} x {per_instrument}: {dict(outcome)} in {elapsed:.1f} s")
    assert set(outcome) <= {201, 409}, (outcome, log[-3000:])
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["conflicts"], answer.text
    assert "Traceback" not in log, log[-3000:]
    session.expire_all()
    session.commit()  # a fresh snapshot (SQLite WAL)
    for instrument in targets:
        mine = [
            a for a, (_, body) in zip(answers, requests, strict=True)
            if body["instrument_id"] == instrument.id
        ]  # fmt: skip
        _check_instrument(session, instrument, mine)
    assert outcome[201] >= instruments


def test_240_people_booking_one_instrument_at_once(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    _race(engine, session, tmp_path, backend, instruments=1, per_instrument=240)


def test_16_instruments_40_requests_each_at_once(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    _race(engine, session, tmp_path, backend, instruments=16, per_instrument=40)


async def _read_after_write(url: str, target: dict, others: list[tuple[dict, dict]]) -> list[str]:
    """100 rounds of create -> GET on a second, already open connection -> cancel -> create
    the same slot again, while a dozen other clients keep the server busy."""
    problems: list[str] = []
    stop = asyncio.Event()

    async def busy(headers: dict, body: dict) -> None:
        # What other people do meanwhile: mostly look, sometimes try to book.
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for n in itertools.count():
                if stop.is_set():
                    break
                await client.get(
                    f"/api/v1/instruments/{body['instrument_id']}/availability",
                    params={"start": body["start"], "end": body["end"]},
                )
                await client.get("/api/v1/instruments", params={"q": "Instrument"})
                if n % 3 == 0:
                    await client.post("/api/v1/bookings", json=body, headers=headers)
                await asyncio.sleep(0.1)  # people pause; a dozen of them still keep it busy

    one = httpx.Limits(max_connections=1)
    async with (
        httpx.AsyncClient(base_url=url, timeout=60, limits=one) as writer,
        httpx.AsyncClient(base_url=url, timeout=60, limits=one) as reader,
    ):
        headers, body = target["headers"], target["body"]
        await reader.get("/healthz")  # open the second connection before the rounds
        noise = [asyncio.create_task(busy(h, b)) for h, b in others]
        try:
            created = await writer.post("/api/v1/bookings", json=body, headers=headers)
            for n in range(100):
                if created.status_code != 201:
                    problems.append(f"round {n}: create gave {created.status_code} {created.text}")
                    break
                booking_id = created.json()["id"]
                seen = await reader.get(f"/api/v1/bookings/{booking_id}", headers=headers)
                if seen.status_code != 200 or seen.json()["status"] not in ("confirmed", "pending"):
                    problems.append(f"round {n}: GET gave {seen.status_code} {seen.text}")
                cancelled = await writer.post(
                    f"/api/v1/bookings/{booking_id}/cancel", headers=headers
                )
                if cancelled.status_code != 200:
                    problems.append(f"round {n}: cancel gave {cancelled.status_code}")
                created = await writer.post("/api/v1/bookings", json=body, headers=headers)
        finally:
            stop.set()
            await asyncio.gather(*noise, return_exceptions=True)
    return problems


def test_what_was_answered_can_be_read_at_once(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    lab = create_lab(session)
    mine, *busy_ones = [create_instrument(session, lab=lab) for _ in range(4)]
    me = auth(create_user(session))
    others = [auth(create_user(session)) for _ in range(12)]
    target = {
        "headers": me,
        "body": {
            "instrument_id": mine.id,
            "start": at(5, 10).isoformat(),
            "end": at(5, 11).isoformat(),
        },
    }
    rng = random.Random(3)
    noise = [
        (h, _race_bodies(busy_ones[n % 3].id or 0, at(6, 9), 1, rng)[0])
        for n, h in enumerate(others)
    ]
    with served(tmp_path, workers=_workers(backend)) as server:
        problems = asyncio.run(_read_after_write(server.url, target, noise))
    assert problems == []


@pytest.fixture(autouse=True)
def _quiet_pool(engine: Engine) -> None:
    """The test's own engine keeps few connections (the servers have their own pools)."""
    engine.pool.dispose()
