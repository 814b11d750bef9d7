"""Hundreds of overlapping requests at once through a real server: never two at one time."""

from __future__ import annotations

import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import httpx
import uvicorn
from sqlmodel import Session, col, select

from booking.models import ACTIVE_STATUSES, Booking
from tests.booking.helpers import at
from tests.factories import auth, create_instrument, create_user

REQUESTS = 300
USERS = 30
CLIENTS = 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """The real app, served by uvicorn on a free port in a background thread."""

    def __init__(self) -> None:
        from labshare.app import create_app

        self.port = _free_port()
        config = uvicorn.Config(
            create_app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            limit_concurrency=1000,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_concurrent_overlapping_bookings_never_overlap(engine, session: Session):
    instrument = create_instrument(session)
    headers = [auth(create_user(session)) for _ in range(USERS)]
    rng = random.Random(7)
    requests = []
    for n in range(REQUESTS):
        start = at(3, 8) + (at(3, 8, 30) - at(3, 8)) * rng.randrange(16)
        length = (at(3, 8, 30) - at(3, 8)) * rng.randrange(1, 5)
        requests.append(
            (
                headers[n % USERS],
                {
                    "instrument_id": instrument.id,
                    "start": start.isoformat(),
                    "end": (start + length).isoformat(),
                },
            )
        )

    with (
        _Server() as base,
        httpx.Client(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=CLIENTS)
        ) as http,
    ):

        def post(item: tuple[dict, dict]) -> httpx.Response:
            return http.post("/api/v1/bookings", json=item[1], headers=item[0])

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            responses = list(pool.map(post, requests))
        elapsed = time.monotonic() - started

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, {r.status_code: r.text for r in responses}
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["conflicts"], refused.text
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    session.expire_all()
    active = session.exec(
        select(Booking)
        .where(Booking.instrument_id == instrument.id, col(Booking.status).in_(ACTIVE_STATUSES))
        .order_by(col(Booking.start_at))
    ).all()
    assert {b.id for b in active} == created
    assert statuses.count(201) == len(active) > 1
    for before, after in pairwise(active):
        assert before.end_at <= after.start_at, (before, after)
    moments = sum("a moment ago" in r.text for r in responses)
    print(
        f"\n{engine.dialect.name}: {statuses.count(201)} created, {statuses.count(409)} refused "
        f"({moments} by the database), {elapsed:.1f} s"
    )
    assert elapsed < 30


def test_concurrent_retries_with_one_idempotency_key_book_once(engine, session: Session):
    instrument = create_instrument(session)
    headers = {**auth(create_user(session)), "Idempotency-Key": "retry-storm"}
    payload = {
        "instrument_id": instrument.id,
        "start": at(3, 9).isoformat(),
        "end": at(3, 10).isoformat(),
    }
    with (
        _Server() as base,
        httpx.Client(base_url=base, timeout=60) as http,
        ThreadPoolExecutor(16) as pool,
    ):
        responses = list(
            pool.map(
                lambda _: http.post("/api/v1/bookings", json=payload, headers=headers),
                range(40),
            )
        )
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    session.expire_all()
    assert len(session.exec(select(Booking)).all()) == 1
