"""Reads that tolerate a little lag go to PostgreSQL streaming replicas.

A route opts in with `dependencies=[LagTolerant]` (catalog search, instrument pages,
availability, slots, calendar feeds, reports). Its session then picks its database on its
first query, in the request's worker thread:

- a replica that answers and is no more than LABSHARE_REPLICA_MAX_LAG_SECONDS behind
  (caught up when it has replayed all it received; else the age of its last replayed
  transaction), taking turns between healthy replicas;
- read-your-writes: a person's write answers with the primary's WAL position (cookie
  `labshare_lsn`, header `Labshare-LSN`); their next read waits up to
  LABSHARE_REPLICA_WAIT_MS for the replica to have replayed that far (a client may send
  the header `Labshare-Min-LSN` instead of the cookie), or reads the primary;
- otherwise the primary. Every write, and every read of a route that did not opt in, goes
  to the primary.

What a replica said is remembered for a second per process, so a replica that is down
costs one failed connection a second, not one a request. `/healthz` lists each replica.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from core.settings import get_settings

LAG_TOLERANT = "labshare.lag_tolerant"
READ_FROM = "labshare.read_from"
WRITE_LSN = "labshare.lsn"
LSN_COOKIE = "labshare_lsn"
LSN_HEADER = "labshare-min-lsn"
LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")
REMEMBER_SECONDS = 1.0
POLL_SECONDS = 0.01

STATE = text(
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
)
REPLAYED = text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)")


@dataclass(frozen=True)
class ReplicaState:
    name: str  # host:port/db, never the password
    ok: bool
    lag_seconds: float | None
    detail: str = ""


class Replica:
    def __init__(self, url: str, engine: Engine) -> None:
        self.engine = engine
        self.name = f"{engine.url.host}:{engine.url.port or 5432}/{engine.url.database}"
        self._state: ReplicaState | None = None
        self._at = 0.0
        self._lock = threading.Lock()
        # A position this replica was waited for in vain, and when: reads wanting it within
        # the next second go to the primary at once instead of each waiting again.
        self._missed: tuple[str, float] = ("", 0.0)

    def state(self) -> ReplicaState:
        """Reachable, in recovery, and how far behind (remembered for a second)."""
        with self._lock:
            if self._state is not None and time.monotonic() - self._at < REMEMBER_SECONDS:
                return self._state
        try:
            with self.engine.connect() as connection:
                recovering, lag = connection.execute(STATE).one()
            state = ReplicaState(self.name, bool(recovering),
                                 float(lag or 0) if recovering else None,
                                 "" if recovering else "not a replica (not in recovery)")  # fmt: skip
        except SQLAlchemyError as exc:
            state = ReplicaState(
                self.name, False, None, str(getattr(exc, "orig", exc)).strip()[:200]
            )
        with self._lock:
            self._state, self._at = state, time.monotonic()
        return state

    def usable(self) -> bool:
        state = self.state()
        lag = state.lag_seconds if state.lag_seconds is not None else float("inf")
        return state.ok and lag <= get_settings().replica_max_lag_seconds

    def replayed(self, lsn: str, wait_seconds: float) -> bool:
        """Whether the replica has replayed the primary's WAL up to `lsn`, waiting up to
        `wait_seconds` for it."""
        missed, when = self._missed
        if missed == lsn and time.monotonic() - when < REMEMBER_SECONDS:
            return False
        deadline = time.monotonic() + wait_seconds
        try:
            with self.engine.connect() as connection:
                while True:
                    if connection.execute(REPLAYED, {"lsn": lsn}).scalar_one():
                        return True
                    if time.monotonic() >= deadline:
                        self._missed = (lsn, time.monotonic())
                        return False
                    connection.rollback()
                    time.sleep(POLL_SECONDS)
        except SQLAlchemyError:
            return False


_replicas: list[Replica] | None = None
_replicas_lock = threading.Lock()
_turns = itertools.count()


def replicas() -> list[Replica]:
    """The process's replicas, from LABSHARE_DATABASE_REPLICA_URLS (built once)."""
    global _replicas
    if _replicas is None:
        from core.db import make_engine

        with _replicas_lock:
            if _replicas is None:
                _replicas = [
                    Replica(url, make_engine(url, connect_args={"connect_timeout": 2}))
                    for url in get_settings().replica_urls
                ]
    return _replicas


def reset() -> None:
    """Forget the replicas (settings changed, tests)."""
    global _replicas
    with _replicas_lock:
        for replica in _replicas or []:
            replica.engine.dispose()
        _replicas = None


def choose(min_lsn: str | None) -> Replica | None:
    """A replica for this read, or None for the primary (see the module's docstring)."""
    pool = replicas()
    if not pool:
        return None
    start = next(_turns)
    wait = get_settings().replica_wait_ms / 1000
    for i in range(len(pool)):
        replica = pool[(start + i) % len(pool)]
        if not replica.usable():
            continue
        if min_lsn is None or replica.replayed(min_lsn, wait):
            return replica
    return None


def min_lsn_of(request: Request) -> str | None:
    value = request.headers.get(LSN_HEADER) or request.cookies.get(LSN_COOKIE) or ""
    value = value.strip().upper()
    return value if LSN.match(value) else None


class RoutedSession(Session):
    """A read-only session that picks a replica or the primary on its first query."""

    def __init__(self, primary: Engine, request: Request, **kwargs: Any) -> None:
        super().__init__(primary, **kwargs)
        self._primary = primary
        self._request = request
        self._chosen: Engine | None = None

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        if self._chosen is None:
            replica = choose(min_lsn_of(self._request))
            self._chosen = replica.engine if replica is not None else self._primary
            self._request.scope[READ_FROM] = "replica" if replica is not None else "primary"
        return self._chosen


def routed_session(request: Request, primary: Engine) -> Session | None:
    """A routed session for a lag-tolerant read when replicas are set, else None."""
    if not request.scope.get(LAG_TOLERANT) or not get_settings().replica_urls:
        return None
    if primary.dialect.name != "postgresql":
        return None
    return RoutedSession(primary, request, expire_on_commit=False)


async def _mark(request: Request) -> None:
    request.scope[LAG_TOLERANT] = True


# A route's `dependencies=[LagTolerant]`: its reads may come from a replica.
LagTolerant = Depends(_mark)


def write_position(session: Session) -> str | None:
    """The primary's WAL position right after a write committed (read-your-writes)."""
    if not get_settings().replica_urls or session.get_bind().dialect.name != "postgresql":
        return None
    try:
        # The insert position, not pg_current_wal_lsn() (the write position): with
        # synchronous_commit off our own commit record may not be written out yet, and a
        # replica that had replayed only that far would not show this write.
        return str(session.execute(text("SELECT pg_current_wal_insert_lsn()")).scalar_one())
    except SQLAlchemyError:
        return None


class ReadYourWritesMiddleware:
    """Sends a write's WAL position back (cookie and header), and says where a
    lag-tolerant read was served from (`Labshare-Read-From`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                lsn = scope.get(WRITE_LSN)
                if lsn:
                    cookie = f"{LSN_COOKIE}={lsn}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
                    headers += [(b"set-cookie", cookie.encode()), (b"labshare-lsn", lsn.encode())]
                read_from = scope.get(READ_FROM)
                if read_from:
                    headers.append((b"labshare-read-from", read_from.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)
