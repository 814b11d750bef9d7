"""The ingest's counters, rendered in Prometheus' text format (no client library needed)."""

from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """A cumulative-bucket histogram, as Prometheus expects."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += n
        self.total += n
        self.sum += value * n

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for bound, count in zip(self.buckets, self.counts, strict=True):
            lines.append(f'{name}_bucket{{le="{bound}"}} {count}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.total}')
        lines.append(f"{name}_sum {self.sum:.6f}")
        lines.append(f"{name}_count {self.total}")
        return lines


class Reservoir:
    """The most recent observations, for exact quantiles (a Prometheus summary)."""

    def __init__(self, size: int = 100_000) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def quantile(self, q: float) -> float:
        if not self.values:
            return float("nan")
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class IngestMetrics:
    """What one ingest worker has done since it started."""

    COUNTERS = {
        "received": "Messages received from the broker",
        "stored": "Events stored",
        "duplicates": "Events already stored (redeliveries)",
        "dead_letters": "Messages kept in the dead-letter table",
        "presence": "Gateway presence messages applied",
        "batches": "Batches committed",
        "db_retries": "Batch writes retried after a database error",
        "reconnects": "Connections to the broker after the first",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.COUNTERS, 0)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.lag = Histogram(LAG_BUCKETS)
        self.recent_lags = Reservoir()
        self.queue_depth = 0

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.values[name] += n

    def render(self) -> str:
        """The metrics page."""
        with self._lock:
            lines: list[str] = []
            for name, help_text in self.COUNTERS.items():
                metric = f"labshare_ingest_{name}_total"
                lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
                lines.append(f"{metric} {self.values[name]}")
            lines += self.batch_size.render(
                "labshare_ingest_batch_size", "Messages per committed batch"
            )
            lines += self.lag.render(
                "labshare_ingest_lag_seconds", "From the message's ts to its commit"
            )
            name = "labshare_ingest_recent_lag_seconds"
            lines += [
                f"# HELP {name} Lag of the latest 100,000 stored events",
                f"# TYPE {name} summary",
            ]
            for q in (0.5, 0.9, 0.99):
                lines.append(f'{name}{{quantile="{q}"}} {self.recent_lags.quantile(q):.6f}')
            lines += [
                "# HELP labshare_ingest_queue_depth Messages received, not yet committed",
                "# TYPE labshare_ingest_queue_depth gauge",
                f"labshare_ingest_queue_depth {self.queue_depth}",
            ]
        return "\n".join(lines) + "\n"


def serve_metrics(
    metrics: IngestMetrics, port: int, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """Serve `/metrics` on a background thread; call .shutdown() to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
