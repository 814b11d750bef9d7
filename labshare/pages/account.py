"""Signing in and out by cookie, and choosing the page language."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core import auth
from core.api import sign_in_flow
from core.deps import OptionalUser, SessionDep
from core.errors import AppError
from core.routing import UnitOfWorkRoute
from core.settings import get_settings
from labshare import i18n
from labshare.pages.web import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Csrf,
    back_to,
    cookie_secure,
    render,
    safe_path,
)

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(
    request: Request,
    user: OptionalUser,
    next: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """The sign-in form."""
    return render(request, "account/signin.html", {"next": safe_path(next)}, user=user)


@router.post("/signin", response_class=HTMLResponse, dependencies=[Csrf])
async def signin(
    request: Request,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=500)],
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    """Check the password and set the session cookie (HttpOnly, SameSite=Lax, Secure on HTTPS)."""
    try:
        token = await sign_in_flow(request, email=email, password=password)
    except AppError as exc:
        response = render(
            request,
            "account/signin.html",
            {"next": safe_path(next), "error": exc.message, "email": email},
            status_code=exc.status_code,
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    response = RedirectResponse(safe_path(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=get_settings().token_ttl_minutes * 60,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
        path="/",
    )
    return response


@router.post("/signout", dependencies=[Csrf])
def signout(request: Request, session: SessionDep, user: OptionalUser) -> Response:
    """End the sign-in session (its token stops working everywhere) and forget the cookies."""
    session_id = getattr(request.state, "auth_session_id", None)
    if user is not None and session_id:
        auth.session_revoke(session, session_id=session_id)
    response = back_to("/", "signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.post("/lang", dependencies=[Csrf])
def choose_language(
    request: Request,
    lang: Annotated[str, Form(max_length=8)],
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    """Remember the chosen page language in a cookie for a year."""
    response = RedirectResponse(safe_path(next), status_code=303)
    if lang in i18n.LANGUAGES:
        response.set_cookie(
            i18n.LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            samesite="lax",
            secure=cookie_secure(request),
            path="/",
        )
    return response
