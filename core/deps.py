"""Typed FastAPI dependencies: the session per request, the current user, role guards.

None of them touches the database on the event loop: the session connects on first use,
and the signed-in user is a `Deferred` value that the unit of work (core.routing) loads
in the request's own thread and transaction, just before the endpoint runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from core.errors import Forbidden, Unauthorized
from core.models import Role, User
from core.routing import Deferred, request_session
from core.security import read_access_token

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
SESSION_COOKIE = "labshare_session"  # the pages' cookie holds the same token the API uses


async def get_session(request: Request) -> Session:
    """The request's session; the unit of work commits it before the answer is sent."""
    return request_session(request)


SessionDep = Annotated[Session, Depends(get_session)]


def _not_signed_in() -> Exception:
    return Unauthorized("not signed in, or the token is invalid or expired")


@dataclass(frozen=True)
class WantedUser(Deferred):
    """The person a token names, to be loaded inside the unit of work: inactive or gone
    means not signed in; `roles`, when given, must include theirs."""

    user_id: int | None
    required: bool = True
    roles: tuple[Role, ...] | None = None
    missing: Callable[[], Exception] = _not_signed_in
    wrong_role: Callable[[], Exception] | None = None

    def resolve(self, session: Session) -> User | None:
        user = session.get(User, self.user_id) if self.user_id is not None else None
        if user is None or not user.is_active:
            if self.required:
                raise self.missing()
            return None
        if self.roles is not None and user.role not in self.roles:
            if self.wrong_role is not None:
                raise self.wrong_role()
            wanted = " or ".join(r.value for r in self.roles)
            raise Forbidden(f"this needs the role {wanted}")
        return user

    def load(self, session: Session) -> User:
        """The user, for code outside a route's dependencies (always `required`)."""
        user = WantedUser(self.user_id, True, self.roles, self.missing, self.wrong_role).resolve(
            session
        )
        assert user is not None
        return user


def token_user_id(request: Request, token: str | None) -> int | None:
    """The user id a valid bearer token (or, for pages, the session cookie) names."""
    token = token or request.cookies.get(SESSION_COOKIE)
    return read_access_token(token) if token else None


# The checks below are async and pure (a signature check), so they run on the event loop.
async def get_optional_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User | None:
    return WantedUser(token_user_id(request, token), required=False)  # type: ignore[return-value]


async def get_current_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    user_id = token_user_id(request, token)
    if user_id is None:
        raise _not_signed_in()
    return WantedUser(user_id)  # type: ignore[return-value]


OptionalUser = Annotated[User | None, Depends(get_optional_user)]
CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role) -> Callable[..., object]:
    """A dependency that admits only users holding one of `roles`."""
    wanted = tuple(roles)

    async def guard(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
        user_id = token_user_id(request, token)
        if user_id is None:
            raise _not_signed_in()
        return WantedUser(user_id, roles=wanted)  # type: ignore[return-value]

    return guard


LabManager = Annotated[User, Depends(require_roles(Role.lab_manager, Role.network_admin))]
NetworkAdmin = Annotated[User, Depends(require_roles(Role.network_admin))]
Admin = Annotated[User, Depends(require_roles(Role.institution_admin, Role.network_admin))]
