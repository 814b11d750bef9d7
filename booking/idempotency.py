"""Safe retries: the first successful answer to a create is kept under (user, Idempotency-Key).

Only successes are kept: a refused request leaves nothing behind (its transaction rolls
back), so a retry after the time frees up may succeed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from booking.errors import IdempotencyMismatch
from booking.models import IdempotencyKey
from core.db import is_postgres
from core.errors import Conflict, Invalid

Answer = tuple[int, dict[str, Any]]
MAX_KEY = 200


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored(session: Session, user_id: int, key: str) -> IdempotencyKey | None:
    return session.exec(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    ).first()


def _replay(row: IdempotencyKey, digest: str) -> Answer:
    if row.request_hash != digest:
        raise IdempotencyMismatch()
    return row.status_code, row.response


def run_once(
    session: Session,
    *,
    user_id: int,
    key: str | None,
    payload: Callable[[], dict[str, Any]],
    action: Callable[[], Answer],
) -> tuple[int, dict[str, Any], bool]:
    """Run `action` unless this user already ran it with this key; returns the status, the
    body and whether it is a replay. `payload` gives the request to compare a retry with
    (only asked for when there is a key)."""
    if key is None:
        return (*action(), False)
    if not 1 <= len(key) <= MAX_KEY or not key.isprintable():
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY} printable characters")
    digest = request_hash(payload())
    found = _stored(session, user_id, key)
    if found is not None:
        return (*_replay(found, digest), True)
    # Claim the key first: a concurrent twin waits on the unique index until we commit,
    # then finds our answer (PostgreSQL); on SQLite the write lock already serialises us.
    row = IdempotencyKey(user_id=user_id, key=key, request_hash=digest, status_code=0, response={})
    try:
        if is_postgres(session):
            with session.begin_nested():
                session.add(row)
                session.flush()
        else:
            session.add(row)
            session.flush()
    except IntegrityError:
        found = _stored(session, user_id, key)
        if found is None or found.status_code == 0:
            raise Conflict("a request with this Idempotency-Key is in progress; retry")
        return (*_replay(found, digest), True)
    status, body = action()
    row.status_code, row.response = status, body
    session.add(row)
    session.flush()
    return status, body, False
