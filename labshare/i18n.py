"""Page languages: English and Simplified Chinese, by the browser's Accept-Language or a cookie.

English text is the message key; `labshare.translations_zh` maps it to Chinese. A key
without a translation shows in English (a test lists the templates' keys that lack one).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from functools import cache
from typing import Any

from fastapi import Request

from labshare.translations_zh import ZH
from labshare.translations_zh_messages import MESSAGES_ZH

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
    "approved": "Approved",
    "cancelled": "Cancelled",
    "rejected": "Rejected",
    "displaced": "Displaced",
    "submitted": "Submitted",
    "reviewed": "Reviewed",
    "noticed": "On notice",
    "expired": "Expired",
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
    "internal": "Internal",
    "academic": "Academic",
    "company": "Company",
    "small_company": "Small company",
    "finalized": "Finalized",
    "out_of_hours": "Out of hours",
    "independent": "Independent",
    "supervised": "Supervised",
    "delivered": "Delivered",
    "failed": "Failed",
    "open": "Open",
    "scheduled": "Scheduled",
    "done": "Done",
    "declined": "Declined",
    "withdrawn": "Withdrawn",
    "induction": "Safety induction",
    "instrument": "Instrument",
}
CATALOGS: dict[str, dict[str, str]] = {"en": EN, "zh": ZH}
# The services' messages (errors), matched by pattern: `labshare.translations_zh_messages`.
MESSAGES: dict[str, dict[str, str]] = {"zh": MESSAGES_ZH}

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


def _unescape(text: str) -> str:
    return text.replace("{{", "{").replace("}}", "}")


@cache
def _exact(lang: str) -> dict[str, str]:
    """The messages without values, as they read (a key's `{{` is a literal brace)."""
    return {
        _unescape(english): _unescape(translated)
        for english, translated in MESSAGES.get(lang, {}).items()
        if not any(field is not None for _, field, _, _ in string.Formatter().parse(english))
    }


@cache
def _patterns(lang: str) -> list[tuple[re.Pattern[str], str]]:
    """Each message with values as a pattern, the most literal text first, so that
    "no booking {0}" is tried before "{0}: {1}"."""
    out: list[tuple[int, re.Pattern[str], str]] = []
    for english, translated in MESSAGES.get(lang, {}).items():
        parts = list(string.Formatter().parse(english))
        if not any(field is not None for _, field, _, _ in parts):
            continue
        regex = "".join(
            re.escape(literal) + ("(.+?)" if field is not None else "")
            for literal, field, _, _ in parts
        )
        literal_size = sum(len(literal) for literal, _, _, _ in parts)
        out.append((literal_size, re.compile(f"^{regex}$", re.S), translated))
    out.sort(key=lambda item: -item[0])
    return [(pattern, translated) for _, pattern, translated in out]


def translate_message(lang: str, text: str, *, depth: int = 2) -> str:
    """A service's message (English, with its values filled in) in `lang`: the message
    itself if known, else the first pattern it matches, with each value translated too
    when it is a known word or message. Unknown text stays as it is."""
    messages = MESSAGES.get(lang)
    if not messages or not text:
        return text
    known = _exact(lang).get(text) or CATALOGS.get(lang, {}).get(text)
    if known is not None:
        return known
    if depth == 0:
        return text
    for pattern, translated in _patterns(lang):
        found = pattern.match(text)
        if found:
            values = [translate_message(lang, v, depth=depth - 1) for v in found.groups()]
            return translated.format(*values)
    return text


def translator(lang: str) -> Translate:
    """`_("Hello {name}", name=...)`: the text in `lang`, formatted with the arguments. Text
    no template knows, a service's message, is matched against the messages' patterns."""
    catalog = CATALOGS.get(lang, {})

    def _(text: str, **values: Any) -> str:
        message = catalog.get(text)
        if message is None:
            return translate_message(lang, text) if not values else text.format(**values)
        return message.format(**values) if values else message

    return _
