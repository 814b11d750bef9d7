"""Request bodies past the limit are refused before they are read."""

from __future__ import annotations

import socket
import time
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


def test_clients_that_send_first_or_wait_for_100_continue_both_read_the_413(
    engine: Engine, tmp_path: Path
) -> None:
    """Programs' clients (httpx here) send the whole body before they read; the 413 and its
    reason must reach them, not a reset connection, with or without a Content-Length. A
    client that asks `Expect: 100-continue` is refused before it sends the body, and the
    server does not wait for a body that will not come."""

    def chunks() -> Iterator[bytes]:
        for _ in range(48):
            yield b"x" * 65536  # 3 MiB with no Content-Length

    declared = b'{"instrument_id": 1, "purpose": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    with served(tmp_path) as server:
        with httpx.Client(timeout=30) as client:
            for body in [declared] * 5 + [chunks(), chunks()]:
                answer = client.post(
                    f"{server.url}/api/v1/bookings",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                assert answer.status_code == 413
                assert "larger than 1,048,576 bytes" in answer.json()["detail"]
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /api/v1/bookings HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 3145728\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            started = time.monotonic()
            answer_bytes = b""
            while chunk := conn.recv(65536):
                answer_bytes += chunk
            waited = time.monotonic() - started
    assert answer_bytes.startswith(b"HTTP/1.1 413 "), answer_bytes[:200]
    assert b"larger than 1,048,576 bytes" in answer_bytes
    assert waited < 2, f"the answer took {waited:.1f} s"
