"""`labshare serve --workers 2`: the workers take the clients' connections in turn.

uvicorn's workers share one listening socket, and each one's event loop accepted every
connection waiting when it woke: 32 clients connecting at once were split 30/2, 29/3 and
6/26, and the busier worker's requests waited the longest for as long as the connections
lived (labshare.balanced). Driven here as a benchmark client does: many keep-alive
connections opened at once to the served process.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from sqlalchemy.engine import Engine

from tests.served import Served, served

CLIENTS = 32


def _workers(server: Served) -> list[psutil.Process]:
    """The live worker processes (not multiprocessing's resource tracker)."""
    workers = []
    for child in psutil.Process(server.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(
                child.cmdline()
            ):
                workers.append(child)
        except psutil.Error:  # gone meanwhile
            continue
    return workers


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _all_started(server: Served, workers: int = 2) -> None:
    """/healthz answered once one worker was up: wait for every one."""
    deadline = time.monotonic() + 60
    while server.log().count("Application startup complete.") < workers:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)


def _connections_by_worker(server: Served, port: int) -> dict[int, int]:
    """How many established connections to `port` each worker process holds."""
    return {
        worker.pid: sum(
            1
            for c in worker.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
        )
        for worker in _workers(server)
    }


def _all_at_once(port: int) -> list[socket.socket]:
    """CLIENTS connections opened together, each then asking one keep-alive request."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(CLIENTS)]
    request = b"GET /healthz HTTP/1.1\r\nHost: labshare\r\n\r\n"
    for conn in conns:
        conn.sendall(request)
    for conn in conns:
        conn.settimeout(30)
        assert conn.recv(65536).startswith(b"HTTP/1.1 200"), "every connection is served"
    return conns


def _tallies() -> set[Path]:
    """The workers' shared counts (labshare.balanced.Tally): none is left behind."""
    return set(Path("/dev/shm").glob("labshare-*.turns"))


def test_two_workers_take_connections_in_turn(engine: Engine, tmp_path: Path) -> None:
    tallies = _tallies()
    with served(tmp_path, workers=2) as server:
        _all_started(server)
        port = urlsplit(server.url).port
        assert port is not None
        for _ in range(3):
            conns = _all_at_once(port)
            try:
                held = _connections_by_worker(server, port)
            finally:
                for conn in conns:
                    conn.close()
            assert len(held) == 2 and sum(held.values()) == CLIENTS, held
            # Taking turns gives 16/16 or near it; the loops' own servers often gave 30/2.
            assert min(held.values()) >= CLIENTS // 4, held
            time.sleep(0.3)  # the closed connections gone from both workers
        log = server.log()
    assert server.process.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert _tallies() <= tallies


def test_a_worker_killed_leaves_the_server_answering_and_is_replaced(
    engine: Engine, tmp_path: Path
) -> None:
    tallies = _tallies()
    with served(tmp_path, workers=2) as server, httpx.Client(timeout=10) as client:
        _all_started(server)

        def answers(times: int) -> list[int]:
            # A fresh connection each: each is taken by whichever worker is waiting.
            return [
                client.get(f"{server.url}/healthz", headers={"Connection": "close"}).status_code
                for _ in range(times)
            ]

        first, _ = _workers(server)
        os.kill(first.pid, signal.SIGKILL)
        # Only once it is dead: a connection it took in the instant before is reset, as
        # with any server whose process is killed.
        deadline = time.monotonic() + 10
        while not _dead(first):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answers(20) == [200] * 20  # the other takes every connection meanwhile
        # uvicorn's supervisor starts a new worker in the dead one's place, which serves too.
        _all_started(server, workers=3)
        assert answers(20) == [200] * 20
        # Stopped while every worker holds open keep-alive connections: each gives its
        # slot back as connections close, and the server ends cleanly.
        port = urlsplit(server.url).port
        assert port is not None
        conns = _all_at_once(port)
        server.process.terminate()
        server.process.wait(30)
        for conn in conns:
            conn.close()
        log = server.log()
    assert server.process.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    # The worker killed outright never gave its slot back; the last one out still removed
    # the file.
    assert _tallies() <= tallies


def test_stopped_right_after_a_worker_was_killed_leaves_no_counts_file(
    engine: Engine, tmp_path: Path
) -> None:
    """Within a second of the kill the dead worker's slot still looks fresh: the last one
    out asks whether its process runs, not only when it last wrote."""
    tallies = _tallies()
    with served(tmp_path, workers=2) as server:
        _all_started(server)
        first, _ = _workers(server)
        os.kill(first.pid, signal.SIGKILL)
        server.process.terminate()
        server.process.wait(30)
        log = server.log()
    assert server.process.returncode == 0, log[-3000:]
    assert _tallies() <= tallies
