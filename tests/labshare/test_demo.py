"""`labshare demo` as a user runs it: a real process, a real port, a real SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
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


class Output:
    """The demo's output read as it comes, so a test can wait for a line."""

    def __init__(self, demo: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._demo = demo
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._demo.stdout is not None
        for line in self._demo.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while needle not in self.text:
            assert self._demo.poll() is None, self.text
            assert time.monotonic() < deadline, f"no {needle!r} in {seconds} s:\n{self.text}"
            time.sleep(0.1)

    def finish(self, seconds: float) -> str:
        """The whole output once the demo has exited and every writer closed the pipe."""
        self._demo.wait(timeout=seconds)
        self._reader.join(timeout=seconds)
        assert not self._reader.is_alive(), f"a part still holds the demo's output:\n{self.text}"
        return self.text


def _children(pid: int) -> list[int]:
    """The processes `pid` started (its parts), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for_health(demo: subprocess.Popen[str], output: Output, base: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert demo.poll() is None, output.text
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the demo did not come up in 90 s"
        time.sleep(0.3)


def test_demo_migrates_seeds_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    demo = _demo(tmp_path, port)
    output = Output(demo)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(demo, output, base)
        page = httpx.get(f"{base}/api/v1/instruments", params={"limit": 200}).json()
        assert len(page["items"]) == 200 and page["next"]
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "manager@demo.labshare", "password": DEMO_PASSWORD},
        )
        assert token.status_code == 200
        assert httpx.get(f"{base}/docs").status_code == 200
        # A person presses Ctrl-C once the logins are on the screen.
        output.wait_for("Ctrl-C stops the demo.", 60)
    finally:
        demo.send_signal(signal.SIGINT)
        text = output.finish(30)
    assert demo.returncode == 0, text
    assert "seeded 300 instruments" in text
    assert f"running at {base}" in text and "manager@demo.labshare" in text
    assert DEMO_PASSWORD in text and text.rstrip().endswith("stopped")
    assert "Traceback" not in text, text


def test_ctrl_c_while_the_parts_start_stops_them_all_quietly(tmp_path: Path) -> None:
    """Ctrl-C as soon as the web answers, while the workers are still importing: CI once
    saw the demo still running 30 s later. Every part stops, none is orphaned, nothing
    prints a KeyboardInterrupt, and no part is started after the Ctrl-C."""
    port = _free_port()
    demo = _demo(tmp_path, port)
    output = Output(demo)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(demo, output, base)
        parts = _children(demo.pid)
    finally:
        demo.send_signal(signal.SIGINT)
        text = output.finish(30)
    assert demo.returncode == 0, text
    assert text.rstrip().endswith("stopped"), text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert not [pid for pid in parts if _alive(pid)], text


def test_demo_on_a_busy_port_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        demo = _demo(tmp_path, busy.getsockname()[1])
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 1
    assert output.startswith("error: cannot listen on 127.0.0.1:")
