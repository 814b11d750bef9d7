"""Password hashing (argon2) and signed access tokens (JWT, HS256)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.settings import get_settings

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_access_token(user_id: int, *, ttl: timedelta | None = None) -> str:
    settings = get_settings()
    now = datetime.now(UTC)
    expires = now + (ttl or timedelta(minutes=settings.token_ttl_minutes))
    claims = {"sub": str(user_id), "iat": now, "exp": expires, "typ": "access"}
    return jwt.encode(claims, settings.signing_key(), algorithm="HS256")


def read_access_token(token: str) -> int | None:
    """The user id in a valid, unexpired token, or None."""
    try:
        claims = jwt.decode(token, get_settings().signing_key(), algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != "access":
        return None
    try:
        return int(claims["sub"])
    except (KeyError, ValueError):
        return None
