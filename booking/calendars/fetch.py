"""Calendars subscribed by URL: fetch them (bounded in time and size) and re-import on schedule.

A fetch happens outside any database transaction (it may take seconds); only the import
that follows writes, in one short transaction. A failure is recorded on the source and the
sync goes on with the next one: it never stops the loop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from booking.calendars.imports import apply_busy_events, lock_source
from booking.calendars.models import CalendarSource
from booking.calendars.parse import (
    MAX_BODY_BYTES,
    CalendarRejected,
    CalendarTooLarge,
    expand_calendar,
)
from core.db import session_scope
from core.outbound import (
    FetchFailed,
    Resolver,
    UnsafeUrl,
    fetch,
    system_resolver,
)
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.models import Instrument

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 10.0
USER_AGENT = "labshare-calendar-import/1.0"


class CalendarFetchError(Exception):
    """The URL did not give us a calendar body; the message says why, in one line."""


@dataclass(frozen=True)
class SyncOutcome:
    source_id: int
    ok: bool
    events: int = 0
    added: int = 0
    removed: int = 0
    displaced: int = 0
    error: str | None = None


def fetch_calendar(
    url: str,
    *,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    max_bytes: int = MAX_BODY_BYTES,
    allow_private: bool | None = None,
    resolve: Resolver = system_resolver,
) -> bytes:
    """GET the calendar at `url`: at most `max_bytes`, done within `timeout` seconds, only
    from internet addresses (core.outbound pins each connection to the address checked)."""
    if allow_private is None:
        allow_private = get_settings().calendar_allow_private_urls
    try:
        fetched = fetch(
            url,
            headers={"User-Agent": USER_AGENT, "Accept": "text/calendar, */*;q=0.5"},
            timeout=timeout,
            max_bytes=max_bytes,
            allow_private=allow_private,
            resolve=resolve,
        )
    except FetchFailed as exc:
        hint = (
            " (LABSHARE_CALENDAR_ALLOW_PRIVATE_URLS allows more)" if "internet" in str(exc) else ""
        )
        raise CalendarFetchError(f"{exc}{hint}")
    except UnsafeUrl as exc:
        raise CalendarFetchError(exc.message)
    if fetched.status != 200:
        raise CalendarFetchError(f"HTTP {fetched.status} from {urlsplit(fetched.url).hostname}")
    return fetched.body


def calendar_source_sync(
    source_id: int, *, engine: Engine | None = None, now: datetime | None = None
) -> SyncOutcome:
    """Fetch one URL source and replace its busy time; the outcome is recorded on the source."""
    now = now or utcnow()
    with session_scope(write=False, engine=engine) as session:
        source = session.get(CalendarSource, source_id)
        if source is None or not source.url:
            return SyncOutcome(source_id, ok=False, error="no such URL calendar")
        url = source.url
        instrument = session.get(Instrument, source.instrument_id)
        assert instrument is not None
    error: str | None = None
    events = []
    try:
        events = expand_calendar(fetch_calendar(url), instrument=instrument, now=now)
    except CalendarFetchError as exc:
        error = f"fetch: {exc}"
    except CalendarTooLarge as exc:
        error = exc.message  # sizes and counts only
    except CalendarRejected:
        # The parser's reason may quote what the server sent; that stays out of the record.
        error = "not an iCalendar file (what the address returned is not repeated here)"
    with session_scope(engine=engine) as session:
        source = lock_source(session, source_id)
        if source is None or source.url != url:
            return SyncOutcome(source_id, ok=False, error="the calendar changed during the sync")
        if error is not None:
            # Keep the last good busy time: a calendar server's bad hour frees nothing.
            source.last_error = error[:1000]
            source.last_fetched_at = now
            session.add(source)
            return SyncOutcome(source_id, ok=False, error=error)
        result = apply_busy_events(
            session, source=source, instrument=instrument, events=events, now=now
        )
    return SyncOutcome(
        source_id,
        ok=True,
        events=len(events),
        added=result.added,
        removed=result.removed,
        displaced=result.displaced,
    )


def due_source_ids(
    *, engine: Engine | None = None, now: datetime | None = None, force: bool = False
) -> list[int]:
    """URL sources never fetched, or last fetched `refresh_minutes` ago or more."""
    now = now or utcnow()
    with session_scope(write=False, engine=engine) as session:
        rows = session.exec(
            select(
                CalendarSource.id, CalendarSource.last_fetched_at, CalendarSource.refresh_minutes
            )
            .where(col(CalendarSource.url).is_not(None))
            .order_by(col(CalendarSource.id))
        ).all()
    return [
        source_id
        for source_id, fetched, minutes in rows
        if source_id is not None
        and (force or fetched is None or fetched + timedelta(minutes=minutes) <= now)
    ]


def calendar_sources_sync_due(
    *, engine: Engine | None = None, now: datetime | None = None, force: bool = False
) -> list[SyncOutcome]:
    """Sync every due URL source; one source's failure never stops the others."""
    outcomes = []
    for source_id in due_source_ids(engine=engine, now=now, force=force):
        try:
            outcomes.append(calendar_source_sync(source_id, engine=engine, now=now))
        except Exception as exc:  # the database may be briefly away; go on
            log.exception("calendar sync of source %s failed", source_id)
            outcomes.append(SyncOutcome(source_id, ok=False, error=f"sync: {exc}"[:1000]))
    return outcomes


def calendar_sync_loop(
    stop: threading.Event, *, interval_seconds: float = 60.0, engine: Engine | None = None
) -> None:
    """Sync due calendars every `interval_seconds` until `stop` is set (the demo runs this)."""
    while not stop.is_set():
        try:
            for outcome in calendar_sources_sync_due(engine=engine):
                log.info("calendar %s: %s", outcome.source_id, outcome.error or "synced")
        except Exception:
            log.exception("calendar sync pass failed")
        stop.wait(interval_seconds)
