"""Errors that carry their HTTP status; one handler renders them."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError


class AppError(Exception):
    """A domain error with an HTTP status and optional extra response fields."""

    status_code = 400
    headers: dict[str, str] | None = None
    # The unit of work commits what it wrote before answering with this error (a refusal
    # that is itself recorded, such as a wrong PIN counted); by default it rolls back.
    commit_first = False

    def __init__(self, message: str, status_code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra


class NotFound(AppError):
    status_code = 404


class Forbidden(AppError):
    status_code = 403


class Unauthorized(AppError):
    status_code = 401


class Conflict(AppError):
    status_code = 409


class Invalid(AppError):
    """Well-formed request that the domain cannot accept."""

    status_code = 422


class PreconditionFailed(AppError):
    status_code = 412


class ServiceBusy(AppError):
    """Contention, not a fault: the database could not take the work in time. Retry."""

    status_code = 503

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class TooManyRequests(AppError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = {"Retry-After": str(max(1, retry_after))}


class NotSaved(AppError):
    """The database refused to commit: nothing the request asked for was stored."""

    status_code = 500


def _finite(value: Any) -> Any:
    """`value` with every float JSON cannot hold (infinity, NaN) as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def invalid_input(exc: ValidationError) -> Invalid:
    """A schema built from what a form or a query carried refused it: which field, and why."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "invalid input")).removeprefix("Value error, ")
    return Invalid(f"{where}: {message}" if where else message)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422, whose errors echo the input: a number past what JSON holds
        # (1e400 reads as infinity) could not be echoed and the answer was a 500.
        return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (a NUL byte in text, a number
        # out of range): the client's input, so a 422 with the database's reason, not a 500.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid value"
        return JSONResponse({"detail": f"a value in the request is not acceptable: {reason}"}, 422)

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.message, **exc.extra},
            status_code=exc.status_code,
            headers=error_headers(exc),
        )


def error_headers(exc: AppError) -> dict[str, str] | None:
    """The headers an error's answer carries: its own (Retry-After), and the challenge."""
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return headers or None
