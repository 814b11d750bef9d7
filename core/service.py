"""Accounts: create users and check passwords."""

from __future__ import annotations

import re

from sqlmodel import Session, select

from core.auth import require_good_password
from core.errors import Conflict, Invalid
from core.models import Role, User
from core.security import hash_password

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def user_create(
    session: Session,
    *,
    email: str,
    password: str,
    role: Role = Role.researcher,
    name: str = "",
    institution_id: int | None = None,
    lab_id: int | None = None,
) -> User:
    """Create an account; the email must be new and the password pass the policy (core.auth)."""
    email = email.strip().lower()
    if not EMAIL.match(email):
        raise Invalid(f"{email!r} is not an email address")
    require_good_password(password, email=email)
    if session.exec(select(User.id).where(User.email == email)).first() is not None:
        raise Conflict(f"a user with the email {email} exists")
    user = User(
        email=email,
        name=name,
        password_hash=hash_password(password),
        role=role,
        institution_id=institution_id,
        lab_id=lab_id,
    )
    session.add(user)
    session.flush()
    return user
