"""One request, one transaction, one worker thread: the route class every router uses.

Left to itself FastAPI runs a sync endpoint, each sync dependency and the exit of a yield
dependency in separate threadpool hops, and commits a yield dependency's session after
the answer has been sent. Here a route's database work happens in one hop instead:

1. the request waits for a database slot (the gate) on the event loop, holding nothing;
   on SQLite a writer also waits there for the process's write turn;
2. one worker thread then loads what the dependencies asked for (`Deferred` values such as
   the signed-in user), runs the endpoint and commits;
3. only then does FastAPI build the response from what the endpoint returned.

So a 2xx or a 303 always describes committed work, a commit that fails becomes an error
answer, a request never holds a connection while it waits for a thread, and the slots
never outnumber the pooled connections. Deadlocks and serialization failures run the
unit of work again, a bounded number of times; contention that outlasts the wait is a
503 with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_origin

from fastapi import Request, params
from fastapi.dependencies.utils import get_typed_signature
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlmodel import Session

from core.db import get_engine, is_busy, is_retryable, writer
from core.errors import AppError, Conflict, Invalid, NotSaved, ServiceBusy
from core.replicas import WRITE_LSN, routed_session, write_position
from core.settings import get_settings
from core.threads import in_worker_thread

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_KEY = "labshare.session"
REQUEST_PARAM = "labshare_unit_of_work_request"
# Runs of one unit of work when the database reports a deadlock or serialization failure.
ATTEMPTS = 4


class Deferred:
    """A dependency's value that needs the database: resolved inside the unit of work, in
    the request's thread and transaction, just before the endpoint runs."""

    def resolve(self, session: Session) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def request_session(request: Request) -> Session:
    """The request's session (made on first use; it connects only when it first queries).

    Writes (any method but GET, HEAD and OPTIONS) take SQLite's write lock when their
    transaction begins; PostgreSQL needs no such thing.
    """
    session = request.scope.get(SESSION_KEY)
    if session is None:
        engine = get_engine()
        if request.method in READ_METHODS:
            # A lag-tolerant read may go to a replica (core.replicas).
            session = routed_session(request, engine) or Session(engine, expire_on_commit=False)
        else:
            session = Session(writer(engine), expire_on_commit=False)
        request.scope[SESSION_KEY] = session
    return session


# --- the gate ------------------------------------------------------------------------------


@dataclass
class GateStats:
    """What /metrics shows of the gate: slots in use, requests waiting, time spent waiting."""

    in_use: int = 0
    waiting: int = 0
    waits_total: int = 0
    wait_seconds_total: float = 0.0
    refused_total: int = 0


class _Turns:
    """`size` holders at a time; the others wait first come, first served. A turn given
    back goes straight to the first waiter still there. Plain asyncio futures and one timer
    a waiter: under load most requests wait here, so waiting must cost little."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiting: deque[asyncio.Future[None]] = deque()

    def take_nowait(self) -> bool:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return True
        return False

    async def take(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Wait for a turn until the loop's clock reaches `deadline` (TimeoutError)."""
        if self.take_nowait():
            return
        turn = loop.create_future()
        self.waiting.append(turn)
        timer = loop.call_at(deadline, _expire, turn)
        try:
            await turn
        except BaseException:
            # Cancelled (the client left) just as the turn was handed over: pass it on.
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self.give()
            raise
        finally:
            timer.cancel()

    def give(self) -> None:
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():  # a waiter that timed out or left is skipped
                turn.set_result(None)
                return
        self.free += 1


