"""Typed helpers that create real rows for tests."""

from __future__ import annotations

import itertools
from datetime import time

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from core.models import Role, User
from core.service import user_create
from instruments.models import (
    Category,
    Institution,
    InstitutionKind,
    Instrument,
    Lab,
    OpeningHours,
    PayerClass,
    Rate,
)

_seq = itertools.count(1)
PASSWORD = "correct horse battery"


def create_institution(
    session: Session,
    *,
    code: str | None = None,
    kind: InstitutionKind = InstitutionKind.university,
    name: str | None = None,
    is_small_company: bool = False,
) -> Institution:
    n = next(_seq)
    inst = Institution(
        code=code or f"INST{n}",
        name=name or f"Institution {n}",
        kind=kind,
        is_small_company=is_small_company,
    )
    session.add(inst)
    session.commit()
    return inst


def create_lab(
    session: Session,
    *,
    institution: Institution | None = None,
    code: str | None = None,
    name: str | None = None,
) -> Lab:
    n = next(_seq)
    institution = institution or create_institution(session)
    assert institution.id is not None
    lab = Lab(code=code or f"LAB{n}", name=name or f"Lab {n}", institution_id=institution.id)
    session.add(lab)
    session.commit()
    return lab


def get_or_create_category(
    session: Session, code: str = "ms-lc", *, group: str = "ms", name: str = "LC-MS"
) -> Category:
    existing = session.exec(select(Category).where(Category.code == code)).first()
    if existing:
        return existing
    parent = session.exec(select(Category).where(Category.code == group)).first()
    if parent is None:
        parent = Category(code=group, name=f"{group} group")
        session.add(parent)
        session.flush()
    category = Category(code=code, name=name, parent_id=parent.id)
    session.add(category)
    session.commit()
    return category


def create_instrument(
    session: Session,
    *,
    lab: Lab | None = None,
    category: Category | None = None,
    code: str | None = None,
    name: str | None = None,
    open_all_week: bool = True,
    **fields: object,
) -> Instrument:
    """An instrument, by default open 00:00-23:59 every day so tests can book any time."""
    n = next(_seq)
    lab = lab or create_lab(session)
    category = category or get_or_create_category(session)
    instrument = Instrument(
        code=code or f"INS{n}",
        name=name or f"Instrument {n}",
        lab_id=lab.id,
        category_id=category.id,
        **fields,
    )
    session.add(instrument)
    session.flush()
    if open_all_week:
        session.add_all(
            OpeningHours(
                instrument_id=instrument.id, weekday=d, opens=time(0, 0), closes=time(23, 59, 59)
            )
            for d in range(7)
        )
    session.add(
        Rate(
            instrument_id=instrument.id,
            payer_class=PayerClass.academic,
            amount=30000,
            currency="cny",
        )
    )
    session.commit()
    return instrument


def create_user(
    session: Session,
    *,
    role: Role = Role.researcher,
    email: str | None = None,
    lab: Lab | None = None,
    institution: Institution | None = None,
) -> User:
    n = next(_seq)
    user = user_create(
        session,
        email=email or f"user{n}@example.org",
        password=PASSWORD,
        role=role,
        lab_id=lab.id if lab else None,
        institution_id=(institution.id if institution else lab.institution_id if lab else None),
    )
    session.commit()
    return user


def auth(user: User) -> dict[str, str]:
    """Authorization headers for `user`: a sign-in session of theirs, opened for the test."""
    from core.auth import session_open
    from core.db import get_engine

    assert user.id is not None
    with Session(get_engine()) as s:
        token = session_open(s, user_id=user.id)
        s.commit()
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def create_badge(session: Session, user: User, code: str, *, lab: Lab | None = None) -> None:
    """Register `code` as `user`'s badge (network-wide unless a lab is given)."""
    from telemetry.models import Badge

    assert user.id is not None
    session.add(Badge(code=code, user_id=user.id, lab_id=lab.id if lab else None))
    session.commit()


def issue_voucher(session: Session, *, programme_id: int, institution: Institution, amount: int):
    """An approved innovation voucher of the programme for the company, as the bureau's
    review leaves it (billing.voucher_applications), dated from the programme's start."""
    from billing.models import Voucher, VoucherProgramme
    from billing.voucher_applications import application_approve

    programme = session.get(VoucherProgramme, programme_id)
    assert programme is not None and institution.id is not None
    admin = create_user(session, role=Role.network_admin)
    voucher = Voucher(
        programme_id=programme_id,
        institution_id=institution.id,
        applicant_id=admin.id or 0,
        year=programme.starts_on.year,
        requested=amount,
        needs="tests",
    )
    session.add(voucher)
    session.flush()
    application_approve(session, actor=admin, voucher_id=voucher.id or 0, today=programme.starts_on)
    session.commit()
    return voucher
