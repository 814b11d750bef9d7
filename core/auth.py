"""Signing in and out: sessions that can be revoked, a throttle on guessing, a password policy.

Sign-in runs in three steps so that the slow part (argon2, on purpose about 50 ms) never
holds a write transaction: read the account and check the throttle; verify the password
outside any transaction; then record the outcome (a failure, or a new session) in a short
write. The throttle's counts live in the database, so every server process sees them.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, update
from sqlmodel import Session, col, select

from core.errors import Invalid, TooManyRequests, Unauthorized
from core.models import AuthSession, SignInFailure, User
from core.security import create_access_token, hash_password, token_ttl, verify_password
from core.settings import get_settings
from core.timeutil import utcnow

MIN_PASSWORD = 10
# The passwords people reach for first (and the ones this network's own staff would).
COMMON_PASSWORDS = frozenset(
    [
        "password",
        "password1",
        "password12",
        "password123",
        "password1234",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "123456",
        "1234567",
        "12345678",
        "123456789",
        "1234567890",
        "0123456789",
        "987654321",
        "111111",
        "000000",
        "qwerty",
        "qwertyuiop",
        "qwerty123",
        "qwerty1234",
        "1q2w3e4r",
        "1q2w3e4r5t",
        "1qaz2wsx",
        "1qaz2wsx3edc",
        "zaq12wsx",
        "asdfghjkl",
        "asdfgh",
        "abc123",
        "abcd1234",
        "abcdefgh",
        "abcdefghij",
        "a1b2c3d4",
        "iloveyou",
        "letmein",
        "letmein123",
        "welcome",
        "welcome1",
        "welcome123",
        "admin",
        "admin123",
        "administrator",
        "root",
        "changeme",
        "changeme123",
        "secret",
        "secret123",
        "default",
        "guest",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "sunshine",
        "princess",
        "master",
        "shadow",
        "superman",
        "batman",
        "trustno1",
        "whatever",
        "freedom",
        "starwars",
        "labshare",
        "labshare1",
        "labshare123",
        "laboratory",
        "instrument",
        "instruments",
        "research",
        "researcher",
        "woaini",
        "woaini1314",
        "wo123456",
        "5201314",
        "1314520",
        "qq123456",
        "aa123456",
        "a123456",
        "a12345678",
        "88888888",
        "66666666",
        "11111111",
        "00000000",
        "12341234",
        "11223344",
        "147258369",
        "159357",
        "123123123",
    ]
)


@dataclass(frozen=True)
class SignInCandidate:
    """What step one found: the account (or none) and its password hash."""

    user_id: int | None
    password_hash: str | None
    is_active: bool


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why `password` is too weak, in words, or None."""
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    if not password.strip() or len(set(password)) < 4:
        return "the password needs more than a few different characters"
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or lowered.rstrip("0123456789!.") in COMMON_PASSWORDS:
        return "that password is one of the most common ones; choose another"
    local = email.split("@", 1)[0].lower()
    if email and (lowered == email.lower() or (len(local) >= 4 and local in lowered)):
        return "the password must not contain your email address"
    return None


def require_good_password(password: str, *, email: str = "") -> None:
    """422 with the reason when the password is too weak."""
    problem = password_problem(password, email=email)
    if problem:
        raise Invalid(problem)


def _window() -> timedelta:
    return timedelta(minutes=get_settings().sign_in_window_minutes)


def _throttled(session: Session, *, email: str, address: str, now: datetime) -> int:
    """Seconds until this account and this address may try again (0: now)."""
    settings = get_settings()
    since = now - _window()
    worst = 0
    limits = (
        (SignInFailure.email, email, settings.sign_in_max_failures),
        (SignInFailure.address, address, settings.sign_in_max_failures_per_address),
    )
    for column, value, limit in limits:
        if not value:
            continue
        count, oldest = session.exec(
            select(func.count(), func.min(SignInFailure.at)).where(
                col(column) == value, col(SignInFailure.at) > since
            )
        ).one()
        if count >= limit and oldest is not None:
            if oldest.tzinfo is None:  # SQLite aggregates lose the column's type
                from datetime import UTC

                oldest = oldest.replace(tzinfo=UTC)
            worst = max(worst, math.ceil((oldest + _window() - now).total_seconds()))
    return worst


