# ruff: noqa: RUF001  (the pages write time ranges with an en dash)
"""Every text the pages show has its Simplified Chinese, and placeholders survive translation."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

from booking.models import BookingStatus, WaitlistStatus
from instruments.models import InstrumentStatus, PayerClass, RateUnit
from labshare import i18n
from labshare.pages.admin import ACTION_WORDS
from labshare.pages.kiosk import KIND_WORDS
from labshare.pages.web import FLASH
from labshare.translations_zh import ZH
from labshare.translations_zh_messages import MESSAGES_ZH

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
    + ["out_of_hours", "independent", "supervised", "delivered", "failed", "open"]
    + ["scheduled", "done", "declined", "withdrawn", "induction", "instrument"]
    + list(ACTION_WORDS.values())
    + list(KIND_WORDS.values())
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


# Where a message never reaches a page: start-up settings, the mailer and the gateway
# protocol (logged for operators), Stripe's webhook answers, the seed and the ledger's
# own invariants (a bug, not a person's mistake).
NOT_SHOWN = {
    "core/settings.py",
    "core/db.py",
    "booking/notifications/mailer.py",
    "booking/notifications/service.py",
    "telemetry/ingest.py",
    "telemetry/simulate.py",
    "telemetry/protocol.py",
    "billing/webhooks.py",
    "billing/ledger.py",
    "instruments/seed.py",
}
DOMAINS = ("booking", "instruments", "billing", "admin", "telemetry", "core", "labshare/pages")
NOT_MESSAGES = {"fail", "RuntimeError", "ProtocolError", "AssertionError", "TypeError", "KeyError"}


def _template(node: ast.expr) -> str | None:
    """A raised message as a catalog key: f-string values become {0}, {1}..."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        parts, n = [], 0
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value).replace("{", "{{").replace("}", "}}"))
            else:
                parts.append(f"{{{n}}}")
                n += 1
        return "".join(parts)
    return None


def service_messages() -> dict[str, str]:
    """Every message the domains raise (or an error class builds), with where it is."""
    root = TEMPLATES.parents[1]
    found: dict[str, str] = {}
    for package in DOMAINS:
        for path in sorted((root / package).rglob("*.py")):
            where = str(path.relative_to(root))
            if where in NOT_SHOWN:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                message: ast.expr | None = None
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "__init__"
                    and isinstance(node.func.value, ast.Call)
                    and getattr(node.func.value.func, "id", "") == "super"
                    and node.args
                ):
                    message = node.args[0]
                elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
                    if name not in NOT_MESSAGES and node.exc.args:
                        message = node.exc.args[0]
                key = _template(message) if message is not None else None
                if key is not None:
                    found.setdefault(key, f"{where}:{node.lineno}")
    return found


def test_every_service_message_has_chinese() -> None:
    found = service_messages()
    assert len(found) > 150  # the scan sees the domains' raises
    missing = sorted(f"{where}: {key!r}" for key, where in found.items() if key not in MESSAGES_ZH)
    assert not missing, "no Chinese (labshare/translations_zh_messages.py) for:\n" + "\n".join(
        missing
    )


def test_a_service_message_reads_in_chinese_with_its_values() -> None:
    _ = i18n.translator("zh")
    assert _("the instrument's shortest booking is 60 minutes") == "此仪器最短预约 60 分钟"
    assert _("no category with the code xrd") == "没有编号为 xrd 的类别"  # the value, too
    assert _("the instrument is in maintenance and cannot be booked") == "仪器正在维护，无法预约"
    assert _('send the calendar as text/calendar, or JSON {"url": ...} as application/json') == (
        '请以 text/calendar 发送日历，或以 application/json 发送 JSON {"url": ...}'
    )
    assert _("something no catalog knows") == "something no catalog knows"
    assert i18n.translator("en")("no booking 7") == "no booking 7"
