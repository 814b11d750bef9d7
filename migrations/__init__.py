"""Alembic migrations, and how to run them from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent
# Every domain, left to right in the import order; each keeps its tables in models.py
# modules (a subpackage such as booking/calendars/ has its own).
DOMAINS = ("core", "instruments", "booking", "telemetry", "billing", "admin")

# Indexes and columns that migrations create by hand on PostgreSQL only (the models cannot
# declare a trigram GIN index, or a generated column only one database has); autogenerate
# must not offer to drop them.
HAND_MADE_INDEXES = {
    "ix_instrument_search_trgm",
    "ix_instrument_search_document_trgm",
    "ix_instrument_name_order",  # an expression index, which autogenerate does not compare
}
HAND_MADE_COLUMNS = {"search_document"}


def include_object(
    _obj: object, name: str | None, type_: str, reflected: bool, _compare_to: object
) -> bool:
    """Alembic's filter: everything but the hand-made PostgreSQL indexes and columns."""
    if not reflected:
        return True
    return not (
        (type_ == "index" and name in HAND_MADE_INDEXES)
        or (type_ == "column" and name in HAND_MADE_COLUMNS)
    )


def load_models() -> None:
    """Import every domain's `models` modules, subpackages included, so that the metadata
    Alembic compares against holds every table."""
    import importlib
    import pkgutil

    importlib.import_module("core.audit")
    importlib.import_module("core.events")
    for domain in DOMAINS:
        package = importlib.import_module(domain)
        for info in pkgutil.walk_packages(package.__path__, f"{domain}."):
            if info.name.rsplit(".", 1)[-1] == "models":
                importlib.import_module(info.name)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's config for this package; `url` overrides LABSHARE_DATABASE_URL."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def sqlite_guards(table: str) -> list[str]:
    """The triggers revision 0011 puts on `table` under SQLite (the closed month's guard).
    SQLite drops a table's triggers with the table, so a migration that rebuilds one
    (Alembic's batch mode) creates them again with these."""
    import importlib.util

    path = next((HERE / "versions").glob("*_0011_*.py"))
    spec = importlib.util.spec_from_file_location("labshare_migration_0011", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [s for s in module.SQLITE if f" ON {table} " in s]
