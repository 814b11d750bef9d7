"""Page languages: English and Simplified Chinese, by the browser's Accept-Language or a cookie.

English text is the message key; `labshare.translations_zh` maps it to Chinese. A key
without a translation shows in English (a test lists the templates' keys that lack one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from labshare.translations_zh import ZH

LANG_COOKIE = "labshare_lang"
LANGUAGES = {"en": "English", "zh": "中文"}
DEFAULT = "en"
# The html lang attribute, and FullCalendar's locale, per language.
HTML_LANG = {"en": "en", "zh": "zh-CN"}
# English text is its own key, except the machine words pages show as they are stored
# (statuses, states): those read as words.
EN: dict[str, str] = {
    "pending": "Pending",
    "confirmed": "Confirmed",
    "cancelled": "Cancelled",
    "rejected": "Rejected",
    "displaced": "Displaced",
    "completed": "Completed",
    "no_show": "No-show",
    "draft": "Draft",
    "sent": "Sent",
    "paid": "Paid",
    "partially_paid": "Partly paid",
    "payment_failed": "Payment failed",
    "in_use": "In use",
    "idle": "Idle",
    "fault": "Fault",
    "offline": "Offline",
    "online": "Online",
    "active": "Active",
    "maintenance": "In maintenance",
    "retired": "Retired",
    "preview": "Preview",
    "finalized": "Finalized",
}
CATALOGS: dict[str, dict[str, str]] = {"en": EN, "zh": ZH}

Translate = Callable[..., str]


def _from_accept_language(header: str) -> str | None:
    """The supported language the browser prefers most (q-values respected), or None."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def pick_language(request: Request) -> str:
    """The cookie's choice if any, else the browser's preference, else English."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return _from_accept_language(request.headers.get("accept-language", "")) or DEFAULT


def translator(lang: str) -> Translate:
    """`_("Hello {name}", name=...)`: the text in `lang`, formatted with the arguments."""
    catalog = CATALOGS.get(lang, {})

    def _(text: str, **values: Any) -> str:
        message = catalog.get(text, text)
        return message.format(**values) if values else message

    return _