def sign_in_begin(
    session: Session, *, email: str, address: str, now: datetime | None = None
) -> SignInCandidate:
    """Step one (read-only): refuse a throttled account or address (429), find the account."""
    now = now or utcnow()
    email = email.strip().lower()
    wait = _throttled(session, email=email, address=address, now=now)
    if wait > 0:
        raise TooManyRequests(
            f"too many failed sign-ins; try again in {max(wait // 60, 1)} minute(s)",
            retry_after=wait,
        )
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        return SignInCandidate(None, None, False)
    return SignInCandidate(user.id, user.password_hash, user.is_active)


# A real hash to compare against when the email is unknown, so both paths take as long.
_DUMMY_HASH = hash_password("labshare-timing-equaliser")


def password_matches(candidate: SignInCandidate, password: str) -> bool:
    """Step two (no database): argon2, the slow part."""
    ok = verify_password(candidate.password_hash or _DUMMY_HASH, password)
    return ok and candidate.user_id is not None and candidate.is_active


def session_open(
    session: Session, *, user_id: int, address: str = "", now: datetime | None = None
) -> str:
    """A new sign-in session for the user; returns its access token."""
    now = now or utcnow()
    row = AuthSession(
        id=secrets.token_urlsafe(24),
        user_id=user_id,
        created_at=now,
        expires_at=now + token_ttl(),
        address=address[:64],
    )
    session.add(row)
    session.flush()
    return create_access_token(user_id, row.id, expires_at=row.expires_at)


def sign_in_finish(
    session: Session,
    *,
    email: str,
    address: str,
    candidate: SignInCandidate,
    ok: bool,
    now: datetime | None = None,
) -> str | None:
    """Step three (a short write): a token for a right password, else the failure counted."""
    now = now or utcnow()
    if ok and candidate.user_id is not None:
        return session_open(session, user_id=candidate.user_id, address=address, now=now)
    session.add(SignInFailure(email=email.strip().lower()[:254], address=address[:64], at=now))
    # Keep the table to what the throttle reads.
    session.exec(delete(SignInFailure).where(col(SignInFailure.at) < now - 2 * _window()))  # type: ignore[call-overload]
    session.flush()
    return None


def sign_in(session: Session, *, email: str, password: str, address: str = "") -> str:
    """All three steps in one transaction, for the command line and tests; 401 or 429."""
    candidate = sign_in_begin(session, email=email, address=address)
    ok = password_matches(candidate, password)
    token = sign_in_finish(session, email=email, address=address, candidate=candidate, ok=ok)
    if token is None:
        raise Unauthorized("wrong email or password")
    return token


def session_revoke(session: Session, *, session_id: str, now: datetime | None = None) -> None:
    """End one sign-in session (sign-out): its token stops working at once."""
    session.exec(  # type: ignore[call-overload]
        update(AuthSession)
        .where(col(AuthSession.id) == session_id, col(AuthSession.revoked_at).is_(None))
        .values(revoked_at=now or utcnow())
    )


def sessions_revoke_all(
    session: Session, *, user_id: int, keep: str | None = None, now: datetime | None = None
) -> None:
    """End every sign-in session of a user (but `keep`): a password change, a deactivation."""
    query = update(AuthSession).where(
        col(AuthSession.user_id) == user_id, col(AuthSession.revoked_at).is_(None)
    )
    if keep is not None:
        query = query.where(col(AuthSession.id) != keep)
    session.exec(query.values(revoked_at=now or utcnow()))  # type: ignore[call-overload]
    # Sessions long over are of no use to anyone.
    session.exec(  # type: ignore[call-overload]
        delete(AuthSession).where(
            col(AuthSession.user_id) == user_id,
            or_(
                col(AuthSession.expires_at) < (now or utcnow()) - timedelta(days=1),
                col(AuthSession.revoked_at) < (now or utcnow()) - timedelta(days=1),
            ),
        )
    )


def password_change(
    session: Session, *, user: User, current: str, new: str, session_id: str
) -> str:
    """Change one's own password: every other session ends, and this one is replaced by a
    new one whose token is returned."""
    if not verify_password(user.password_hash, current):
        raise Unauthorized("the current password is wrong")
    require_good_password(new, email=user.email)
    if verify_password(user.password_hash, new):
        raise Invalid("the new password is the current one")
    user.password_hash = hash_password(new)
    session.add(user)
    assert user.id is not None
    sessions_revoke_all(session, user_id=user.id)
    return session_open(session, user_id=user.id)
