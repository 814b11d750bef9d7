"""Every form the demo's people see, each field in turn given what an attacker or a slip of
the hand sends (a NUL, NaN, a number past 64 bits, 3,000 characters, a date that is not):
never a 5xx, on both databases.

The pages are not in the OpenAPI schema, so the API's fuzzer (test_schema_fuzz.py) never
reaches them; this walks them as a browser would, from the home page, following links.
It found rate cards, service prices and the subsidy policy answering "NaN" with a 500,
and the qualification grant a bad email."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from instruments.seed import DEMO_LOGINS, DEMO_PASSWORD
from labshare.demo import seed_database

HOSTILE = ("a\x00b", "NaN", "99999999999999999999", "x" * 3000, "2026-02-30T25:61", "-1", "")
# Pages reached per route (ids aside) and in all: enough to meet every form once or twice.
PER_ROUTE, PAGES = 2, 150
# Forms that end the session the walk goes on with.
LEAVE = ("/signout", "/me/password")
_TOKEN = re.compile(r'name="csrf-token" content="([0-9a-f]+)"')


class _Page(HTMLParser):
    """A page's links, and its POST forms with the values a browser would send."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._fields: dict[str, str] | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "form" and a.get("method", "get").lower() == "post":
            self._fields = {}
            self.forms.append((a.get("action", ""), self._fields))
        elif self._fields is None or not name:
            return
        elif tag in ("input", "textarea") and a.get("type") not in ("submit", "button"):
            unchecked = a.get("type") in ("checkbox", "radio") and "checked" not in a
            if not (unchecked and name in self._fields):
                self._fields[name] = a.get("value", "")
        elif tag == "select":
            self._select = name
            self._fields[name] = ""
        elif tag == "option" and self._select and not self._fields.get(self._select):
            self._fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._fields = None
        elif tag == "select":
            self._select = None


def _route(path: str) -> str:
    return re.sub(r"/\d+", "/N", urlsplit(path).path)


def _walk(browser: TestClient) -> tuple[list[str], dict[str, tuple[str, dict[str, str], str]]]:
    """The pages reached from the home page, and one of each form met (by its route)."""
    seen: list[str] = []
    queue, per_route = ["/"], dict[str, int]()
    forms: dict[str, tuple[str, dict[str, str], str]] = {}
    while queue and len(seen) < PAGES:
        path = queue.pop(0)
        route = _route(path)
        if path in seen or per_route.get(route, 0) >= PER_ROUTE:
            continue
        per_route[route] = per_route.get(route, 0) + 1
        seen.append(path)
        page = browser.get(path)
        assert page.status_code < 500, (path, page.status_code)
        if "text/html" not in page.headers.get("content-type", ""):
            continue
        parsed = _Page()
        parsed.feed(page.text)
        for action, fields in parsed.forms:
            target = urlsplit(urljoin(f"http://testserver{path}", action)).path
            if not target.startswith(LEAVE):
                forms.setdefault(_route(target), (target, fields, path))
        for href in parsed.links:
            link = urlsplit(urljoin(f"http://testserver{path}", href))
            if link.netloc == "testserver" and not link.path.startswith(("/static", *LEAVE)):
                queue.append(link.path + (f"?{link.query}" if link.query else ""))
    return seen, forms


def test_every_form_and_query_survives_hostile_values(engine: Engine) -> None:
    from labshare.app import create_app

    seed_database(engine, instruments=40)
    app = create_app()
    failures: list[tuple[str, str, str, str, int]] = []
    posted = 0
    with TestClient(app, raise_server_exceptions=False):
        for email, _role, _about in DEMO_LOGINS:
            browser = TestClient(app, raise_server_exceptions=False)
            token = _TOKEN.search(browser.get("/signin").text)
            assert token
            data = {"email": email, "password": DEMO_PASSWORD, "csrf_token": token.group(1)}
            signed_in = browser.post("/signin", data=data, follow_redirects=False)
            assert signed_in.status_code == 303, signed_in.text
            pages, forms = _walk(browser)
            assert len(forms) >= 5, (email, sorted(forms))
            for j, (target, fields, page) in enumerate(forms.values()):
                csrf = _TOKEN.search(browser.get(page).text)
                names = [n for n in fields if n != "csrf_token"]
                for i, name in enumerate(names):
                    for value in (HOSTILE[(i + j) % len(HOSTILE)], HOSTILE[(i + j + 3) % 7]):
                        sent = {**fields, name: value, "csrf_token": csrf.group(1) if csrf else ""}
                        answer = browser.post(target, data=sent, headers={"HX-Request": "true"})
                        posted += 1
                        if answer.status_code >= 500:
                            failures.append((email, target, name, value[:12], answer.status_code))
            for path in pages:  # each query parameter of a page, made hostile in turn
                split = urlsplit(path)
                params = parse_qsl(split.query)
                for k, (key, _value) in enumerate(params):
                    hostile = [
                        (p, HOSTILE[k % 3] if n == k else v) for n, (p, v) in enumerate(params)
                    ]
                    answer = browser.get(f"{split.path}?{urlencode(hostile)}")
                    if answer.status_code >= 500:
                        failures.append((email, split.path, key, HOSTILE[k % 3][:12], 500))
    assert posted > 100
    assert not failures, failures
