"""A local HTTP server answering Stripe's POST /v1/transfers as Stripe does, for payouts.

stripe-python is pointed at it (LABSHARE_STRIPE_API_BASE). A repeated Idempotency-Key
returns the first answer; a destination of `acct_broken` answers Stripe's error shape.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


class FakeConnect:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], str | None]] = []
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(
        self, path: str, params: dict[str, str], key: str | None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append((params, key))
            if key and key in self.answers:
                return self.answers[key]
            if path != "/v1/transfers":
                return 404, {
                    "error": {"type": "invalid_request_error", "message": f"no route {path}"}
                }
            if params.get("destination") == "acct_broken":
                result: tuple[int, dict[str, Any]] = (400, {"error": {
                    "type": "invalid_request_error", "code": "account_invalid",
                    "message": "No such destination: 'acct_broken'"}})  # fmt: skip
            else:
                result = (200, {
                    "id": f"tr_{next(self.ids)}", "object": "transfer",
                    "amount": int(params["amount"]), "currency": params["currency"],
                    "destination": params["destination"],
                    "transfer_group": params.get("transfer_group"),
                })  # fmt: skip
            if key:
                self.answers[key] = result
            return result

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                params = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                status, body = fake.answer(self.path, params, self.headers.get("Idempotency-Key"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake")
                self.end_headers()
                self.wfile.write(data)

        return Handler
