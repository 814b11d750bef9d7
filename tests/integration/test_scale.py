"""Past one process: two `labshare serve` processes behind HAProxy (round-robin, no
sticky sessions), both through PgBouncer in transaction mode. Nothing that must be shared
lives in one process: the booking race spread over both stays exact, a sign-in made on one
works on the other, the sign-in throttle counts tries on both, and an idempotency key
replays the first answer whichever process the retry reaches."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.settings import get_settings
from tests.booking.helpers import at
from tests.factories import PASSWORD, auth, create_instrument, create_lab, create_user
from tests.integration.test_served_races import _check_instrument, _fire, _outcome, _race_bodies
from tests.scale_parts import haproxy, pgbouncer
from tests.served import served


def test_two_processes_behind_haproxy_and_pgbouncer(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PgBouncer and several processes sharing a database are PostgreSQL's")
    lab = create_lab(session)
    instrument, other = create_instrument(session, lab=lab), create_instrument(session, lab=lab)
    people = [create_user(session) for _ in range(3)]
    headers = [auth(p) for p in people]
    engine.pool.dispose()  # the servers have their own pools
    rng = random.Random(18)
    assert instrument.id is not None
    bodies = _race_bodies(instrument.id, at(10, 9), 80, rng)
    requests = [(headers[n % 3], body) for n, body in enumerate(bodies)]

    with pgbouncer(get_settings().database_url) as bounced:
        env = {"LABSHARE_DATABASE_URL": bounced, "LABSHARE_DATABASE_POOLER": "true"}
        with (
            served(tmp_path, env=env) as a,
            served(tmp_path, env=env) as b,
            haproxy([a.url, b.url]) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            answers = asyncio.run(_fire(url, requests))

            # A sign-in made through one process serves on both.
            token = client.post("/api/v1/auth/token",
                                data={"username": people[0].email, "password": PASSWORD})  # fmt: skip
            signed = {"Authorization": f"Bearer {token.json()['access_token']}"}
            assert [client.get("/api/v1/me", headers=signed).status_code for _ in range(4)] == [
                200
            ] * 4

            # The throttle counts failed tries on both processes together.
            tries = [client.post("/api/v1/auth/token",
                                 data={"username": people[1].email, "password": "wrong"}).status_code
                     for _ in range(12)]  # fmt: skip

            # A retry with the same key gets the first answer, from either process.
            start = at(12, 9)
            body = {"instrument_id": other.id, "start": start.isoformat(),
                    "end": (start + timedelta(hours=1)).isoformat()}  # fmt: skip
            keyed = {**headers[2], "Idempotency-Key": "scale-1"}
            first, second = (
                client.post("/api/v1/bookings", json=body, headers=keyed) for _ in range(2)
            )
            logs = a.log() + b.log()

    outcome = _outcome(answers)
    assert set(outcome) <= {201, 409}, (outcome, logs[-3000:])
    assert outcome[201] >= 1
    session.expire_all()
    _check_instrument(session, instrument, answers)
    assert Counter(tries) == Counter({401: 10, 429: 2}), tries
    assert first.status_code == 201 and second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert "Traceback" not in logs, logs[-3000:]
