"""Sign-in and the current account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from core.deps import CurrentUser, SessionDep
from core.routing import UnitOfWorkRoute
from core.schemas import Token, UserPublic
from core.security import create_access_token
from core.service import user_authenticate

router = APIRouter(route_class=UnitOfWorkRoute, tags=["auth"])


@router.post("/auth/token", response_model=Token)
def sign_in(session: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    """Exchange an email (`username`) and password for a bearer token."""
    user = user_authenticate(session, email=form.username, password=form.password)
    assert user.id is not None
    return Token(access_token=create_access_token(user.id))


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    """The signed-in account."""
    return UserPublic.model_validate(user, from_attributes=True)
