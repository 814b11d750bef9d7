"""What every command shares: a one-line reason and a non-zero exit on bad input."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.errors import AppError

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def reasons(func: F) -> F:
    """Turn domain errors and unreachable databases into a one-line reason and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AppError as exc:
            raise fail(exc.message)
        except (OperationalError, ProgrammingError) as exc:
            reason = str(exc.orig).strip().splitlines()[0]
            if "no such table" in reason or "does not exist" in reason:
                reason += " (run `labshare db upgrade` first?)"
            raise fail(f"database: {reason}")

    return wrapper  # type: ignore[return-value]
