"""Fetching a URL that a person gave us (a lab's calendar, a webhook endpoint) safely.

A lab manager's URL must not make the server read its own network (SSRF). So:

- the URL is http or https with a host name or a canonical address (no `0177.0.0.1`,
  `2130706433` or `0x7f.1`: those are refused, not guessed at);
- the host is resolved once per request, every address it resolves to must be public,
  and the connection goes to the address that was checked (pinned), with the name kept
  for the Host header and TLS; a second resolution, which a rebinding DNS server would
  answer with 127.0.0.1, never happens;
- redirects are followed by hand, at most a few, each hop checked and pinned the same way;
- what comes back never appears in an error message: a refusal names the status, the
  size or the time, not the content.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from core.errors import Invalid

MAX_URL = 2000
MAX_REDIRECTS = 5
# Ranges that `ipaddress` calls global but that lead back into private networks: NAT64
# (both prefixes) and 6to4 and Teredo relays carry an IPv4 address inside an IPv6 one.
_TUNNELS = tuple(
    ipaddress.ip_network(n)
    for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::ffff:0:0/96")
)
# Written this way, these are IPv4 addresses in disguise (octal, hex, or one number).
_HEXISH = set("0123456789abcdefx.")


class UnsafeUrl(Invalid):
    """A URL we will not fetch: the message says why (a 422 where a person typed it)."""


class FetchFailed(Exception):
    """The URL did not give us a body; the message says why in one line, never quoting it."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = address.packed
    if address in _TUNNELS[0] or address in _TUNNELS[1]:  # NAT64: the last 32 bits
        return ipaddress.IPv4Address(packed[-4:])
    return None


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why we do not connect to `address`, or None when it is a public internet address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return f"an address that carries {inner} inside it, NAT64 or 6to4 ({address})"
        if any(address in net for net in _TUNNELS):
            return f"an address in a tunnelling range ({address})"
    if not address.is_global or address.is_multicast or address.is_reserved:
        return f"a private or local address ({address})"
    return None


def normalise_http_url(url: str, *, field: str = "url") -> str:
    """An http(s) URL with a host we can check; UnsafeUrl (422) with the reason otherwise."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"{field}: at most {MAX_URL:,} characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl(f"{field}: give an http or https address")
    if parts.username or parts.password:
        raise UnsafeUrl(f"{field}: an address with a user name or password is not accepted")
    host = parts.hostname.lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if set(host) <= _HEXISH and any(c.isdigit() for c in host):
            raise UnsafeUrl(f"{field}: write an address as four decimal numbers (1.2.3.4)")
    try:
        httpx.URL(url)
        _ = parts.port  # a port that is not a number, or out of range
    except (httpx.InvalidURL, ValueError) as exc:
        raise UnsafeUrl(f"{field}: not a valid address ({str(exc)[:100]})")
    return url


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolves `host` to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


Refusal = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], str | None]


def checked_address(
    host: str, port: int, *, allow_private: bool, resolve: Resolver, refuse: Refusal = refusal
) -> str:
    """The one address to connect to: resolved once, every answer public (or allowed)."""
    literal = True
    try:
        answers = [str(ipaddress.ip_address(host))]
    except ValueError:
        literal = False
        try:
            answers = resolve(host, port)
        except OSError as exc:
            raise FetchFailed(f"cannot resolve {host}: {exc.strerror or exc}")
    if not answers:
        raise FetchFailed(f"{host} resolves to no address")
    if not allow_private:
        for answer in answers:
            why = refuse(ipaddress.ip_address(answer))
            if why:
                verb = "is" if literal else "resolves to"
                raise FetchFailed(f"{host} {verb} {why}; only internet addresses are fetched")
    return answers[0]


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes


class _PinnedTransport(httpx.HTTPTransport):
    """Connects to the address we checked, keeping the name for Host and TLS (SNI and the
    certificate check)."""

    def __init__(self, address: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.address = address

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # The Host header was set from the name when the request was built; only the
        # address we connect to changes.
        host = request.url.host
        request.url = request.url.copy_with(host=self.address)
        request.extensions = {**request.extensions, "sni_hostname": host}
        return super().handle_request(request)


def fetch(
    url: str,
    *,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = 2 * 1024 * 1024,
    allow_private: bool = False,
    follow_redirects: bool = True,
    resolve: Resolver = system_resolver,
    refuse: Refusal = refusal,
) -> Fetched:
    """Send one request to a URL a person gave us, within `timeout` seconds and `max_bytes`
    of body; redirects followed (GET only), each hop checked. FetchFailed says why."""
    deadline = time.monotonic() + timeout
    current = normalise_http_url(url)
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = checked_address(
            host, port, allow_private=allow_private, resolve=resolve, refuse=refuse
        )
        left = max(deadline - time.monotonic(), 0.1)
        transport = _PinnedTransport(address, retries=0)
        try:
            with (
                httpx.Client(transport=transport, timeout=left, follow_redirects=False) as client,
                client.stream(method, current, content=content, headers=headers) as response,
            ):
                if follow_redirects and response.is_redirect and method == "GET":
                    location = response.headers.get("location", "")
                    try:
                        current = normalise_http_url(urljoin(current, location), field="redirect")
                    except Invalid as exc:
                        raise FetchFailed(exc.message)
                    continue
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchFailed(
                        f"the answer is {int(declared):,} bytes; at most {max_bytes:,}"
                    )
                chunks: list[bytes] = []
                size = 0
                # Counted after decompression, so a small gzip cannot grow past the cap.
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchFailed(f"the answer is larger than {max_bytes:,} bytes")
                    if time.monotonic() > deadline:
                        raise FetchFailed(f"the answer took longer than {timeout:g} s")
                    chunks.append(chunk)
                return Fetched(
                    current,
                    response.status_code,
                    response.headers.get("content-type", ""),
                    b"".join(chunks),
                )
        except httpx.HTTPError as exc:
            # The exception's class says what went wrong; its text may carry what came back.
            raise FetchFailed(f"{type(exc).__name__} from {host}")
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")
