"""Engines and units of work for SQLite (embedded) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import DateTime, event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.attributes import manager_of_class
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel, create_engine

from core.settings import get_settings

# Naming convention so Alembic and both databases agree on constraint names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so values are
    normalised to UTC on the way in and tagged UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite's come without an offset)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is UTC:  # PostgreSQL sessions run in UTC (make_engine)
        return value
    return value.astimezone(UTC)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    # Let us issue BEGIN ourselves so writers can take the lock first (BEGIN IMMEDIATE):
    # a deferred transaction that upgrades to a writer fails at once under contention.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Bounded: a writer that cannot get the lock in time is answered 503, not left hanging.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse_nul(
        _conn: Connection,
        _cursor: Any,
        _statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        # PostgreSQL's text cannot hold a NUL byte and psycopg refuses one in any value
        # (a DataError: the request's 422); SQLite would store it. Refuse it here as well,
        # for every statement and every field, so both databases answer alike.
        if carries_nul(parameters, executemany):
            raise sqlite3.DataError("text must not contain NUL (0x00) characters")


def carries_nul(parameters: Any, executemany: bool) -> bool:
    """Whether a statement's parameters hold text with NUL: a row, or rows for executemany
    (whose batches of many rows in one INSERT come as one flat row)."""
    if not parameters:
        return False
    for row in parameters if executemany else (parameters,):
        if isinstance(row, dict):
            row = row.values()
        elif not isinstance(row, list | tuple):
            row = (row,)
        for value in row:
            if isinstance(value, str) and "\x00" in value:
                return True
    return False


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, configured for labshare's needs on either database.

    The pool fits the request gate (core.routing): `db_pool_size` connections for requests
    plus `db_max_overflow` for background work in the same process. Connections are
    recycled after half an hour instead of pinged before each use (a round trip a request).
    """
    settings = get_settings()
    kwargs.setdefault("pool_size", settings.db_pool_size)
    kwargs.setdefault("max_overflow", settings.db_max_overflow)
    kwargs.setdefault("pool_timeout", settings.db_wait_seconds)
    kwargs.setdefault("pool_recycle", 1800)
    if url.startswith("sqlite"):
        busy_ms = int(settings.db_wait_seconds * 1000)
        if ":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite://"):
            for key in ("pool_size", "max_overflow", "pool_timeout", "pool_recycle"):
                kwargs.pop(key, None)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
            **kwargs,
        )
        _configure_sqlite(engine, busy_ms)
        return engine
    timeout = settings.db_statement_timeout_ms
    connect_args = kwargs.pop("connect_args", {})
    if settings.database_pooler:
        # PgBouncer in transaction mode hands each transaction any server connection: a
        # statement prepared on one is unknown on the next, and startup options are not
        # passed on. Set TimeZone and statement_timeout on the role or database instead
        # (README, "Behind PgBouncer").
        connect_args.setdefault("prepare_threshold", None)
        return create_engine(url, connect_args=connect_args, **kwargs)
    # Sessions in UTC: timestamps arrive with Python's own UTC, not a zoneinfo zone such as
    # the server's Etc/UTC, whose conversion cost 3 us a value (a tenth of slot search).
    options = ["-c TimeZone=UTC"]
    if timeout:
        options.append(f"-c statement_timeout={timeout}")
    connect_args.setdefault("options", " ".join(options))
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    _keep_prepared_statements(engine)
    return engine


