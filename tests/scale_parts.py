"""Debian's PgBouncer and HAProxy, started for a test or a benchmark: PgBouncer in
transaction mode in front of a PostgreSQL database, HAProxy balancing round-robin (no
sticky sessions) over several `labshare serve` processes. Each on a free port, stopped
afterwards; .ci/run installs the packages."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.served import free_port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} never opened:\n{log.read_text()}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def pgbouncer(database_url: str, *, pool_size: int = 20) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `database_url`; yields the URL to use
    instead (with LABSHARE_DATABASE_POOLER=true)."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    url = make_url(database_url)
    root = Path(tempfile.mkdtemp(prefix="labshare-pgbouncer-"))
    root.chmod(0o755)
    port = free_port()
    (root / "users.txt").write_text(f'"{url.username or "postgres"}" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"[databases]\n{url.database} = host={url.host or '127.0.0.1'} port={url.port or 5432}"
        f" dbname={url.database}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {port}\nunix_socket_dir =\nauth_type = trust\n"
        f"auth_file = {root / 'users.txt'}\npool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 1000\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
    )
    for path in root.iterdir():
        path.chmod(0o644)
    command = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer will not run as root
        shutil.chown(root, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    log = root / "pgbouncer.log"
    log.touch()
    log.chmod(0o666)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log)
        yield str(url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False))
    finally:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def haproxy(backends: list[str]) -> Iterator[str]:
    """HAProxy balancing round-robin over these base URLs; yields its base URL."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    root = Path(tempfile.mkdtemp(prefix="labshare-haproxy-"))
    port = free_port()
    servers = "\n".join(
        f"  server s{i} {url.removeprefix('http://')} check inter 1s"
        for i, url in enumerate(backends)
    )
    (root / "haproxy.cfg").write_text(
        "global\n  maxconn 2000\ndefaults\n  mode http\n  timeout connect 5s\n"
        "  timeout client 90s\n  timeout server 90s\n"
        f"frontend labshare\n  bind 127.0.0.1:{port}\n  default_backend servers\n"
        f"backend servers\n  balance roundrobin\n{servers}\n"
    )
    log = root / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "-db", "-f", str(root / "haproxy.cfg")],
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)
