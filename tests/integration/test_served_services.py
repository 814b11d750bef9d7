"""The service desk against `labshare serve` over many connections at once, on both
databases: thirty requests sent together, one quote accepted by twenty clicks at once,
two requests' runs racing for the same hours, and hostile uploads and answers."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from billing.services.models import ServiceFile, ServiceRequest
from booking.models import Booking, BookingStatus
from core.models import Role
from tests.factories import auth, create_institution, create_instrument, create_lab, create_user
from tests.served import all_at_once, served

API = "/api/v1"
LIMIT = 64 * 1024


def _to_in_progress(client: httpx.Client, rid: int, me: dict, lab: dict) -> None:
    base = f"{API}/service-requests/{rid}"
    assert client.post(f"{base}/quote", json={}, headers=lab).status_code == 200
    assert client.post(f"{base}/accept", headers=me).status_code == 200
    assert client.post(f"{base}/receive", headers=lab).status_code == 200


def test_bursts_and_hostile_input_at_the_service_desk(
    engine: Engine, session: Session, tmp_path: Path, backend: str
) -> None:
    lab_row = create_lab(session)
    instrument = create_instrument(session, lab=lab_row)
    lab = auth(create_user(session, role=Role.lab_manager, lab=lab_row))
    university = create_institution(session, code="UNIV-S")
    people = [auth(create_user(session, institution=university)) for _ in range(30)]
    session.commit()
    engine.pool.dispose()  # the servers have their own pools
    files_dir = tmp_path / "files"
    env = {"LABSHARE_FILES_DIR": str(files_dir), "LABSHARE_MAX_FILE_BYTES": str(LIMIT)}
    workers = 2 if backend == "postgresql" else 1
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=2, minute=0, second=0,
                                                             microsecond=0)  # fmt: skip
    window = {"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat()}
    with (
        served(tmp_path, workers=workers, env=env) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        made = client.post(f"{API}/services", headers=lab, json={
            "instrument_id": instrument.id, "name": "XRD phase analysis",
            "prices": {"academic": 25000},
            "form": [{"name": "phase", "type": "text", "required": True},
                     {"name": "sheet", "type": "file"}]})  # fmt: skip
        assert made.status_code == 201, made.text
        service_id = made.json()["id"]
        body = {"service_id": service_id, "units": 2, "answers": {"phase": "anatase"},
                "submit": True}  # fmt: skip
        sent = asyncio.run(all_at_once(server.url, [(f"{API}/service-requests", who, body)
                                                     for who in people]))  # fmt: skip
        ids = sorted(
            int(text.split('"id":')[1].split(",")[0]) for code, text in sent if code == 201
        )

        # Twenty clicks on "accept" at once move the request once.
        me = people[0]
        mine = next(i for i in ids if client.get(f"{API}/service-requests/{i}", headers=me).status_code == 200)  # fmt: skip
        first = mine
        assert (
            client.post(f"{API}/service-requests/{first}/quote", json={}, headers=lab).status_code
            == 200
        )
        accepts = asyncio.run(all_at_once(
            server.url, [(f"{API}/service-requests/{first}/accept", me, {})] * 20))  # fmt: skip

        # Two requests' runs race for the same four hours: one holds them.
        second_owner = people[1]
        second = next(i for i in ids if client.get(f"{API}/service-requests/{i}", headers=second_owner).status_code == 200)  # fmt: skip
        assert (
            client.post(f"{API}/service-requests/{first}/receive", headers=lab).status_code == 200
        )
        _to_in_progress(client, second, second_owner, lab)
        runs = asyncio.run(all_at_once(server.url, [
            (f"{API}/service-requests/{rid}/schedule", lab, window)
            for _ in range(8) for rid in (first, second)]))  # fmt: skip

        # Hostile input, on the request whose run holds the instrument.
        winner = next(rid for rid, owner in ((first, me), (second, second_owner))
                      if client.get(f"{API}/service-requests/{rid}", headers=owner)
                      .json()["status"] == "in_progress")  # fmt: skip
        owner = me if winner == first else second_owner
        url = f"{API}/service-requests/{winner}/files"
        too_big = client.post(url, headers=lab, files={"file": ("big.bin", b"x" * (LIMIT + 1))})
        huge = client.post(url, headers=lab, files={"file": ("huge.bin", b"x" * (LIMIT * 3))})
        sneaky = client.post(url, headers=lab,
                             files={"file": ("../../../etc/passwd", b"root:x:0:0", "text/html")})  # fmt: skip
        stranger_reads = client.get(sneaky.json()["url"], headers=people[5])
        owner_reads = client.get(sneaky.json()["url"], headers=owner)
        many = client.post(f"{API}/service-requests", headers=me, json={
            **body, "answers": {f"a{i}": "x" for i in range(31)}})  # fmt: skip
        nested = client.post(f"{API}/service-requests", headers=me,
                             json={**body, "answers": {"phase": {"$ne": 1}}})  # fmt: skip
        zero = client.post(f"{API}/service-requests", headers=me, json={**body, "units": 0})
        log = server.log()

    assert Counter(code for code, _ in sent) == Counter({201: 30}), sent[:3]
    assert Counter(code for code, _ in accepts) == Counter({200: 1, 409: 19}), accepts[:3]
    assert all('"status":"accepted"' in text for code, text in accepts if code == 409)
    codes = Counter(code for code, _ in runs)
    assert set(codes) <= {200, 409} and codes[200] >= 1 and codes[409] >= 1, runs[:4]
    assert too_big.status_code == 413 and huge.status_code == 413
    assert sneaky.status_code == 201 and sneaky.json()["name"] == "passwd"
    assert sneaky.json()["content_type"] == "application/octet-stream"
    assert stranger_reads.status_code == 404
    assert owner_reads.status_code == 200 and owner_reads.content == b"root:x:0:0"
    assert owner_reads.headers["x-content-type-options"] == "nosniff"
    assert many.status_code == 422 and nested.status_code == 422 and zero.status_code == 422
    assert "Traceback" not in log, log[-3000:]

    session.rollback()
    assert session.exec(select(func.count()).select_from(ServiceRequest)).one() == 30
    held = session.exec(select(Booking).where(
        Booking.instrument_id == instrument.id, Booking.status == BookingStatus.confirmed)).all()  # fmt: skip
    assert len(held) == 1, held
    holder = session.exec(
        select(ServiceRequest).where(ServiceRequest.booking_id == held[0].id)
    ).one()
    loser = second if holder.id == first else first
    assert session.get(ServiceRequest, loser).status.value == "received"  # type: ignore[union-attr]
    stored = session.exec(select(ServiceFile)).all()
    assert [f.name for f in stored] == ["passwd"]
    on_disk = [p for p in files_dir.rglob("*") if p.is_file()]
    assert len(on_disk) == 1  # nothing of the refused uploads stayed behind
