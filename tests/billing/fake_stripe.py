"""A local HTTP server that answers the Stripe API calls billing makes, and records them.

Stripe's servers cannot be reached from here; stripe-python is pointed at this one
(LABSHARE_STRIPE_API_BASE) so tests see exactly what the adapter sent. Like Stripe,
a repeated Idempotency-Key returns the first answer again.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None
    authorization: str | None


@dataclass
class FakeStripe:
    calls: list[Call] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def posts(self, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path.startswith(path_prefix)]

    def answer(
        self, method: str, path: str, params: dict[str, str], key: str | None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if key and key in self.answers:
                return 200, self.answers[key]
            n = next(self.ids)
            if path == "/v1/customers":
                body: dict[str, Any] = {
                    "id": f"cus_{n}",
                    "object": "customer",
                    "name": params.get("name"),
                }
            elif path == "/v1/invoices":
                body = {
                    "id": f"in_{n}",
                    "object": "invoice",
                    "status": "draft",
                    "customer": params["customer"],
                    "currency": params["currency"],
                    "amount_due": 0,
                    "total": 0,
                }
                self.invoices[body["id"]] = body
            elif path == "/v1/invoiceitems":
                invoice = self.invoices[params["invoice"]]
                invoice["total"] += int(params["amount"])
                invoice["amount_due"] = invoice["total"]
                body = {
                    "id": f"ii_{n}",
                    "object": "invoiceitem",
                    "amount": int(params["amount"]),
                    "currency": params["currency"],
                    "invoice": params["invoice"],
                }
            elif path.startswith("/v1/invoices/") and path.endswith("/finalize"):
                invoice = self.invoices[path.split("/")[3]]
                invoice["status"] = "open"
                invoice["hosted_invoice_url"] = f"https://invoice.example/{invoice['id']}"
                body = dict(invoice)
            else:
                return 404, {
                    "error": {"type": "invalid_request_error", "message": f"no route {path}"}
                }
            if key:
                self.answers[key] = body
            return 200, body


def start_fake_stripe() -> tuple[FakeStripe, ThreadingHTTPServer]:
    fake = FakeStripe()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            path, _, query = self.path.partition("?")
            params = dict(parse_qsl(raw or query, keep_blank_values=True))
            key = self.headers.get("Idempotency-Key")
            fake.calls.append(
                Call(self.command, path, params, key, self.headers.get("Authorization"))
            )
            status, body = fake.answer(self.command, path, params, key)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{len(fake.calls)}")
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    return fake, server


def sign(payload: str, secret: str, *, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, computed as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