def _expire(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_exception(TimeoutError())


class _LoopGate:
    def __init__(self, slots: int) -> None:
        self.slots = _Turns(slots)
        self.write_turn = _Turns(1)


class Gate:
    """At most `gate_slots` requests of this process do database work at once; on SQLite
    one writer at a time. Waiting happens here, on the event loop, bounded by
    `db_wait_seconds`."""

    def __init__(self) -> None:
        self.stats = GateStats()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopGate] = (
            weakref.WeakKeyDictionary()
        )

    def _for_loop(self, loop: asyncio.AbstractEventLoop) -> _LoopGate:
        found = self._loops.get(loop)
        if found is None:
            found = self._loops[loop] = _LoopGate(get_settings().gate_slots)
        return found

    async def enter(self, *, write_turn: bool) -> _LoopGate:
        """Take a slot (and, when asked, the write turn), waiting at most `db_wait_seconds`;
        ServiceBusy otherwise. Give it back with `leave`."""
        loop = asyncio.get_running_loop()
        gate = self._for_loop(loop)
        self.stats.waits_total += 1
        if not self._take_at_once(gate, write_turn=write_turn):
            await self._wait(loop, gate, write_turn=write_turn)
        self.stats.in_use += 1
        return gate

    @staticmethod
    def _take_at_once(gate: _LoopGate, *, write_turn: bool) -> bool:
        """Most of the time a slot is free: take it with no timer and no task switch."""
        if write_turn and not gate.write_turn.take_nowait():
            return False
        if not gate.slots.take_nowait():
            if write_turn:
                gate.write_turn.give()
            return False
        return True

    async def _wait(
        self, loop: asyncio.AbstractEventLoop, gate: _LoopGate, *, write_turn: bool
    ) -> None:
        wait = get_settings().db_wait_seconds
        stats = self.stats
        began = loop.time()
        stats.waiting += 1
        took_turn = False
        try:
            if write_turn:
                await gate.write_turn.take(loop, began + wait)
                took_turn = True
            await gate.slots.take(loop, began + wait)
        except BaseException as exc:
            # Timed out or cancelled (the client left) holding the write turn but no
            # slot: give the turn back, or SQLite's writers would wait for it forever.
            if took_turn:
                gate.write_turn.give()
            if not isinstance(exc, TimeoutError):
                raise
            stats.refused_total += 1
            raise ServiceBusy(
                "the database is busy; nothing was changed, retry in a moment",
                retry_after=max(1, round(wait / 4)),
            ) from exc
        finally:
            stats.waiting -= 1
            stats.wait_seconds_total += loop.time() - began

    def leave(self, gate: _LoopGate, *, write_turn: bool) -> None:
        self.stats.in_use -= 1
        gate.slots.give()
        if write_turn:
            gate.write_turn.give()


GATE = Gate()


# --- the unit of work ------------------------------------------------------------------------


def as_app_error(exc: SQLAlchemyError) -> AppError:
    """What a database error that escaped the services means for the client."""
    if is_busy(exc):
        return ServiceBusy("the database is busy; nothing was changed, retry in a moment")
    if isinstance(exc, DataError):
        # The database refused a value the request carried (a NUL byte in text, a number
        # out of range): the client's input.
        orig = getattr(exc, "orig", None)
        reason = str(orig).strip().splitlines()[0] if orig else "invalid value"
        return Invalid(f"a value in the request is not acceptable: {reason}")
    if isinstance(exc, IntegrityError):
        return Conflict("the change conflicts with data stored meanwhile; nothing was saved")
    return NotSaved("the database did not accept the change; nothing was saved")


def _run_in_thread(
    session: Session,
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    written: Callable[[str], None] | None = None,
) -> Any:
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                values = {
                    k: v.resolve(session) if isinstance(v, Deferred) else v
                    for k, v in kwargs.items()
                }
                result = fn(**values)
                session.commit()
                if written is not None:
                    lsn = write_position(session)
                    if lsn:
                        written(lsn)
                return result
            except SQLAlchemyError as exc:
                session.rollback()
                if is_retryable(exc) and attempt < ATTEMPTS:
                    # Deadlock or serialization failure: the other transaction has gone on;
                    # run ours again after a short, random pause.
                    time.sleep(random.uniform(0.005, 0.02) * attempt)
                    continue
                error = as_app_error(exc)
                level = logging.INFO if error.status_code < 500 else logging.ERROR
                log.log(level, "%s %s: %s", fn.__module__, fn.__name__, exc, exc_info=exc)
                raise error from exc
            except OverflowError as exc:
                # A number past what the database holds (an id past 64 bits on SQLite) or a
                # time past what Python's dates hold: the client's input, not our fault.
                session.rollback()
                raise Invalid("a number or time in the request is out of range") from exc
            except AppError as exc:
                # A refusal that must leave a trace (a wrong PIN counted) keeps its work.
                if exc.commit_first:
                    session.commit()
                else:
                    session.rollback()
                raise
            except BaseException:
                session.rollback()
                raise
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        session.close()


async def run_unit_of_work(
    request: Request,
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    session_params: tuple[str, ...] = (),
) -> Any:
    """Run a sync endpoint as one unit of work (see the module's docstring); the request's
    session is passed as each of `session_params`."""
    session = request_session(request)
    for name in session_params:
        kwargs[name] = session
    sqlite_writer = request.method not in READ_METHODS and session.get_bind().dialect.name == (
        "sqlite"
    )
    written = None
    if request.method not in READ_METHODS and get_settings().replica_urls:

        def written(lsn: str) -> None:
            request.scope[WRITE_LSN] = lsn

    gate = await GATE.enter(write_turn=sqlite_writer)
    try:
        return await in_worker_thread(_run_in_thread, session, fn, kwargs, written)
    finally:
        GATE.leave(gate, write_turn=sqlite_writer)


