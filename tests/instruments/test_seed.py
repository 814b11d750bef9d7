"""The demo network generator, on both databases."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from core.models import Role, User
from core.security import verify_password
from instruments.csv_io import csv_export
from instruments.errors import DatabaseNotEmpty
from instruments.models import Category, Institution, Instrument, Lab, OpeningHours, Rate
from instruments.schemas import BookingRules
from instruments.seed import DEMO_LAB, DEMO_LOGINS, DEMO_PASSWORD, seed_network
from tests.conftest import _empty_all_tables
from tests.factories import create_user


def _count(session: Session, model: type) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def _seed(engine: Engine, **kwargs: int) -> str:
    """Seed in its own unit of work and return the catalog as CSV."""
    with Session(engine) as session:
        seed_network(session, **kwargs)
        session.commit()
        out = io.StringIO()
        csv_export(session, out)
    return out.getvalue()


def test_seed_loads_a_whole_network(engine: Engine, session: Session) -> None:
    _seed(engine, instruments=400, researchers=30)

    assert _count(session, Instrument) == 400
    leaves = session.exec(select(Category).where(col(Category.parent_id).is_not(None))).all()
    assert 40 <= len(leaves) <= 50 and all(c.name_zh for c in leaves)
    assert _count(session, Category) - len(leaves) == 11  # the groups
    key_labs = session.exec(select(func.count()).where(col(Lab.is_key_lab))).one()
    assert 120 <= key_labs <= 140
    names = set(session.exec(select(Institution.name)))
    assert {"Xi'an Jiaotong University", "Northwestern Polytechnical University"} <= names
    small = session.exec(select(func.count()).where(col(Institution.is_small_company))).one()
    assert small >= 100
    # Every instrument opens some time in the week and has a rate for each payer class.
    assert _count(session, OpeningHours) >= 400 * 5
    assert _count(session, Rate) == 400 * 4
    assert session.exec(select(func.min(Instrument.asset_value))).one() > 0
    # The rules the generator writes pass the API's own validation.
    instruments = session.exec(select(Instrument)).all()
    for instrument in instruments:
        BookingRules.model_validate(instrument, from_attributes=True)
    flags = (
        sum(i.approval_required for i in instruments),
        sum(i.qualification_required for i in instruments),
        sum(i.weekly_quota_hours is not None for i in instruments),
    )
    assert all(0 < n < 400 for n in flags)


def test_demo_logins_work_with_the_documented_password(
    engine: Engine, session: Session, client: TestClient
) -> None:
    _seed(engine, instruments=60, researchers=5)
    for email, role, _ in DEMO_LOGINS:
        user = session.exec(select(User).where(User.email == email)).one()
        assert user.role == Role(role)
        response = client.post(
            "/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
        )
        assert response.status_code == 200, email
    manager = session.exec(select(User).where(User.email == "manager@demo.labshare")).one()
    lab = session.get(Lab, manager.lab_id)
    assert lab is not None and lab.code == DEMO_LAB
    managed = client.get("/api/v1/instruments", params={"lab": DEMO_LAB}).json()["items"]
    assert len(managed) >= 8
    engineer = session.exec(select(User).where(User.email == "engineer@demo.labshare")).one()
    firm = session.get(Institution, engineer.institution_id)
    assert firm is not None and firm.is_small_company
    # One hash for everyone: the seed hashes the demo password once.
    hashes = set(session.exec(select(User.password_hash)))
    assert len(hashes) == 1 and verify_password(hashes.pop(), DEMO_PASSWORD)


def test_same_seed_same_network_other_seed_another(engine: Engine) -> None:
    first = _seed(engine, instruments=150, researchers=5, seed=7)
    _empty_all_tables(engine)
    again = _seed(engine, instruments=150, researchers=5, seed=7)
    _empty_all_tables(engine)
    other = _seed(engine, instruments=150, researchers=5, seed=8)
    assert first == again
    assert first != other
    assert first.count("\n") == 151


def test_refuses_a_database_that_holds_data(engine: Engine, session: Session) -> None:
    create_user(session)
    with pytest.raises(DatabaseNotEmpty, match="not empty"):
        seed_network(session, instruments=10)
    assert _count(session, Instrument) == 0
