"""Typed FastAPI dependencies: the session per request, the current user, role guards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from core.db import get_engine, writer
from core.errors import Forbidden, Unauthorized
from core.models import Role, User
from core.security import read_access_token

_READ_METHODS = {"GET", "HEAD", "OPTIONS"}
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: commit on success, roll back on error.

    Writes take SQLite's write lock when the transaction begins (see core.db).
    """
    engine = get_engine()
    if request.method not in _READ_METHODS:
        engine = writer(engine)
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session)]


def _user_from_request(request: Request, session: Session, token: str | None) -> User | None:
    # Pages sign in with a cookie holding the same token the API uses.
    token = token or request.cookies.get("labshare_session")
    if not token:
        return None
    user_id = read_access_token(token)
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    return user


def get_optional_user(
    request: Request, session: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User | None:
    return _user_from_request(request, session, token)


# The pure checks below are async so they run on the event loop, not in a threadpool hop.
async def get_current_user(user: Annotated[User | None, Depends(get_optional_user)]) -> User:
    if user is None:
        raise Unauthorized("not signed in, or the token is invalid or expired")
    return user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]
CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role):  # type: ignore[no-untyped-def]
    """A dependency that admits only users holding one of `roles`."""

    async def guard(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(r.value for r in roles)}")
        return user

    return guard


LabManager = Annotated[User, Depends(require_roles(Role.lab_manager, Role.network_admin))]
NetworkAdmin = Annotated[User, Depends(require_roles(Role.network_admin))]
Admin = Annotated[User, Depends(require_roles(Role.institution_admin, Role.network_admin))]
