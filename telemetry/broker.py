"""An embedded MQTT broker (amqtt, pure Python) for `labshare demo` when no broker is set."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_CONFIG = """\
listeners:
  default:
    type: tcp
    bind: {host}:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


@dataclass
class EmbeddedBroker:
    """A running amqtt broker (MQTT 3.1.1, no shared subscriptions) in a child process."""

    process: subprocess.Popen
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_embedded_broker(host: str = "127.0.0.1", port: int | None = None) -> EmbeddedBroker:
    """Start amqtt on `port` (a free one by default) and wait until it accepts connections."""
    port = port or _free_port(host)
    config = Path(tempfile.mkdtemp(prefix="labshare-mqtt-")) / "amqtt.yaml"
    config.write_text(_CONFIG.format(host=host, port=port))
    process = subprocess.Popen(
        [sys.executable, "-c", "from amqtt.scripts.broker_script import main; main()",
         "-c", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    broker = EmbeddedBroker(process, host, port)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not broker.alive():
            raise RuntimeError("the embedded MQTT broker (amqtt) exited at start")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return broker
        except OSError:
            time.sleep(0.1)
    broker.stop()
    raise RuntimeError(f"the embedded MQTT broker did not listen on {host}:{port}")
