"""The migrations build the models' schema on both databases, and undo it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import migrations
from core.db import make_engine
from migrations import include_object
from tests.conftest import IN_CI, PG_DB, PG_SERVER


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    server = make_url(PG_SERVER)
    name = f"{PG_DB}_migrations"
    conninfo = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        (pytest.fail if IN_CI else pytest.skip)(f"PostgreSQL is not reachable: {exc}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drift(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": include_object,
                },
            )
            with warnings.catch_warnings():
                # ix_instrument_name_order (0012) is an expression index, made by hand.
                warnings.filterwarnings("ignore", "Skipped unsupported reflection")
                return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_matches_the_models_and_downgrade_undoes_it(empty_database: str) -> None:
    migrations.upgrade(empty_database)
    assert _drift(empty_database) == []
    assert _tables(empty_database) == set(SQLModel.metadata.tables)

    migrations.downgrade(empty_database, "base")
    assert _tables(empty_database) == set()

    migrations.upgrade(empty_database)
    assert _drift(empty_database) == []
