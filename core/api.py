"""Sign-in, sign-out, password change and the current account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from core import auth
from core.deps import CurrentUser, SessionDep
from core.errors import Unauthorized
from core.models import User
from core.routing import (
    UnitOfWorkRoute,
    read_before_unit_of_work,
    request_session,
    run_unit_of_work,
)
from core.schemas import PasswordChange, Token, UserPublic

router = APIRouter(route_class=UnitOfWorkRoute, tags=["auth"])


def client_address(request: Request) -> str:
    """The caller's address (the proxy's, unless uvicorn runs with --proxy-headers)."""
    return request.client.host if request.client else ""


async def sign_in_flow(request: Request, *, email: str, password: str) -> str:
    """Sign in without holding a write transaction during argon2; 401 or 429 otherwise."""
    address = client_address(request)
    candidate = await read_before_unit_of_work(
        lambda session: auth.sign_in_begin(session, email=email, address=address)
    )
    ok = await run_in_threadpool(auth.password_matches, candidate, password)

    def finish(session: Session) -> str | None:
        return auth.sign_in_finish(
            session, email=email, address=address, candidate=candidate, ok=ok
        )

    token: str | None = await run_unit_of_work(
        request, finish, {"session": request_session(request)}
    )
    if token is None:  # the failure is counted (committed) before we say so
        raise Unauthorized("wrong email or password")
    return token


@router.post("/auth/token", response_model=Token)
async def sign_in(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    """Exchange an email (`username`) and password for a bearer token. After
    LABSHARE_SIGN_IN_MAX_FAILURES wrong tries for an account (10), or
    LABSHARE_SIGN_IN_MAX_FAILURES_PER_ADDRESS from an address (100), within
    LABSHARE_SIGN_IN_WINDOW_MINUTES, a 429 with Retry-After."""
    token = await sign_in_flow(request, email=form.username, password=form.password)
    return Token(access_token=token)


@router.post("/auth/signout", status_code=204)
def sign_out(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """End this token's sign-in session: the token stops working at once."""
    auth.session_revoke(session, session_id=request.state.auth_session_id)
    return Response(status_code=204)


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    """The signed-in account."""
    return UserPublic.model_validate(user, from_attributes=True)


@router.post("/me/password", response_model=Token)
def change_password(
    request: Request, session: SessionDep, user: CurrentUser, data: PasswordChange
) -> Token:
    """Change your password: every other sign-in ends, and this one gets a new token."""
    assert isinstance(user, User)
    token = auth.password_change(
        session,
        user=user,
        current=data.current_password,
        new=data.new_password,
        session_id=request.state.auth_session_id,
    )
    return Token(access_token=token)
