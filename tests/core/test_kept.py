"""core.kept: a value is computed once per period per database, and not at all kept at 0 s."""

from __future__ import annotations

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
