"""One transaction per request, committed before the answer leaves the server."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, select

from booking.models import Booking
from core.deps import SessionDep
from core.routing import UnitOfWorkRoute
from tests.booking.helpers import at, body
from tests.factories import auth, create_instrument, create_user
from tests.served import served

# Routes FastAPI itself adds, and the health check, which needs no unit of work.
OUTSIDE = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/healthz"}


def _all_routes(routes: list) -> list[APIRoute]:
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):  # an included router (FastAPI keeps it whole)
            found.extend(_all_routes(route.original_router.routes))
    return found


def test_every_route_runs_as_one_unit_of_work(engine: Engine) -> None:
    from labshare.app import create_app

    routes = _all_routes(create_app().routes)
    assert len(routes) > 100
    strays = [
        r.path for r in routes if not isinstance(r, UnitOfWorkRoute) and r.path not in OUTSIDE
    ]
    assert strays == []


def test_a_commit_that_fails_is_an_error_not_a_success_postgres(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    """A deferred constraint fails at COMMIT, after the endpoint returned: the client of the
    served process is told it failed (it used to get a 201 for a booking that was never
    stored), and nothing is stored."""
    if backend != "postgresql":
        pytest.skip("deferred constraint triggers are PostgreSQL's; SQLite's case is below")
    instrument = create_instrument(session)
    headers = auth(create_user(session))
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION fail_marked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF NEW.purpose = 'fail at commit' THEN"
                " RAISE EXCEPTION 'refused at commit'; END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER fail_marked AFTER INSERT ON booking"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_marked()"
            )
        )
    try:
        with served(tmp_path, workers=1) as server:
            answer = httpx.post(
                f"{server.url}/api/v1/bookings",
                json=body(instrument.id, at(3, 10), at(3, 11), purpose="fail at commit"),
                headers=headers,
            )
            fine = httpx.post(
                f"{server.url}/api/v1/bookings",
                json=body(instrument.id, at(3, 12), at(3, 13)),
                headers=headers,
            )
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER fail_marked ON booking"))
            conn.execute(text("DROP FUNCTION fail_marked()"))
    assert answer.status_code == 500, answer.text
    assert "nothing was saved" in answer.json()["detail"]
    assert fine.status_code == 201
    session.expire_all()
    purposes = [b.purpose for b in session.exec(select(Booking)).all()]
    assert purposes == [""]


def test_a_commit_that_fails_is_an_error_not_a_success_sqlite(
    client: TestClient, engine: Engine, session: Session, backend: str
) -> None:
    """SQLite has no deferred triggers: the database refuses the COMMIT itself here."""
    if backend != "sqlite":
        pytest.skip("the PostgreSQL case is above")
    instrument = create_instrument(session)
    headers = auth(create_user(session))

    def refuse(conn: object) -> None:
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    event.listen(engine, "commit", refuse)
    try:
        answer = client.post(
            "/api/v1/bookings", json=body(instrument.id, at(3, 10), at(3, 11)), headers=headers
        )
    finally:
        event.remove(engine, "commit", refuse)
    assert answer.status_code == 500, answer.text
    assert "nothing was saved" in answer.json()["detail"]
    session.expire_all()
    assert session.exec(select(Booking)).all() == []


def test_sqlite_writers_that_cannot_get_the_lock_in_time_get_503(
    client: TestClient, engine: Engine, session: Session, backend: str, monkeypatch
) -> None:
    """Another process holds SQLite's write lock longer than LABSHARE_DB_WAIT_SECONDS: the
    request is answered 503 with Retry-After, and a read still works meanwhile."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL has no database-wide write lock")
    from core.settings import get_settings

    instrument = create_instrument(session)
    headers = auth(create_user(session))
    url = str(engine.url).removeprefix("sqlite:///")
    monkeypatch.setattr(get_settings(), "db_wait_seconds", 0.5)
    holder = sqlite3.connect(url, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        # The engine's connections were made with the old busy timeout: make new ones.
        engine.pool.dispose()
        from core import db

        monkeypatch.setattr(db, "_engines", {})
        answer = client.post(
            "/api/v1/bookings", json=body(instrument.id, at(3, 10), at(3, 11)), headers=headers
        )
        read = client.get(f"/api/v1/instruments/{instrument.id}")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) >= 1
    assert read.status_code == 200


