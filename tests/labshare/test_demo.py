"""`labshare demo` as a user runs it: a real process, a real port, a real SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from instruments.seed import DEMO_PASSWORD


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LABSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "LABSHARE_DATA_DIR": str(tmp_path / "data"),
        "LABSHARE_SECRET_KEY": "demo-test-secret-demo-test-secret-0123",
    }


def _demo(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labshare.cli", "demo", "--instruments", "300", "--port", str(port)],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_demo_migrates_seeds_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    demo = _demo(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert demo.poll() is None, demo.communicate()[0]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo did not come up in 90 s"
            time.sleep(0.3)
        page = httpx.get(f"{base}/api/v1/instruments", params={"limit": 200}).json()
        assert len(page["items"]) == 200 and page["next"]
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "manager@demo.labshare", "password": DEMO_PASSWORD},
        )
        assert token.status_code == 200
        assert httpx.get(f"{base}/docs").status_code == 200
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, output
    assert "seeded 300 instruments" in output
    assert f"running at {base}" in output and "manager@demo.labshare" in output
    assert DEMO_PASSWORD in output and output.rstrip().endswith("stopped")


def test_demo_on_a_busy_port_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        demo = _demo(tmp_path, busy.getsockname()[1])
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 1
    assert output.startswith("error: cannot listen on 127.0.0.1:")
