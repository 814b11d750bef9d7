"""Answers kept a while per process: small lists that change rarely and that every page of
a kind reads, such as the catalog's category and institution pickers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from core.db import database_key

log = logging.getLogger(__name__)
_lock = threading.Lock()
# (database, name) -> (monotonic expiry, value)
_kept: dict[tuple[str, str], tuple[float, Any]] = {}


def kept(session: Session, name: str, seconds: float, compute: Callable[[], Any]) -> Any:
    """`compute()`, or its value from the last `seconds` for this database. With 0 seconds,
    always computed. Two requests that miss at once both compute: the value is cheap, and
    no one waits on another's query."""
    if seconds <= 0:
        return compute()
    key = (database_key(session), name)
    now = time.monotonic()
    with _lock:
        found = _kept.get(key)
    if found is not None and found[0] > now:
        return found[1]
    value = compute()
    with _lock:
        _kept[key] = (now + seconds, value)
    return value


def forget() -> None:
    """Drop everything kept (tests, and after bulk changes in this process)."""
    with _lock:
        _kept.clear()


def warm_in_background(name: str, what: str, work: Callable[[], object]) -> threading.Thread:
    """Start-up work that fills a per-process cache, in a daemon thread `name`, so the first
    requests find it warm. A cold cache is slower, never wrong: a failure is logged and the
    server goes on. `what` names the work in the log."""

    def run() -> None:
        started = time.monotonic()
        try:
            work()
        except Exception:
            log.exception("warming %s failed", what)
            return
        log.info("%s warm in %.2f s", what, time.monotonic() - started)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
