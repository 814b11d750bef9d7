"""Errors that carry their HTTP status; one handler renders them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError


class AppError(Exception):
    """A domain error with an HTTP status and optional extra response fields."""

    status_code = 400

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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (a NUL byte in text, a number
        # out of range): the client's input, so a 422 with the database's reason, not a 500.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid value"
        return JSONResponse({"detail": f"a value in the request is not acceptable: {reason}"}, 422)

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(
            {"detail": exc.message, **exc.extra}, status_code=exc.status_code, headers=headers
        )
