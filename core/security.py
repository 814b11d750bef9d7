"""Password hashing (argon2) and signed access tokens (JWT, HS256).

A token names a user and one of their sign-in sessions (core.auth); it is valid only
while that session is neither expired nor revoked, so signing out or changing the
password ends it at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.settings import get_settings

_hasher = PasswordHasher()
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid", "typ"]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    session_id: str
    expires_at: datetime


def create_access_token(user_id: int, session_id: str, *, expires_at: datetime) -> str:
    """A signed token for one sign-in session (see core.auth.session_open)."""
    claims = {
        "sub": str(user_id),
        "sid": session_id,
        "iat": datetime.now(UTC),
        "exp": expires_at,
        "typ": "access",
    }
    return jwt.encode(claims, get_settings().signing_key(), algorithm="HS256")


def token_ttl() -> timedelta:
    return timedelta(minutes=get_settings().token_ttl_minutes)


# Verified claims by token: a client sends the same token with every request, and checking
# its signature costs more than the rest of a small request's Python. Only what verified is
# kept, and expiry is checked on every use; revocation is the database's (core.auth).
_VERIFIED: OrderedDict[tuple[str, str], TokenClaims] = OrderedDict()
_VERIFIED_MAX = 20_000
_verified_lock = threading.Lock()


def read_access_token(token: str) -> TokenClaims | None:
    """The claims of a well-signed, unexpired token that carries all of them, or None."""
    key = (get_settings().signing_key(), token)  # a new secret key verifies afresh
    found = _VERIFIED.get(key)
    if found is not None:
        return found if found.expires_at > datetime.now(UTC) else None
    claims = _decode(token)
    if claims is not None:
        with _verified_lock:
            _VERIFIED[key] = claims
            if len(_VERIFIED) > _VERIFIED_MAX:
                _VERIFIED.popitem(last=False)
    return claims


def _decode(token: str) -> TokenClaims | None:
    try:
        claims = jwt.decode(
            token,
            get_settings().signing_key(),
            algorithms=["HS256"],
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != "access" or not isinstance(claims.get("sid"), str):
        return None
    try:
        return TokenClaims(
            int(claims["sub"]), claims["sid"], datetime.fromtimestamp(claims["exp"], UTC)
        )
    except (KeyError, ValueError, TypeError, OverflowError):
        return None
