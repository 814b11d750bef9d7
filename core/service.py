"""Accounts: create users and check passwords."""

from __future__ import annotations

import re

from sqlmodel import Session, select

from core.errors import Conflict, Invalid, Unauthorized
from core.models import Role, User
from core.security import hash_password, verify_password

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A real hash to compare against when the email is unknown, so both paths take as long.
_DUMMY_HASH = hash_password("labshare-timing-equaliser")


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
    """Create an account; the email must be new and the password at least 8 characters."""
    email = email.strip().lower()
    if not EMAIL.match(email):
        raise Invalid(f"{email!r} is not an email address")
    if len(password) < 8:
        raise Invalid("the password must have at least 8 characters")
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


def user_authenticate(session: Session, *, email: str, password: str) -> User:
    """The active user with this email and password; Unauthorized otherwise."""
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise Unauthorized("wrong email or password")
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthorized("wrong email or password")
    return user
