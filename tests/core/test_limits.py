"""Request bodies past the limit are refused before they are read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.served import served


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_48_mb_anonymous_json_body_is_refused_unread(engine: Engine, tmp_path: Path) -> None:
    """It was parsed before the 401, and the server grew by 200 MB."""
    body = b'{"instrument_id": 1, "purpose": "' + b"x" * (48 * 1024 * 1024) + b'"}'
    with served(tmp_path) as server:
        before = _rss_kib(server.process.pid)
        try:
            answer = httpx.post(
                f"{server.url}/api/v1/bookings",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            status, detail = answer.status_code, answer.json()["detail"]
        except httpx.WriteError:  # the server answered and closed before we finished
            status, detail = 413, "closed early"
        grown = _rss_kib(server.process.pid) - before
    assert status == 413, detail
    assert grown < 16 * 1024, f"the server grew by {grown} KiB"


def test_a_streamed_body_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536  # 4 MiB in all, with no Content-Length

    answer = client.post(
        "/api/v1/bookings", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert "larger than 1,048,576 bytes" in answer.json()["detail"]


def test_calendars_may_be_larger_than_json(client: TestClient) -> None:
    """1.5 MiB is too much JSON but a fine calendar size (2 MiB): past the limit, the
    calendar is turned away by what is in it (401 here, for want of a token)."""
    big = b"x" * (1536 * 1024)
    as_json = client.post(
        "/api/v1/instruments/1/calendars", content=big, headers={"Content-Type": "application/json"}
    )
    as_ics = client.post(
        "/api/v1/instruments/1/calendars", content=big, headers={"Content-Type": "text/calendar"}
    )
    assert as_json.status_code == 413
    assert as_ics.status_code == 401
