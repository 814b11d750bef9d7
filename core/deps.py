"""Typed FastAPI dependencies: the session per request, the current user, role guards.

None of them touches the database on the event loop: the session connects on first use,
and the signed-in user is a `Deferred` value that the unit of work (core.routing) loads
in the request's own thread and transaction, just before the endpoint runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from core.db import UTCDateTime
from core.errors import Forbidden, Unauthorized
from core.models import AuthSession, Role, User
from core.routing import Deferred, get_session
from core.security import TokenClaims, read_access_token
from core.timeutil import utcnow

TOKEN_URL = "/api/v1/auth/token"
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
SESSION_COOKIE = "labshare_session"  # the pages' cookie holds the same token the API uses


SessionDep = Annotated[Session, Depends(get_session)]


def _not_signed_in() -> Exception:
    return Unauthorized("not signed in, or the token is invalid or expired")


def signed_in_select(*entities: Any) -> Any:
    """`select(*entities)` (User among them) joined to the token's sign-in session, with
    the conditions under which it still holds: parameters `sid`, `uid` and `now`
    (WantedUser.params). An endpoint may add what it reads first, so the person is checked
    in the same statement (booking.service.signed_in_at_instrument)."""
    return (
        select(*entities)
        .join(AuthSession, col(AuthSession.user_id) == User.id)
        .where(
            col(AuthSession.id) == bindparam("sid"),
            col(User.id) == bindparam("uid"),
            col(AuthSession.revoked_at).is_(None),
            col(AuthSession.expires_at) > bindparam("now", type_=UTCDateTime()),
        )
    )


# Built once: every request runs it.
_SIGNED_IN = signed_in_select(User)


@dataclass(frozen=True)
class WantedUser(Deferred):
    """The person a token names, to be loaded inside the unit of work: inactive or gone
    means not signed in; `roles`, when given, must include theirs."""

    user_id: int | None
    session_id: str | None = None
    required: bool = True
    roles: tuple[Role, ...] | None = None
    missing: Callable[[], Exception] = _not_signed_in
    wrong_role: Callable[[], Exception] | None = None

    def params(self) -> dict[str, Any]:
        """The parameters of a signed_in_select statement."""
        return {"sid": self.session_id, "uid": self.user_id, "now": utcnow()}

    def resolve(self, session: Session) -> User | None:
        user: User | None = None
        if self.user_id is not None and self.session_id is not None:
            # One query: the person, and whether the token's sign-in session still holds.
            user = session.exec(_SIGNED_IN, params=self.params()).first()  # type: ignore[call-overload]
        return self.check(user)

    def check(self, user: User | None) -> User | None:
        """`user` as found by a signed_in_select statement (None: not found), or the
        refusal: not signed in, or not in one of the roles."""
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
        user = WantedUser(
            self.user_id, self.session_id, True, self.roles, self.missing, self.wrong_role
        ).resolve(session)
        assert user is not None
        return user


def token_claims(request: Request, token: str | None) -> TokenClaims | None:
    """What a valid bearer token (or, for pages, the session cookie) says. A bearer token
    that is not valid is the answer (401): it never falls back to the cookie."""
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
    claims = read_access_token(token) if token else None
    if claims is not None:
        request.state.auth_session_id = claims.session_id  # sign-out and password change
    return claims


def wanted_user(request: Request, token: str | None, **kwargs: object) -> WantedUser | None:
    """The person the request's token names, to be loaded in the unit of work; None
    without a valid token."""
    claims = token_claims(request, token)
    if claims is None:
        return None
    return WantedUser(claims.user_id, claims.session_id, **kwargs)  # type: ignore[arg-type]


class SignedIn(OAuth2PasswordBearer):
    """The bearer token, as the API docs show it (the same scheme as `oauth2_scheme`), and
    what a route wants of the person it names, in one dependency: `decide(request, token)`
    makes the route's value. FastAPI solved the scheme and a function taking its token as
    two dependencies, each with its own bookkeeping, on every request.

    The check is async and pure (a signature check), so it runs on the event loop; the
    person is loaded in the unit of work (WantedUser)."""

    def __init__(self, decide: Callable[[Request, str | None], object]) -> None:
        super().__init__(
            tokenUrl=TOKEN_URL, auto_error=False, scheme_name=oauth2_scheme.scheme_name
        )
        self.decide = decide

    async def __call__(self, request: Request) -> Any:  # type: ignore[override]
        return self.decide(request, await super().__call__(request))


def _required(request: Request, token: str | None) -> WantedUser:
    found = wanted_user(request, token)
    if found is None:
        raise _not_signed_in()
    return found


@dataclass(frozen=True)
class Unchecked:
    """A valid token's person, not yet checked against the database: for an endpoint whose
    first statement checks them together with what it reads anyway (a round trip less).
    The endpoint must check them before anything else (WantedUser.check)."""

    wanted: WantedUser


def _optional(request: Request, token: str | None) -> WantedUser | None:
    return wanted_user(request, token, required=False)


def _unchecked(request: Request, token: str | None) -> Unchecked:
    return Unchecked(_required(request, token))


OptionalUser = Annotated[User | None, Depends(SignedIn(_optional))]
CurrentUser = Annotated[User, Depends(SignedIn(_required))]
UncheckedUser = Annotated[Unchecked, Depends(SignedIn(_unchecked))]


def require_roles(*roles: Role) -> SignedIn:
    """A dependency that admits only users holding one of `roles`."""
    roles_wanted = tuple(roles)

    def guard(request: Request, token: str | None) -> WantedUser:
        found = wanted_user(request, token, roles=roles_wanted)
        if found is None:
            raise _not_signed_in()
        return found

    return SignedIn(guard)


LabManager = Annotated[User, Depends(require_roles(Role.lab_manager, Role.network_admin))]
NetworkAdmin = Annotated[User, Depends(require_roles(Role.network_admin))]
Admin = Annotated[User, Depends(require_roles(Role.institution_admin, Role.network_admin))]
