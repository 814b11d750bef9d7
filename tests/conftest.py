"""Fixtures: every database test runs on SQLite and on PostgreSQL, both built by migrations.

PostgreSQL is the machine's (LABSHARE_TEST_POSTGRES_URL, by default the local server;
LABSHARE_TEST_PG_DB names the database, created afresh). With CI=true a missing
PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel

import migrations
from core.db import get_engine
from core.settings import get_settings

PG_SERVER = os.environ.get(
    "LABSHARE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PG_DB = os.environ.get("LABSHARE_TEST_PG_DB", "labshare_test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
migrations.load_models()  # every table, so each test empties them all


def _create_pg_database() -> str:
    url = make_url(PG_SERVER)
    dsn = url.set(drivername="postgresql", database=url.database or "postgres")
    conninfo = dsn.render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_DB}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {url.host}:{url.port} is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url.set(database=PG_DB).render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'labshare.db'}"
    else:
        url = _create_pg_database()
    migrations.upgrade(url)
    return url


def _use_database(monkeypatch: pytest.MonkeyPatch, url: str, data_dir: Path) -> None:
    monkeypatch.setenv("LABSHARE_DATABASE_URL", url)
    monkeypatch.setenv("LABSHARE_SECRET_KEY", "test-secret-key-test-secret-key-0123456789")
    monkeypatch.setenv("LABSHARE_DATA_DIR", str(data_dir))
    # Each test writes its own figures: the dashboard's cache would show another test's
    # (tests/admin/test_figure_cache.py tests the cache itself).
    monkeypatch.setenv("LABSHARE_KPI_CACHE_SECONDS", "0")
    monkeypatch.setenv("LABSHARE_KPI_CACHE_PAST_SECONDS", "0")
    monkeypatch.setenv("LABSHARE_PICKER_CACHE_SECONDS", "0")
    monkeypatch.setenv("LABSHARE_KPI_WARM", "false")
    monkeypatch.setenv("LABSHARE_HOURS_WARM", "false")
    get_settings.cache_clear()


def _empty_all_tables(engine: Engine) -> None:
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    # Most tests fill a few of the 68 tables: find those, and empty only them.
    probe = " UNION ALL ".join(f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables)
    with engine.begin() as conn:
        filled = {row[0] for row in conn.execute(text(probe))}
        if engine.dialect.name == "postgresql":
            # Deletes, not a TRUNCATE of every table (a quarter of a second a test: a new
            # file per table), with triggers and foreign keys off for this transaction (the
            # guards refuse deletes); then every sequence starts at 1 again, as RESTART
            # IDENTITY did.
            if filled:
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                for name in reversed(tables):
                    if name in filled:
                        conn.execute(text(f'DELETE FROM "{name}"'))
            conn.execute(
                text(
                    "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false)"
                    " FROM pg_sequences WHERE schemaname = 'public'"
                )
            )
        elif filled:
            # The guards that keep the past as it was refuse deletes; a test's scratch data
            # goes anyway: drop them, empty the tables, put them back as they were.
            triggers = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            ).all()
            for name, _sql in triggers:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            for name in reversed(tables):
                if name in filled:
                    conn.execute(text(f'DELETE FROM "{name}"'))
            for _name, sql in triggers:
                conn.execute(text(sql))


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Engine]:
    """The engine of a database emptied after the test; the app and services use it too."""
    _use_database(monkeypatch, database_url, tmp_path)
    engine = get_engine()
    try:
        yield engine
    finally:
        _empty_all_tables(engine)
        get_settings.cache_clear()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session for arranging and checking data; commit what the app should see."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    from labshare.app import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture
def backend(engine: Engine) -> str:
    return engine.dialect.name
