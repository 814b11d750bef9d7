"""Throwaway PostgreSQL clusters for the tests that need more than the test database: a
primary of our own (initdb, trust, replication allowed) and a streaming replica of it
(pg_basebackup -R), each on a free port, removed afterwards. The server binaries come from
`pg_config --bindir`; as root they run as the `postgres` user, as PostgreSQL requires."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.served import free_port


def _bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    return Path("/usr/lib/postgresql/15/bin")


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_postgres(command), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


@dataclass
class Cluster:
    data: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str) -> None:
        _run(
            [str(_bindir() / "pg_ctl"), "-D", str(self.data), "-l", f"{self.data}.log", "-w", *args]
        )


@contextmanager
def primary_and_replica() -> Iterator[tuple[Cluster, Cluster]]:
    """A primary and its streaming replica, started; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="labshare-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    primary = Cluster(root / "primary", free_port())
    replica = Cluster(root / "replica", free_port())
    started: list[Cluster] = []
    try:
        _run([str(_bindir() / "initdb"), "-D", str(primary.data), "-U", "postgres",
              "--auth=trust", "-E", "UTF8", "--no-sync"])  # fmt: skip
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {primary.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{root}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\n")  # fmt: skip
        with (primary.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        primary.ctl("start")
        started.append(primary)
        _run([str(_bindir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
              "-U", "postgres", "-D", str(replica.data), "-R", "-X", "stream"])  # fmt: skip
        with (replica.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {replica.port}\n")
        replica.ctl("start")
        started.append(replica)
        yield primary, replica
    finally:
        for cluster in reversed(started):
            with contextlib.suppress(RuntimeError):  # already stopped by the test
                cluster.ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