def test_a_refusal_keeps_the_connections_prepared_statements(engine: Engine, backend: str) -> None:
    """A request that ends in a rollback (a 409) must not cost the next requests their
    prepared statements: psycopg's own rollback deallocates them all, and PostgreSQL then
    plans every statement every time (core.db._keep_prepared_statements)."""
    if backend != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    query = text("SELECT count(*) AS kept_probe FROM booking WHERE id = :i")
    with engine.connect() as connection:  # one connection throughout, as a request has
        for i in range(12):  # past psycopg's threshold and PostgreSQL's five custom plans
            connection.execute(query, {"i": i}).one()
        with pytest.raises(DBAPIError, match="division by zero"):
            connection.execute(text("SELECT 1 / 0")).one()
        connection.rollback()
        connection.execute(query, {"i": 1}).one()
        generic = connection.execute(
            text(
                "SELECT generic_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'SELECT count(*) AS kept_probe%'"
            )
        ).scalar_one()
    assert generic >= 2  # the plan made before the rollback ran again after it


def test_a_writer_cancelled_while_waiting_gives_back_the_write_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request whose client leaves while it waits for a slot, holding SQLite's write turn,
    must give the turn back: otherwise every later writer waits for it until its timeout."""
    import asyncio

    from core.routing import Gate
    from core.settings import get_settings

    monkeypatch.setenv("LABSHARE_DB_CONCURRENCY", "1")
    monkeypatch.setenv("LABSHARE_DB_WAIT_SECONDS", "2")
    get_settings.cache_clear()

    async def scenario() -> None:
        gate = Gate()
        reader = await gate.enter(write_turn=False)  # the only slot
        waiting = asyncio.create_task(gate.enter(write_turn=True))  # takes the turn, waits
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.leave(reader, write_turn=False)
        async with asyncio.timeout(1):  # the turn is free again, not waited for until 2 s
            writer = await gate.enter(write_turn=True)
        gate.leave(writer, write_turn=True)

    try:
        asyncio.run(scenario())
    finally:
        get_settings.cache_clear()


def test_the_gate_serves_waiters_in_order_and_refuses_past_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Waiters get the slot in the order they came; one that waits past db_wait_seconds is
    refused (503); one cancelled just as the slot is handed to it passes it on."""
    import asyncio

    from core.errors import ServiceBusy
    from core.routing import Gate, _Turns
    from core.settings import get_settings

    monkeypatch.setenv("LABSHARE_DB_CONCURRENCY", "1")
    monkeypatch.setenv("LABSHARE_DB_WAIT_SECONDS", "0.2")
    get_settings.cache_clear()
    order: list[str] = []

    async def scenario() -> None:
        gate = Gate()
        holder = await gate.enter(write_turn=False)
        with pytest.raises(ServiceBusy):  # nobody gives the slot back within 0.2 s
            await gate.enter(write_turn=False)
        assert gate.stats.refused_total == 1

        async def waiter(name: str) -> None:
            held = await gate.enter(write_turn=False)
            order.append(name)
            gate.leave(held, write_turn=False)

        waiters = []
        for name in ("first", "second", "third"):
            waiters.append(asyncio.create_task(waiter(name)))
            await asyncio.sleep(0.01)
        gate.leave(holder, write_turn=False)
        await asyncio.wait_for(asyncio.gather(*waiters), 1)
        assert order == ["first", "second", "third"]
        assert gate.stats.in_use == 0

        loop = asyncio.get_running_loop()
        turns = _Turns(1)
        assert turns.take_nowait()
        leaving = asyncio.create_task(turns.take(loop, loop.time() + 5))
        staying = asyncio.create_task(turns.take(loop, loop.time() + 5))
        await asyncio.sleep(0.01)
        turns.give()  # to `leaving`, whose client goes away before it runs again
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await asyncio.wait_for(staying, 1)  # handed on, not lost

    try:
        asyncio.run(scenario())
    finally:
        get_settings.cache_clear()


