"""Plain in-process events, so a left domain can tell a right one something happened.

A subscriber runs inside the publisher's transaction (it gets the same Session).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

Handler = Callable[..., None]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(name: str, handler: Handler) -> None:
    if handler not in _handlers[name]:
        _handlers[name].append(handler)


def publish(name: str, session: Session, **payload: Any) -> None:
    for handler in list(_handlers[name]):
        handler(session, **payload)
