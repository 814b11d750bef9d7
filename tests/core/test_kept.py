"""core.kept: a value is computed once per period per database, and not at all kept at 0 s."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from core import kept as k


def test_a_value_is_kept_for_its_seconds_and_then_computed_again(
    session: Session, monkeypatch
) -> None:
    k.forget()
    clock = [100.0]
    monkeypatch.setattr(k.time, "monotonic", lambda: clock[0])
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert k.kept(session, "x", 60, compute) == 1
    clock[0] += 59
    assert k.kept(session, "x", 60, compute) == 1
    assert k.kept(session, "y", 60, compute) == 2  # another name, its own value
    clock[0] += 2
    assert k.kept(session, "x", 60, compute) == 3
    k.forget()
    assert k.kept(session, "x", 60, compute) == 4


def test_zero_seconds_keeps_nothing(session: Session) -> None:
    calls: list[int] = []
    for _ in range(3):
        k.kept(session, "z", 0, lambda: calls.append(1))
    assert len(calls) == 3


def test_start_up_warming_logs_a_failure_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A cache warmed at start-up is slower cold, never wrong: its thread logs a failure and
    the server goes on; work that succeeds is logged with its time."""
    import logging

    from core.kept import warm_in_background

    done: list[str] = []
    with caplog.at_level(logging.INFO, logger="core.kept"):
        warm_in_background("test-warm-ok", "a thing", lambda: done.append("ok")).join(5)
        warm_in_background("test-warm-bad", "another thing", lambda: 1 / 0).join(5)
    assert done == ["ok"]
    assert "a thing warm in" in caplog.text
    assert "warming another thing failed" in caplog.text and "ZeroDivisionError" in caplog.text
