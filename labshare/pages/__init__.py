"""Server-rendered pages for people: the routers of every domain's pages, and their guards."""

from __future__ import annotations

import importlib
import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import AppError, invalid_input
from core.limits import json_refusal
from core.routing import UnitOfWorkRoute
from core.security import read_access_token
from labshare.pages.web import (
    CSRF_HEADER,
    SESSION_COOKIE,
    SignInRequired,
    csrf_valid,
    error_page,
    is_htmx,
    page_address,
    render,
    sign_in_redirect,
)

log = logging.getLogger(__name__)

# Page modules, each a router.
MODULES = (
    "account",
    "catalog",
    "bookings",
    "lab",
    "lab_usage",
    "lab_instrument",
    "lab_rates",
    "lab_calendars",
    "live",
    "invoices",
    "vouchers",
    "notifications",
    "admin",
    "admin_policies",
    "kiosk",
    "training",
    "incidents",
    "webhooks",
    "assistance",
    "services",
    "accounts",
)

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
for _name in MODULES:
    router.include_router(importlib.import_module(f"labshare.pages.{_name}").router)


def _bearer_authenticates(request: Request) -> bool:
    """True when the request carries a well-signed, unexpired bearer token (then the cookie
    plays no part in who it is, so it cannot be forged across sites)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and read_access_token(token.strip()) is not None


class ApiCsrfMiddleware:
    """The JSON API signed in by the page cookie (not a bearer token) needs htmx's CSRF header.

    Bearer-token clients are not exposed to CSRF; browsers always send the cookie, so a
    state-changing API call that relies on it must prove it came from our pages. Only a
    bearer token that actually authenticates skips the check: any other Authorization
    header (`Basic x`, a stale token) leaves the cookie in charge, and so needs the token.
    """

    UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in self.UNSAFE
            and scope["path"].startswith("/api/")
        ):
            request = Request(scope)
            if (
                SESSION_COOKIE in request.cookies
                and not _bearer_authenticates(request)
                and not csrf_valid(request, request.headers.get(CSRF_HEADER))
            ):
                response = JSONResponse(
                    {"detail": "a cookie-authenticated request needs the X-CSRF-Token header"},
                    status_code=403,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def too_large(scope: Scope, limit: int) -> Response:
    """A body past its limit (core.limits): for a person's form, a page saying so in their
    language, with the way back to the form (the raw JSON was a dead end); for programs,
    the API's 413. Refused before anything is read, the person is not known here: the page
    says neither who is signed in nor "Sign in"."""
    path = scope.get("path", "")
    if path.startswith(("/api/", "/ical/")):
        return json_refusal(scope, limit)
    request = Request(scope)
    megabytes = max(1, round(limit / 2**20))
    message = f"what was sent is larger than {megabytes} MB; nothing was saved"
    back = page_address(request)
    name = "_error_fragment.html" if is_htmx(request) else "error.html"
    context = {"message": message, "extra": {}, "back": back if back != "/" else None,
               "session_unknown": True}  # fmt: skip
    response = render(request, name, context, status_code=413)
    response.headers["Connection"] = "close"  # the rest of the body is not read
    return response


def install(app: FastAPI) -> None:
    """Add the pages, the API's CSRF guard, and HTML error pages outside the JSON API."""
    json_handler = app.exception_handlers.get(AppError)

    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        path = request.url.path
        if json_handler is not None and (path.startswith("/api/") or path.startswith("/ical/")):
            return await json_handler(request, exc)  # type: ignore[no-any-return]
        return error_page(request, exc)

    async def sign_in_required(request: Request, _exc: Exception) -> Response:
        return sign_in_redirect(request)

    async def unchecked_input(request: Request, exc: Exception) -> Response:
        # A handler built a schema from what a form or query carried without catching its
        # refusal: still the person's input (a 422 with the field), not a server error.
        # Logged, so the handler gets its own answer.
        assert isinstance(exc, ValidationError)
        log.warning("%s %s: input refused by %s", request.method, request.url.path, exc.title)
        return await app_error(request, invalid_input(exc))

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(ValidationError, unchecked_input)
    app.add_middleware(ApiCsrfMiddleware)
    app.include_router(router)
