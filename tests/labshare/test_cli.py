"""The top-level commands: `labshare seed` and `labshare users create`, good and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from core.models import Role, User
from core.settings import get_settings
from instruments.models import Instrument
from labshare.cli import app
from tests.factories import create_institution, create_lab, create_user

runner = CliRunner()


def test_seed_command_loads_then_refuses_a_second_time(engine: Engine, session: Session) -> None:
    result = runner.invoke(app, ["seed", "--instruments", "120", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "seeded 120 instruments" in result.stdout
    assert session.exec(select(func.count()).select_from(Instrument)).one() == 120

    again = runner.invoke(app, ["seed", "--instruments", "120"])
    assert again.exit_code == 1
    assert again.stderr.strip().startswith("error: the database is not empty (120 instruments")
    assert len(again.stderr.strip().splitlines()) == 1


def test_seed_rejects_bad_options(engine: Engine) -> None:
    assert runner.invoke(app, ["seed", "--instruments", "-5"]).exit_code == 2
    assert runner.invoke(app, ["seed", "--instruments", "many"]).exit_code == 2


@pytest.fixture
def unmigrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LABSHARE_DATABASE_URL", f"sqlite:///{tmp_path / 'blank.db'}")
    monkeypatch.setenv("LABSHARE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_seed_asks_for_migrations_first(unmigrated: None) -> None:
    result = runner.invoke(app, ["seed", "--instruments", "10"])
    assert result.exit_code == 1
    assert "run `labshare db upgrade` first" in result.stderr


def test_users_create(engine: Engine, session: Session) -> None:
    lab = create_lab(session, code="CORE")
    result = runner.invoke(
        app,
        ["users", "create", "--email", "Boss@Example.org", "--password", "long enough",
         "--role", "lab_manager", "--lab", "CORE"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    user = session.exec(select(User).where(User.email == "boss@example.org")).one()
    assert user.role == Role.lab_manager and user.lab_id == lab.id
    assert user.institution_id == lab.institution_id


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--role", "emperor"], "Invalid value for '--role'"),
        (["--role", "lab_manager"], "a lab_manager needs --lab"),
        (["--lab", "NOPE"], "no lab with the code 'NOPE'"),
        (["--institution", "NOPE"], "no institution with the code 'NOPE'"),
        (["--lab", "CORE", "--institution", "OTHER"], "does not belong to institution OTHER"),
        (["--password", "short"], "at least 10 characters"),
        (["--password", "password123"], "most common"),
        (["--email", "not-an-email"], "is not an email address"),
        (["--email", "taken@example.org"], "exists"),
    ],
)
def test_users_create_bad_input_is_one_line_and_changes_nothing(
    engine: Engine, session: Session, args: list[str], reason: str
) -> None:
    create_lab(session, code="CORE")
    create_institution(session, code="OTHER")
    create_user(session, email="taken@example.org")
    defaults = {"--email": "new@example.org", "--password": "long enough"}
    for flag, value in defaults.items():
        if flag not in args:
            args = [*args, flag, value]
    before = session.exec(select(func.count()).select_from(User)).one()
    result = runner.invoke(app, ["users", "create", *args])
    assert result.exit_code != 0
    assert reason in result.stderr
    if result.exit_code == 1:
        assert len(result.stderr.strip().splitlines()) == 1
    session.rollback()
    assert session.exec(select(func.count()).select_from(User)).one() == before


def test_bad_options_end_in_one_line_from_the_console_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "labshare.cli", "seed", "--instruments", "many"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Invalid value for '--instruments'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
