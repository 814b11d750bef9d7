"""Every kind of page the demo's people reach, checked by axe-core (the engine behind most
accessibility audits) in the real browser: no violation.

One page per route (ids aside) over all five demo people and a visitor, so each template
is checked once with real data, and the researcher's again on a phone. axe found, when this test was written: the calendar's
arrow icons as images without a name, action columns with empty headers, a link inside a
folding summary, and on a phone an invoice's table that scrolled but took no focus."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy.engine import Engine

from instruments.seed import DEMO_LOGINS, DEMO_PASSWORD
from labshare.demo import seed_database

axe_sync = pytest.importorskip("axe_playwright_python.sync_playwright")

# Routes walked per person; those already checked for someone else are not checked again.
PER_PERSON = 40
SKIP = ("/static", "/signout", "/docs", "/api", "/ical", "/redoc")
FILES = (".csv", ".ics", ".pdf")
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                         "has_touch": True}  # fmt: skip


def _route(path: str) -> str:
    return re.sub(r"/\d+", "/N", urlsplit(path).path)


def test_no_page_has_an_accessibility_violation(
    browser,
    live_server: str,
    engine: Engine,  # type: ignore[no-untyped-def]
) -> None:
    seed_database(engine, instruments=40)
    axe = axe_sync.Axe()
    checked: set[tuple[int, str]] = set()
    violations: list[tuple[str, str, str, str]] = []
    # Each person on a desktop; the researcher once more on a phone, where wide tables
    # scroll inside their cards (and so must take keyboard focus).
    walks = [(email, DESKTOP) for email in [None, *(login[0] for login in DEMO_LOGINS)]]
    walks.append((DEMO_LOGINS[0][0], PHONE))
    for email, screen in walks:
        context = browser.new_context(**screen)
        page = context.new_page()
        if email:
            page.goto(f"{live_server}/signin")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", DEMO_PASSWORD)
            page.press("input[name=password]", "Enter")
            page.wait_for_url(f"{live_server}/")
        queue, visited, routes = ["/"], set(), set()
        while queue and len(routes) < PER_PERSON:
            path = queue.pop(0)
            if _route(path) in routes or path in visited:
                continue
            visited.add(path)
            routes.add(_route(path))
            answer = page.goto(live_server + path)
            if answer is None or "text/html" not in answer.headers.get("content-type", ""):
                continue
            if page.locator("#calendar").count():  # drawn by script once its data is in
                page.locator(".fc-timegrid-col").first.wait_for()
            if (screen["viewport"]["width"], _route(path)) not in checked:  # seen already
                checked.add((screen["viewport"]["width"], _route(path)))
                for found in axe.run(page).response["violations"]:
                    node = found["nodes"][0]
                    violations.append((path, found["id"], str(node["target"]), node["html"][:160]))
            for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                link = urlsplit(urljoin(live_server + path, href))
                ours = link.netloc == urlsplit(live_server).netloc
                if ours and not link.path.startswith(SKIP) and not link.path.endswith(FILES):
                    queue.append(link.path + (f"?{link.query}" if link.query else ""))
        context.close()
    assert len(checked) >= 30, sorted(checked)
    assert not violations, violations
