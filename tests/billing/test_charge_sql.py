"""The charge run's SQL reads other domains' tables by name, which no import checker sees:
each table it reads is listed in billing.charge_sql.TABLES_READ with its owning domain, and
exists there under that name. Renaming a table, or reading a new one unlisted, fails here."""

from __future__ import annotations

import importlib
import re

import pytest
from sqlmodel import SQLModel

from billing import charge_sql

_NAMED = re.compile(r'\b(?:FROM|JOIN)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', re.IGNORECASE)
_CTE = re.compile(r"\b([a-z_]+)\s+AS\s*\(", re.IGNORECASE)


def _statements(dialect: str) -> list[str]:
    sql = charge_sql.Sql(dialect)
    return [
        charge_sql.booking_charges(sql),
        charge_sql.fee_charges(sql, "no_show"),
        charge_sql.fee_charges(sql, "late_cancel"),
        charge_sql.walk_up_charges(sql),
        charge_sql.service_charges(sql),
        charge_sql.ACCOUNTS,
        charge_sql.UNPRICED,
    ]


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_every_table_the_charge_sql_reads_is_declared_with_its_owner(dialect: str) -> None:
    read: set[str] = set()
    for statement in _statements(dialect):
        ctes = {name.lower() for name in _CTE.findall(statement)}
        read |= {name for name in _NAMED.findall(statement) if name.lower() not in ctes}
    assert read == set(charge_sql.TABLES_READ), "update TABLES_READ"
    for domain in set(charge_sql.TABLES_READ.values()):
        importlib.import_module(f"{domain}.models")
    for table, domain in charge_sql.TABLES_READ.items():
        assert table in SQLModel.metadata.tables, f"no table {table!r} any more"
        owners = {
            mapper.class_.__module__.split(".")[0]
            for mapper in SQLModel._sa_registry.mappers
            if getattr(mapper, "local_table", None) is not None and mapper.local_table.name == table
        }
        assert owners == {domain}, f"{table} is owned by {owners}, not {domain}"
