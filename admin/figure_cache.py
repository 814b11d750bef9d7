"""The dashboard's figures, kept for a while instead of recomputed on every view.

A month of the city's network is about 100,000 bookings and as many usage sessions; its
KPIs take about 0.4 s to compute and a year's trend 5 s (bench/pages.py). They change
slowly: a month that has ended changes only by late telemetry or a correction, the month
in progress by the hour. So each month's figures are kept per process, an ended month for
LABSHARE_KPI_CACHE_PAST_SECONDS (an hour), the current one for
LABSHARE_KPI_CACHE_SECONDS (five minutes), and every answer says when it was computed.
admin.kpis.warm_dashboard computes what the dashboard opens with, at start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from admin import figures as fig
from core.db import database_key
from core.periods import Period
from core.settings import get_settings
from core.timeutil import utcnow

log = logging.getLogger(__name__)

_lock = threading.Lock()
# (database, kind, month label) -> (monotonic expiry, computed at, value)
_kept: dict[tuple[str, str, str], tuple[float, datetime, Any]] = {}
# One computation of a key at a time: a second viewer waits for the first's answer.
_computing: dict[tuple[str, str, str], threading.Lock] = {}


def _ttl(month: Period, now: datetime) -> float:
    settings = get_settings()
    ended = month.end <= now
    return float(settings.kpi_cache_past_seconds if ended else settings.kpi_cache_seconds)


def kept(
    session: Session, kind: str, month: Period, compute: Callable[[], Any]
) -> tuple[Any, datetime]:
    """`compute()` for this month, or what was computed for it recently; and when."""
    key = (database_key(session), kind, month.label)
    with _lock:
        found = _kept.get(key)
        if found is not None and found[0] > time.monotonic():
            return found[2], found[1]
        guard = _computing.setdefault(key, threading.Lock())
    with guard:
        with _lock:
            found = _kept.get(key)
            if found is not None and found[0] > time.monotonic():
                return found[2], found[1]
        at = utcnow()
        value = compute()
        ttl = _ttl(month, at)
        with _lock:
            if ttl > 0:
                _kept[key] = (time.monotonic() + ttl, at, value)
        return value, at


def months_kept(
    session: Session, months: list[Period]
) -> tuple[dict[str, fig.MonthFigures], datetime]:
    """The network's monthly totals over a range: kept months as they are, the others in
    one pass (figures.by_month); and when the oldest of them was computed."""
    database = database_key(session)
    now_mono, out, oldest = time.monotonic(), {}, utcnow()
    missing: list[Period] = []
    with _lock:
        for month in months:
            found = _kept.get((database, "month", month.label))
            if found is not None and found[0] > now_mono:
                out[month.label] = found[2]
                oldest = min(oldest, found[1])
            else:
                missing.append(month)
    if missing:
        at = utcnow()
        computed = fig.by_month(session, missing)
        with _lock:
            for month in missing:
                ttl = _ttl(month, at)
                if ttl > 0:
                    _kept[(database, "month", month.label)] = (
                        time.monotonic() + ttl,
                        at,
                        computed[month.label],
                    )
        out.update(computed)
        oldest = min(oldest, at)
    return out, oldest


def forget() -> None:
    """Drop everything kept (tests; after a correction an operator wants seen at once)."""
    with _lock:
        _kept.clear()
