# ruff: noqa: RUF001  (the pages write time ranges with an en dash)
"""Every text the pages show has its Simplified Chinese, and placeholders survive translation."""

from __future__ import annotations

import re
import string
from pathlib import Path

from booking.models import BookingStatus, WaitlistStatus
from instruments.models import InstrumentStatus, PayerClass, RateUnit
from labshare import i18n
from labshare.pages.web import FLASH
from labshare.translations_zh import ZH

TEMPLATES = Path(i18n.__file__).resolve().parent / "templates"
LITERAL = re.compile(r"""_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
# Values the templates translate by variable: statuses, kinds, days, units.
DYNAMIC = (
    [s.value for s in InstrumentStatus]
    + [s.value for s in BookingStatus]
    + [s.value for s in WaitlistStatus]
    + [p.value for p in PayerClass]
    + [u.value for u in RateUnit]
    + ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    + ["booking", "blackout", "closed", "imported", "idle", "in_use", "fault", "offline"]
    + ["online", "unknown", "walk_up", "booked", "preview", "finalized", "internal"]
    + ["draft", "sent", "paid", "payment_failed"]
)


def template_keys() -> set[str]:
    keys = set()
    for path in TEMPLATES.rglob("*.html"):
        for double, single in LITERAL.findall(path.read_text()):
            keys.add(double or single)
    return keys


def test_every_page_text_has_chinese() -> None:
    wanted = template_keys() | set(FLASH.values()) | set(DYNAMIC)
    missing = sorted(k for k in wanted if k not in ZH)
    assert not missing, "no Chinese for:\n" + "\n".join(missing)


def test_translations_keep_their_placeholders() -> None:
    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    for english, chinese in ZH.items():
        assert fields(english) == fields(chinese), english


def test_language_choice() -> None:
    class Fake:
        def __init__(self, header: str = "", cookie: str | None = None) -> None:
            self.headers = {"accept-language": header}
            self.cookies = {i18n.LANG_COOKIE: cookie} if cookie else {}

    pick = i18n.pick_language
    assert pick(Fake("zh-CN,zh;q=0.9,en;q=0.8")) == "zh"  # type: ignore[arg-type]
    assert pick(Fake("en-GB,en;q=0.9,zh;q=0.8")) == "en"  # type: ignore[arg-type]
    assert pick(Fake("fr-FR, zh-TW;q=0.5")) == "zh"  # type: ignore[arg-type]
    assert pick(Fake("de, fr")) == "en"  # type: ignore[arg-type]
    assert pick(Fake("zh;q=0, en")) == "en"  # type: ignore[arg-type]
    assert pick(Fake("en", cookie="zh")) == "zh"  # type: ignore[arg-type]
    assert pick(Fake("zh", cookie="xx")) == "zh"  # type: ignore[arg-type]
    assert i18n.translator("zh")("Booked.") == "预约成功。"
    assert i18n.translator("en")(
        "Slots of {step} minutes; {min}–{max} minutes per booking", step=30, min=30, max=60
    ).startswith("Slots of 30")
