"""Reads from a streaming replica, against `labshare serve`: a primary and a replica of
our own (tests/pg_cluster.py). Lag-tolerant reads go to the replica; a person's read right
after their write sees it (the replica is paused, so that read goes to the primary);
someone else's read may lag behind; a replica that stops is skipped and /healthz says so;
writes never go to a replica."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, create_engine

import migrations
from core.db import dispose_engines
from core.models import Role
from core.replicas import reset as forget_replicas
from core.settings import get_settings
from tests.factories import auth, create_instrument, create_lab, create_user
from tests.pg_cluster import primary_and_replica
from tests.served import served


def _replay(replica_url: str, paused: bool) -> None:
    engine = create_engine(replica_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"SELECT pg_wal_replay_{'pause' if paused else 'resume'}()"))
    engine.dispose()


def _name_on(url: str, instrument_id: int) -> str | None:
    """The instrument's name on that server (None until the row has arrived there)."""
    engine = create_engine(url)
    with engine.connect() as connection:
        name = connection.execute(text("SELECT name FROM instrument WHERE id = :i"),
                                  {"i": instrument_id}).scalar_one_or_none()  # fmt: skip
    engine.dispose()
    return name


def test_reads_go_to_the_replica_and_a_person_reads_their_own_writes(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with primary_and_replica() as (primary, replica):
        primary_url, replica_url = primary.url(), replica.url()
        migrations.upgrade(primary_url)
        monkeypatch.setenv("LABSHARE_DATABASE_URL", primary_url)
        monkeypatch.setenv("LABSHARE_DATA_DIR", str(tmp_path))
        get_settings.cache_clear()
        dispose_engines()
        with Session(create_engine(primary_url)) as session:
            lab = create_lab(session)
            instrument = create_instrument(session, lab=lab, name="Krios G4")
            manager = auth(create_user(session, role=Role.lab_manager, lab=lab))
            someone = auth(create_user(session))
            instrument_id = instrument.id or 0
        env = {"LABSHARE_DATABASE_REPLICA_URLS": replica_url,
               "LABSHARE_REPLICA_MAX_LAG_SECONDS": "120", "LABSHARE_REPLICA_WAIT_MS": "200"}  # fmt: skip
        deadline = time.monotonic() + 10
        while _name_on(replica_url, instrument_id) != "Krios G4" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _name_on(replica_url, instrument_id) == "Krios G4", "the replica never caught up"
        with served(tmp_path, env=env) as server, httpx.Client(base_url=server.url) as client:
            health = client.get("/healthz").json()
            assert health["replicas"][0]["ok"] and health["replicas"][0]["serving"], health
            search = client.get("/api/v1/instruments?q=krios")
            assert search.status_code == 200 and search.headers["labshare-read-from"] == "replica"
            assert [i["name"] for i in search.json()["items"]] == ["Krios G4"]
            page = client.get(f"/instruments/{instrument_id}")
            assert page.status_code == 200 and page.headers["labshare-read-from"] == "replica"

            # The replica stops replaying; the manager renames the instrument.
            _replay(replica_url, paused=True)
            url = f"/api/v1/instruments/{instrument_id}"
            renamed = client.patch(url, json={"name": "Krios G4 Cryo-TEM"}, headers=manager)
            assert renamed.status_code == 200, renamed.text
            lsn = renamed.headers["labshare-lsn"]
            assert "labshare-read-from" not in renamed.headers  # a write: the primary
            # The manager's next read sees the new name: the replica has not replayed it,
            # so the read goes to the primary (cookie, or the header for API clients).
            mine = client.get(url, headers=manager)
            assert mine.json()["name"] == "Krios G4 Cryo-TEM"
            assert mine.headers["labshare-read-from"] == "primary"
            with httpx.Client(base_url=server.url) as other:
                by_header = other.get(url, headers={**someone, "Labshare-Min-LSN": lsn})
                assert by_header.json()["name"] == "Krios G4 Cryo-TEM"
                # Someone else, without the position, reads the replica: a little behind.
                lagging = other.get(url, headers=someone)
                assert lagging.headers["labshare-read-from"] == "replica"
                assert lagging.json()["name"] == "Krios G4"
                _replay(replica_url, paused=False)
                deadline = time.monotonic() + 10
                while other.get(url).json()["name"] != "Krios G4 Cryo-TEM":
                    assert time.monotonic() < deadline, "the replica never caught up"
                    time.sleep(0.05)

                # The replica goes away: reads go on from the primary; /healthz says so.
                replica.ctl("-m", "immediate", "stop")
                time.sleep(1.1)  # what a replica said is remembered for a second
                down = other.get("/healthz")
                assert down.status_code == 200 and not down.json()["replicas"][0]["ok"]
                still = other.get("/api/v1/instruments?q=krios")
                assert still.status_code == 200 and still.headers["labshare-read-from"] == "primary"
            log = server.log()
        assert "Traceback" not in log, log[-3000:]
    forget_replicas()
    get_settings.cache_clear()
    dispose_engines()
