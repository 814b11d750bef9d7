"""The booking benchmark's database: the 12,600-instrument network and 1.3 M bookings, and
the free slots and sign-in tokens a run books with."""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import ROOT, SERVER

sys.path.insert(0, str(ROOT))

HISTORY = """
WITH u AS (SELECT array_agg(id ORDER BY id) AS ids FROM "user" WHERE role = 'researcher'),
ins AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM instrument)
INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, purpose, version,
                     created_at, updated_at)
SELECT ins.id,
       u.ids[1 + (ins.n * 7 + d + 1000) %% array_length(u.ids, 1)],
       date_trunc('day', now()) + d * interval '1 day' + interval '1 hour' * (1 + (ins.n %% 4) * 2),
       date_trunc('day', now()) + d * interval '1 day' + interval '1 hour' * (3 + (ins.n %% 4) * 2),
       CASE WHEN d < 0 THEN 'completed' ELSE 'confirmed' END, '', 1, now(), now()
FROM ins, u, generate_series(%(first_day)s::int, %(last_day)s::int) d
WHERE (ins.n + d) %% %(every)s::int = 0
ON CONFLICT DO NOTHING
"""


def setup(url: str, dsn: str, db: str, instruments: int) -> dict[str, object]:
    """A fresh database with the network and a year of bookings."""
    import migrations
    from core.db import make_engine, session_scope
    from instruments.seed import seed_network

    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    started = time.monotonic()
    migrations.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine=engine) as session:
        seed_network(session, instruments=instruments)
    engine.dispose()
    seeded = time.monotonic() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.monotonic()
        # A past year in one statement, 60 days ahead in another: ~1.3 million rows, less
        # any the seeded network's own bookings already take (it books around the time it
        # is seeded, so which ones clash depends on the hour).
        conn.execute(HISTORY, {"first_day": -365, "last_day": -1, "every": 4})
        conn.execute(HISTORY, {"first_day": 1, "last_day": 60, "every": 4})
        conn.execute("VACUUM ANALYZE")
        loaded = time.monotonic() - started
        total = conn.execute("SELECT count(*) FROM booking").fetchone()[0]  # type: ignore[index]
    print(f"setup: seeded in {seeded:.1f} s; {total:,} bookings in {loaded:.1f} s")
    return {"bookings": total, "seed_s": round(seeded, 1), "history_s": round(loaded, 1)}


def _bookable(session: Any, days: tuple[int, int], *more: Any) -> list[Any]:
    """Active instruments a researcher books at once (no approval, qualification or quota)
    up to `days[1]` ahead, meeting `more` conditions too."""
    from sqlmodel import select

    from instruments.models import Instrument, InstrumentStatus

    return list(
        session.exec(
            select(Instrument).where(
                Instrument.status == InstrumentStatus.active,
                Instrument.approval_required == False,  # noqa: E712
                Instrument.qualification_required == False,  # noqa: E712
                Instrument.weekly_quota_hours == None,  # noqa: E711
                Instrument.horizon_days >= days[1] + 1,
                *more,
            )
        ).all()
    )


def plan_slots(
    url: str, count: int, days: tuple[int, int], seed: int
) -> list[tuple[int, datetime, datetime]]:
    """`count` distinct free, rule-abiding slots on open instruments without approval,
    qualification or quota, spread across instruments."""

    from booking.intervals import grid_starts
    from booking.timeline import load_timelines
    from core.db import make_engine, session_scope
    from instruments.models import Instrument

    engine = make_engine(url)
    now = datetime.now(UTC)
    lo, hi = now + timedelta(days=days[0]), now + timedelta(days=days[1])
    per_instrument: list[list[tuple[int, datetime, datetime]]] = []
    with session_scope(engine=engine, write=False) as session:
        instruments = _bookable(session, days, Instrument.lead_minutes <= days[0] * 24 * 60 - 60)
        rng = random.Random(seed)
        instruments = rng.sample(list(instruments), min(len(instruments), max(50, count // 20)))
        timelines = load_timelines(session, instruments, lo, hi)
        for timeline in timelines.values():
            inst = timeline.instrument
            length = timedelta(minutes=max(inst.min_minutes, inst.slot_step_minutes))
            slots = []
            for gap in timeline.free(lo, hi):
                cursor = gap[0]
                while True:
                    start = next(
                        grid_starts((cursor, gap[1]), length, inst.slot_step_minutes, timeline.tz),
                        None,
                    )
                    if start is None:
                        break
                    slots.append((inst.id, start, start + length))
                    cursor = start + length
            rng.shuffle(slots)
            per_instrument.append(slots)
    engine.dispose()
    out: list[tuple[int, datetime, datetime]] = []
    while len(out) < count and any(per_instrument):
        for slots in per_instrument:
            if slots and len(out) < count:
                out.append(slots.pop())
    return out


def plan_window(url: str, days: tuple[int, int], hours: int, seed: int) -> tuple[int, datetime]:
    """An instrument free and open for `hours` on end, on the hour, whose rules take
    bookings of 1 to 3 hours: where the one-instrument burst's requests all could land,
    so its answers are the race's (one 201 per free stretch, the rest 409), not closed
    hours or rules."""

    from booking.intervals import grid_starts
    from booking.timeline import load_timelines
    from core.db import make_engine, session_scope
    from instruments.models import Instrument

    engine = make_engine(url)
    now = datetime.now(UTC)
    lo, hi = now + timedelta(days=days[0]), now + timedelta(days=days[1])
    length = timedelta(hours=hours)
    try:
        with session_scope(engine=engine, write=False) as session:
            instruments = _bookable(
                session, days, Instrument.min_minutes <= 60, Instrument.max_minutes >= 180
            )
            usable = [i for i in instruments if 60 % i.slot_step_minutes == 0]
            random.Random(seed).shuffle(usable)
            timelines = load_timelines(session, usable[:300], lo, hi)
            for timeline in timelines.values():
                for gap in timeline.free(lo, hi):
                    start = next(grid_starts(gap, length, 60, timeline.tz), None)
                    if start is not None:
                        assert timeline.instrument.id is not None
                        return timeline.instrument.id, start
    finally:
        engine.dispose()
    raise SystemExit(f"no instrument is free for {hours} h between days {days}")


def with_conflicts(unique: list, rng: random.Random) -> list:  # type: ignore[type-arg]
    """Two thirds unique, one third repeating an earlier unique request a little later."""
    mixed = list(unique)
    for _i in range(len(unique) // 2):
        original = rng.randrange(len(unique))
        mixed.insert(min(len(mixed), original + rng.randrange(5, 200)), unique[original])
    return mixed


def tokens(url: str, n: int) -> list[str]:
    """Bearer tokens of `n` researchers, each a sign-in session of theirs."""
    from sqlmodel import select

    from core.auth import session_open
    from core.db import make_engine, session_scope
    from core.models import Role, User

    engine = make_engine(url)
    with session_scope(engine=engine) as session:
        ids = session.exec(select(User.id).where(User.role == Role.researcher).limit(n)).all()
        out = [session_open(session, user_id=i) for i in ids if i is not None]
    engine.dispose()
    return out
