"""Two ingest workers writing batches of the same instruments at once: no deadlock, no lost meter."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from telemetry.models import UsageSession
from telemetry.protocol import encode, events_topic
from telemetry.service import gateway_create
from telemetry.store import Directory, Incoming, write_batch
from tests.factories import create_instrument, create_lab

INSTRUMENTS = 12
ROUNDS = 150


def test_two_workers_on_the_same_instruments_neither_deadlock_nor_lose_meters(
    engine: Engine, session: Session, backend: str
) -> None:
    """Worker A sends session events for some instruments and meters for the others, worker B
    the other way round, over and over: every batch commits (none fails with a deadlock),
    and every meter lands on its open session (before the instruments were locked in one
    order, a state event's read-modify-write lost the other worker's bulk meter update)."""
    if backend != "postgresql":
        pytest.skip("SQLite's writers take turns; the interleaving needs PostgreSQL")
    lab = create_lab(session)
    instruments = [create_instrument(session, lab=lab) for _ in range(INSTRUMENTS)]
    gateway, _ = gateway_create(session, lab_code=lab.code)
    session.commit()
    codes = [i.code for i in instruments]
    start = datetime.now(UTC) - timedelta(minutes=30)
    seq = iter(range(10**7))

    def message(code: str, type_: str, at: datetime, **kw: object) -> Incoming:
        payload = encode(id=f"m{next(seq)}", ts=at, type=type_, **kw)  # type: ignore[arg-type]
        return Incoming(0, 1, events_topic(gateway.uid, code), payload)

    # Every instrument in use, with one badge throughout, so meters always find a session.
    write_batch(engine, Directory(), [message(c, "session_start", start, user="B1") for c in codes])

    errors: list[BaseException] = []
    meters_sent = [0, 0]
    together = threading.Barrier(2)  # both workers send each round's batch at the same moment

    def worker(n: int) -> None:
        rng = random.Random(n)
        directory = Directory()
        for r in range(ROUNDS):
            order = codes[:]
            rng.shuffle(order)
            half = set(order[: INSTRUMENTS // 2]) if n == 0 else set(order[INSTRUMENTS // 2 :])
            at = start + timedelta(seconds=r + 1)
            batch = []
            for code in order:
                if code in half:  # the detailed path: a state event
                    batch.append(message(code, "status", at, data={"state": "in_use"}))
                    batch.append(message(code, "meter", at, data={"samples": 1}))
                else:  # the meters-only bulk path
                    batch.append(message(code, "meter", at, data={"samples": 1}))
                meters_sent[n] += 1
            together.wait()
            try:
                write_batch(engine, directory, batch)
            except OperationalError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} batches failed: {errors[0]}"
    session.expire_all()
    open_sessions = session.exec(select(UsageSession).where(col(UsageSession.end_at).is_(None)))
    assert sum(u.samples for u in open_sessions) == sum(meters_sent)
