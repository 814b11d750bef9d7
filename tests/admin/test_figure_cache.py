"""The dashboard's figures are kept a while, said to be, and computed once at a time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from admin import figure_cache
from admin.kpis import network_kpis
from core.periods import Period
from core.settings import get_settings


@pytest.fixture(autouse=True)
def kept_for_a_while(session: Session, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    # After `session`, which turns the cache off for every other test.
    monkeypatch.setenv("LABSHARE_KPI_CACHE_SECONDS", "300")
    monkeypatch.setenv("LABSHARE_KPI_CACHE_PAST_SECONDS", "3600")
    get_settings.cache_clear()
    figure_cache.forget()
    yield
    figure_cache.forget()
    get_settings.cache_clear()


def test_figures_are_kept_and_say_when_they_were_computed(session: Session) -> None:
    calls: list[int] = []
    month = Period.parse("2026-10")

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    first, at = figure_cache.kept(session, "test", month, compute)
    again, at_again = figure_cache.kept(session, "test", month, compute)
    assert first == again == {"n": 1} and at == at_again and len(calls) == 1
    figure_cache.forget()
    assert figure_cache.kept(session, "test", month, compute)[0] == {"n": 2}


def test_viewers_at_once_compute_a_month_once(session: Session) -> None:
    month = Period.parse("2026-10")
    calls: list[int] = []
    entered = threading.Event()

    def slow() -> int:
        calls.append(1)
        entered.set()
        threading.Event().wait(0.2)
        return 42

    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(figure_cache.kept(session, "slow", month, slow)[0])
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [42] * 4 and len(calls) == 1


def test_the_kpis_answer_carries_computed_at(session: Session) -> None:
    last = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m")
    kpis = network_kpis(session, period=last)
    assert isinstance(kpis["computed_at"], datetime)
    assert network_kpis(session, period=last)["computed_at"] == kpis["computed_at"]