def test_a_unit_of_work_outlives_its_cancelled_caller() -> None:
    """A request cancelled while its work runs in a worker thread (the server stopping)
    waits for the work to end before the cancellation goes on: the gate's slot, given back
    by the caller, must not be free while the thread still uses its connection. Cancelled
    again meanwhile, it still waits; the work's own error is not raised over the
    cancellation."""
    import asyncio
    import threading

    from core.threads import in_worker_thread

    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def work() -> None:
        started.set()
        release.wait(5)
        finished.append("work")
        raise RuntimeError("the work's own failure")

    async def scenario() -> None:
        caller = asyncio.create_task(in_worker_thread(work))
        await asyncio.to_thread(started.wait, 5)
        caller.cancel()
        await asyncio.sleep(0.05)
        assert not caller.done()  # waiting for the thread
        caller.cancel()
        await asyncio.sleep(0.05)
        assert not caller.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert finished == ["work"]

    asyncio.run(scenario())


def test_a_unit_of_work_runs_in_its_callers_context() -> None:
    """The worker thread sees the caller's context variables (a tracing span, say)."""
    import asyncio
    import contextvars

    from core.threads import in_worker_thread

    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="none")

    async def scenario() -> str:
        seen.set("the caller's")
        return await in_worker_thread(seen.get)  # type: ignore[no-any-return]

    assert asyncio.run(scenario()) == "the caller's"


async def _session_of_a_dependency(session: SessionDep) -> Session:
    return session


def _probe(
    session: SessionDep,
    same: Annotated[Session, Depends(_session_of_a_dependency)],
    label: str = "x",
) -> dict[str, object]:
    session.execute(text("CREATE TABLE IF NOT EXISTS uow_probe (label VARCHAR(20))"))
    session.execute(text("INSERT INTO uow_probe VALUES (:label)"), {"label": label})
    return {"same": session is same}


def test_an_endpoints_session_comes_from_the_unit_of_work(engine: Engine) -> None:
    """FastAPI does not solve an endpoint's own session parameter (the unit of work passes
    it); a dependency that asks for the session gets the same one, and the endpoint's
    writes are committed."""
    router = APIRouter(route_class=UnitOfWorkRoute)
    router.add_api_route("/probe", _probe, methods=["POST"])
    route = next(r for r in router.routes if isinstance(r, APIRoute))
    solved_by_fastapi = [d.call for d in route.dependant.dependencies]
    assert solved_by_fastapi == [_session_of_a_dependency]
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        answer = client.post("/probe", params={"label": "kept"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"same": True}
    with Session(engine) as session:
        assert session.execute(text("SELECT label FROM uow_probe")).scalars().all() == ["kept"]
        session.execute(text("DROP TABLE uow_probe"))
        session.commit()


def test_worker_threads_start_as_calls_need_them_and_never_more_than_allowed() -> None:
    """Calls at once up to the limit each get a thread at once (three that wait for one
    another all run); past it they queue and still all run; an error reaches its caller
    as it was raised."""
    import asyncio
    import threading

    from core.threads import WorkerThreads, in_worker_thread

    together = threading.Barrier(3, timeout=5)
    three = WorkerThreads(3, name="test-three")
    two = WorkerThreads(2, name="test-two")

    def meet(n: int) -> int:
        together.wait()  # breaks (and raises) unless all three run at once
        return n

    def fail() -> None:
        raise KeyError("the call's own")

    async def scenario() -> None:
        met = await asyncio.gather(*(in_worker_thread(meet, n, threads=three) for n in range(3)))
        assert met == [0, 1, 2] and three.started == 3
        many = await asyncio.gather(
            *(in_worker_thread(lambda n=n: n * n, threads=two) for n in range(20))
        )
        assert many == [n * n for n in range(20)] and two.started == 2
        with pytest.raises(KeyError, match="the call's own"):
            await in_worker_thread(fail, threads=two)

    asyncio.run(scenario())