def _read_only(fn: Callable[[Session], Any]) -> Any:
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            return fn(session)
        except SQLAlchemyError as exc:
            raise as_app_error(exc) from exc
        finally:
            session.rollback()


async def read_before_unit_of_work(fn: Callable[[Session], Any]) -> Any:
    """Run `fn(session)` in a read-only transaction of its own, in a worker thread behind
    the gate: for slow, pure work a dependency does before the unit of work begins (parse
    and expand an uploaded calendar), so that it never runs while a write lock is held."""
    gate = await GATE.enter(write_turn=False)
    try:
        return await in_worker_thread(_read_only, fn)
    finally:
        GATE.leave(gate, write_turn=False)


async def get_session(request: Request) -> Session:
    """The request's session; the unit of work commits it before the answer is sent.

    An endpoint's own `Annotated[Session, Depends(get_session)]` parameter is filled by the
    unit of work, not by FastAPI (one dependency fewer to solve on every request); a
    dependency that asks for it gets it from FastAPI, the same session."""
    return request_session(request)


def _request_parameter(typed: inspect.Signature) -> str | None:
    """The name of the endpoint's own `Request` parameter, if it has one (FastAPI fills
    only one); `typed`: its signature with the annotations resolved."""
    for parameter in typed.parameters.values():
        if parameter.annotation is Request:
            return parameter.name
    return None


def _session_parameters(typed: inspect.Signature) -> tuple[str, ...]:
    """The names of the endpoint's parameters that are the request's session
    (get_session's)."""
    return tuple(
        parameter.name
        for parameter in typed.parameters.values()
        if get_origin(parameter.annotation) is Annotated
        and any(
            isinstance(extra, params.Depends) and extra.dependency is get_session
            for extra in parameter.annotation.__metadata__
        )
    )


def _one_hop(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An async endpoint with `fn`'s parameters, but the session, that runs `fn` as one
    unit of work."""
    signature = inspect.signature(fn)
    typed = get_typed_signature(fn)
    own = _request_parameter(typed)
    sessions = _session_parameters(typed)

    async def endpoint(**kwargs: Any) -> Any:
        request = kwargs[own] if own else kwargs.pop(REQUEST_PARAM)
        return await run_unit_of_work(request, fn, kwargs, sessions)

    signature = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name not in sessions]
    )
    if own is None:
        extra = inspect.Parameter(REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        signature = signature.replace(parameters=[*signature.parameters.values(), extra])
    endpoint.__signature__ = signature  # type: ignore[attr-defined]
    # FastAPI reads the name, the docstring (the API docs) and, through __wrapped__, the
    # module globals it resolves `fn`'s string annotations in.
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(endpoint, attribute, getattr(fn, attribute))
    endpoint.__wrapped__ = fn  # type: ignore[attr-defined]
    return endpoint


class UnitOfWorkRoute(APIRoute):
    """An APIRoute whose sync endpoint runs as one unit of work, committed before the
    answer is built. Every labshare router uses it (a test checks)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _one_hop(endpoint)
        super().__init__(path, endpoint, **kwargs)


def request_metrics() -> list[str]:
    """Prometheus lines for the request path: the pool, and the gate in front of it."""
    engine = get_engine()
    pool = engine.pool
    stats = GATE.stats
    figures: list[tuple[str, str, float]] = [
        ("db_pool_size", "gauge", float(getattr(pool, "size", lambda: 0)())),
        ("db_pool_checked_out", "gauge", float(getattr(pool, "checkedout", lambda: 0)())),
        ("db_pool_overflow", "gauge", float(getattr(pool, "overflow", lambda: 0)())),
        ("request_gate_slots", "gauge", float(get_settings().gate_slots)),
        ("request_gate_in_use", "gauge", float(stats.in_use)),
        ("request_gate_waiting", "gauge", float(stats.waiting)),
        ("request_gate_waits_total", "counter", float(stats.waits_total)),
        ("request_gate_wait_seconds_total", "counter", stats.wait_seconds_total),
        ("request_gate_refused_total", "counter", float(stats.refused_total)),
    ]
    lines = []
    for name, kind, value in figures:
        lines += [f"# TYPE labshare_{name} {kind}", f"labshare_{name} {value:g}"]
    return lines