def _keep_prepared_statements(engine: Engine) -> None:
    """End PostgreSQL transactions that fail without forgetting prepared statements.

    psycopg answers every rollback with DEALLOCATE ALL and starts counting afresh (a
    rolled-back DROP could leave a statement pointing at a recreated object). A third of
    booking requests end in a refusal, so no pooled connection kept its statements past a
    few requests, and PostgreSQL planned every statement every time (a 409's alternatives
    query: 1.6 ms of planning; bench/booking.py). labshare changes no schema while it
    serves, and PostgreSQL keeps prepared statements across a rollback, so a plain ROLLBACK
    through libpq is enough; a connection that cannot roll back falls back to psycopg's
    own rollback, whose error SQLAlchemy knows how to handle.
    """
    from psycopg.pq import ExecStatus, TransactionStatus

    def do_rollback(dbapi_connection: Any) -> None:
        pgconn = dbapi_connection.pgconn
        if pgconn.transaction_status == TransactionStatus.IDLE:
            return
        try:
            with dbapi_connection.lock:
                done = pgconn.exec_(b"ROLLBACK").status == ExecStatus.COMMAND_OK
        except Exception:  # a broken connection: psycopg's rollback says so properly
            done = False
        if not done:
            dbapi_connection.rollback()

    engine.dialect.do_rollback = do_rollback  # type: ignore[method-assign]


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine() -> Engine:
    """The process's engine for LABSHARE_DATABASE_URL: one per URL, built once (the first
    call, at start-up for the server) even when many threads ask at the same moment."""
    url = get_settings().database_url
    engine = _engines.get(url)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(url)
            if engine is None:
                engine = _engines[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests that drop databases, forked workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


_writers: dict[int, tuple[Engine, Engine]] = {}


def writer(engine: Engine) -> Engine:
    """The same engine, but transactions take SQLite's write lock when they begin."""
    if engine.dialect.name != "sqlite":
        return engine
    found = _writers.get(id(engine))
    if found is None or found[0] is not engine:
        found = _writers[id(engine)] = (engine, engine.execution_options(sqlite_begin="IMMEDIATE"))
    return found[1]


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


class json_rows(sa.sql.functions.FunctionElement[Any]):
    """An aggregate: its columns' values in every row, as one JSON array of arrays ([] for
    no rows), so a statement that reads one row of some tables can carry a few rows of
    another without repeating the first's columns in each."""

    type = sa.JSON()
    inherit_cache = True
    name = "json_rows"


@compiles(json_rows, "postgresql")
def _json_rows_postgresql(element: json_rows, compiler: Any, **kw: Any) -> str:
    columns = compiler.process(element.clauses, **kw)
    return f"coalesce(json_agg(json_build_array({columns})), '[]')"


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


def utc_from_text(text: str | None) -> datetime | None:
    """A UTCDateTime value as json_rows gives it (ISO text; SQLite's without an offset)."""
    return None if text is None else as_utc(datetime.fromisoformat(text))


def plain_rows(
    session: Session, statement: sa.Executable, params: dict[str, Any] | None = None
) -> Sequence[Any]:
    """A read's rows (tuples that also name their columns), past the ORM's result
    machinery: a few microseconds a row, which counts at the hundreds of rows slot search
    reads, and a tenth of a millisecond a statement."""
    if session.autoflush:
        session.flush()  # what Session.execute does first; nothing when no change is pending
    return session.connection().execute(statement, params).all()


_DATABASE_KEYS: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def database_key(session: Session) -> str:
    """The database a session reads, as the per-process caches key it (its URL), worked
    out once per engine: str(url) costs more than the cache lookup it keys."""
    engine = session.get_bind().engine
    key = _DATABASE_KEYS.get(engine)
    if key is None:
        key = _DATABASE_KEYS[engine] = str(engine.url)
    return key


def among(session: Session, column: Any, ids: list[int]) -> sa.ColumnElement[bool]:
    """`column IN ids` for long lists of ids. On PostgreSQL one array parameter
    (`= ANY(:ids)`): a fixed statement, where IN with hundreds of parameters is a new
    statement per length that psycopg parses anew each time (a few ms for ~500 ids)."""
    if is_postgres(session):
        return column == sa.any_(sa.bindparam(None, list(ids), type_=ARRAY(sa.Integer())))
    return column.in_(ids)


@contextmanager
def session_scope(*, write: bool = True, engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    engine = engine or get_engine()
    with Session(writer(engine) if write else engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def enum_type(enum_cls: type[StrEnum]) -> sa.Enum:
    """Store an enum as VARCHAR + CHECK, so adding a value never needs ALTER TYPE."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=True,
        length=32,
        name=enum_cls.__name__.lower(),
        values_callable=lambda members: [m.value for m in members],
    )


# --- what a database error means for the person who asked --------------------------------

# Deadlock and serialization failure: the same work, run again, usually succeeds.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
# Lock wait or statement timeout, too many connections, a server starting or stopping.
BUSY_SQLSTATES = frozenset({"55P03", "57014", "53300", "57P03", "57P01"})
_SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error wrapped by SQLAlchemy, if any."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure: roll back and run the unit of work again."""
    return isinstance(exc, sa.exc.DBAPIError) and sqlstate(exc) in RETRYABLE_SQLSTATES


def is_busy(exc: BaseException) -> bool:
    """Contention or a database that cannot be reached right now: the client should retry."""
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection in time
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated or sqlstate(exc) in BUSY_SQLSTATES | RETRYABLE_SQLSTATES:
        return True
    message = str(exc.orig).lower()
    if any(text in message for text in _SQLITE_BUSY):
        return True
    # psycopg's OperationalError without a SQLSTATE: the connection failed or was lost.
    return (
        isinstance(exc, sa.exc.OperationalError)
        and sqlstate(exc) is None
        and ("sqlite" not in type(exc.orig).__module__)
    )


@dataclass(frozen=True)
class _Defaults:
    mapper: Any
    plain: dict[str, Any]  # field -> its default
    made: list[tuple[str, Callable[[], Any]]]  # field -> its default factory
    known: frozenset[str]
    required: frozenset[str]


_DEFAULTS: dict[type, _Defaults] = {}
M = TypeVar("M", bound=SQLModel)


def _defaults_of(model: type[SQLModel]) -> _Defaults:
    found = _DEFAULTS.get(model)
    if found is None:
        fields = model.model_fields
        found = _DEFAULTS[model] = _Defaults(
            mapper=sa.inspect(model),
            plain={
                n: f.default
                for n, f in fields.items()
                if not f.is_required() and f.default_factory is None
            },
            made=[(n, f.default_factory) for n, f in fields.items() if f.default_factory],  # type: ignore[misc]
            known=frozenset(fields),
            required=frozenset(n for n, f in fields.items() if f.is_required()),
        )
    return found


def built(model: type[M], **values: Any) -> M:
    """A new instance of a table model with `values` and the model's own defaults for the
    rest, built the way the ORM builds a row it loads: the class's __new__, then its
    attributes at once. SQLModel's __init__ sets each field through SQLAlchemy's attribute
    events: 40 to 45 us for a booking, on every booking request. Nothing is checked less:
    a table model's __init__ does not validate. It is stricter: an unknown field (which
    __init__ ignores) or a missing required one (which __init__ leaves None) is a
    TypeError."""
    defaults = _defaults_of(model)
    given = values.keys()
    if not (given <= defaults.known and given >= defaults.required):
        raise TypeError(
            f"{model.__name__}: unknown fields {sorted(given - defaults.known)} or missing "
            f"{sorted(defaults.required - given)}"
        )
    if not defaults.mapper.configured:
        # The constructor's init event configures the mappers first; __new__ does not,
        # and an attribute set on an unconfigured mapper's instance fails.
        configure_mappers()
    instance = manager_of_class(model).new_instance()
    fields = dict(defaults.plain)
    for name, factory in defaults.made:
        if name not in values:
            fields[name] = factory()
    fields.update(values)
    instance.__dict__.update(fields)
    object.__setattr__(instance, "__pydantic_fields_set__", set(given))
    return instance  # type: ignore[no-any-return]
