"""`labshare serve` as users run it: a subprocess on a free port, over real connections."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

LABSHARE = Path(sys.executable).with_name("labshare")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A running server: its address and what it wrote to its log so far."""

    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def served(
    log_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[Served]:
    """`labshare serve --workers N` with this process's LABSHARE_ settings (and `env`),
    until it answers /healthz; stopped (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    log_path = log_dir / f"serve-{port}.log"
    command = [str(LABSHARE), "serve", "--port", str(port), "--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Served(f"http://127.0.0.1:{port}", log_path, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"labshare serve exited with {process.returncode}:\n{server.log()}"
                )
            try:
                if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"labshare serve did not start in {timeout:g} s:\n{server.log()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def all_at_once(
    url: str, calls: list[tuple[str, dict, dict]] | list[tuple[str, dict, dict, str]]
) -> list[tuple[object, str]]:
    """Send each (path, headers, JSON body[, method: POST by default]) at once over up to
    50 connections: each call's status (or how its connection dropped) and body."""
    import asyncio

    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(
            path: str, headers: dict, body: dict, method: str = "POST"
        ) -> tuple[object, str]:
            try:
                payload = None if method == "DELETE" else body
                r = await client.request(method, path, json=payload, headers=headers)
                return r.status_code, r.text
            except httpx.HTTPError as exc:
                return f"dropped ({type(exc).__name__})", ""

        return await asyncio.gather(*(one(*call) for call in calls))
