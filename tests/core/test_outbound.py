"""Fetching URLs people give us: only public addresses, pinned, redirects checked, nothing echoed."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.outbound import FetchFailed, UnsafeUrl, fetch, normalise_http_url, refusal

REFUSED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "255.255.255.255", "224.0.0.1", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "ff02::1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::808:808",  # NAT64 even of a public address: the gateway decides where it goes
    "64:ff9b:1::a00:1",  # the local-use NAT64 prefix
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # IPv4-mapped
]  # fmt: skip
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_tunnelled_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://0177.0.0.1/",  # octal 127.0.0.1 (httpx raised InvalidURL, a 500)
        "http://2130706433/",  # one number
        "http://0x7f.1/",
        "http://127.1/",
        "ftp://example.org/x.ics",
        "http:///nohost",
        "http://user:secret@example.org/",
        "http://example.org:99999/",
        "http://example.org:port/",
        "https://" + "a" * 2001 + ".org/",
    ],
)
def test_odd_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        normalise_http_url(url)


class Recorder:
    """An HTTP server on one loopback address that counts its hits and answers as told."""

    def __init__(self, host: str, answer: tuple[int, dict[str, str], bytes]) -> None:
        self.hits = 0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.hits += 1
                status, headers, body = answer
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """127.0.0.1 plays the internet; 127.0.0.2 plays the server's own network."""
    secret = Recorder("127.0.0.2", (200, {}, b"SECRET-INTERNAL-BODY"))
    public = Recorder("127.0.0.1", (200, {}, b"BEGIN:VCALENDAR"))
    yield public, secret
    public.close()
    secret.close()


def only_dot_one_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    return None if str(address) == "127.0.0.1" else "a private or local address"


def test_dns_rebinding_cannot_reach_the_internal_address(servers) -> None:
    """The resolver answers a public address when we check and the internal one after: the
    connection goes to the address that was checked, and the host is resolved once."""
    public, secret = servers
    answers = iter([["127.0.0.1"], ["127.0.0.2"], ["127.0.0.2"]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    fetched = fetch(
        f"http://calendar.rebind.test:{public.port}/lab.ics",
        resolve=rebinding,
        refuse=only_dot_one_is_public,
        timeout=5,
    )
    assert fetched.body == b"BEGIN:VCALENDAR"
    assert asked == ["calendar.rebind.test"]
    assert (public.hits, secret.hits) == (1, 0)


def test_a_redirect_to_an_internal_address_is_refused(servers) -> None:
    _public, secret = servers
    redirecting = Recorder(
        "127.0.0.1", (302, {"Location": f"http://127.0.0.2:{secret.port}/"}, b"")
    )
    try:
        with pytest.raises(FetchFailed) as refused:
            fetch(f"http://127.0.0.1:{redirecting.port}/", refuse=only_dot_one_is_public)
    finally:
        redirecting.close()
    assert "127.0.0.2" in str(refused.value)
    assert secret.hits == 0


def test_what_comes_back_is_never_quoted_in_an_error(servers) -> None:
    _public, secret = servers
    failing = Recorder("127.0.0.1", (500, {}, b"SECRET-INTERNAL-BODY"))
    try:
        fetched = fetch(f"http://127.0.0.1:{failing.port}/", allow_private=True)
    finally:
        failing.close()
    assert fetched.status == 500  # the caller reports the status, and only that
    with pytest.raises(FetchFailed) as too_big:
        fetch(f"http://127.0.0.2:{secret.port}/", allow_private=True, max_bytes=5)
    assert "SECRET" not in str(too_big.value)
