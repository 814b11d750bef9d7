"""What every command shares: a one-line reason and a non-zero exit on bad input."""

from __future__ import annotations

import functools
import signal
import threading
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


def run_passes(one_pass: Callable[[], None], *, loop: bool, interval: float, name: str) -> None:
    """Run `one_pass` once or, with `loop`, every `interval` seconds until SIGTERM or Ctrl-C
    (the demo stops its workers with SIGINT). Under `loop` a failed pass is reported and
    tried again at the next one: the database, or a mail or web server, may be away for a
    moment. Once, a failure is the command's."""
    stop = threading.Event()
    if loop:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while True:
            try:
                one_pass()
            except Exception as exc:
                if not loop:
                    raise
                typer.echo(f"{name} pass failed: {exc}", err=True)
            if not loop or stop.wait(interval):
                return
    except KeyboardInterrupt:
        typer.echo(f"{name} stopped")
