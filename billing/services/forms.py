"""A service's request form: the fields a lab asks for, and the check of a requester's
answers against them. Every refusal names the field, as `answers.<name>: ...`."""

from __future__ import annotations

import math
import re
from typing import Any

from core.errors import Invalid

FIELD_TYPES = ("text", "number", "choice", "file")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_FIELDS = 30
MAX_TEXT = 2000


def form_checked(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lab's form, normalised: names unique and plain, types known, choices given."""
    if len(fields) > MAX_FIELDS:
        raise Invalid(f"form: at most {MAX_FIELDS} fields")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(fields):
        name = str(raw.get("name", "")).strip()
        where = f"form[{i}]"
        if not NAME.match(name):
            raise Invalid(f"{where}.name: lower-case letters, digits and _ (at most 40)")
        if name in seen:
            raise Invalid(f"{where}.name: {name} is used twice")
        seen.add(name)
        kind = raw.get("type", "text")
        if kind not in FIELD_TYPES:
            raise Invalid(f"{where}.type: one of {', '.join(FIELD_TYPES)}")
        choices = [str(c).strip()[:100] for c in raw.get("choices") or [] if str(c).strip()]
        if kind == "choice" and not choices:
            raise Invalid(f"{where}.choices: a choice field lists its choices")
        out.append(
            {
                "name": name,
                "label": str(raw.get("label") or name).strip()[:200],
                "type": kind,
                "required": bool(raw.get("required", False)),
                "choices": choices if kind == "choice" else [],
            }
        )
    return out


def answers_checked(form: list[dict[str, Any]], answers: dict[str, Any]) -> dict[str, Any]:
    """The answers to keep: each known field's value of the right type. Required fields
    must be answered, except file fields, which are checked on submission (the file comes
    after the draft)."""
    unknown = sorted(set(answers) - {f["name"] for f in form})
    if unknown:
        raise Invalid(f"answers.{unknown[0]}: the form has no such field")
    out: dict[str, Any] = {}
    for field in form:
        name, kind = field["name"], field["type"]
        value = answers.get(name)
        if kind == "file":
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            if field["required"]:
                raise Invalid(f"answers.{name}: required")
            continue
        if kind == "number":
            number = _number(value)
            if number is None:
                raise Invalid(f"answers.{name}: a number")
            out[name] = number
        elif kind == "choice":
            if str(value) not in field["choices"]:
                raise Invalid(f"answers.{name}: one of {', '.join(field['choices'])}")
            out[name] = str(value)
        else:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise Invalid(f"answers.{name}: text")
            text = str(value).strip()
            if "\x00" in text:
                raise Invalid(f"answers.{name}: text without NUL characters")
            if len(text) > MAX_TEXT:
                raise Invalid(f"answers.{name}: at most {MAX_TEXT} characters of text")
            out[name] = text
    return out


def missing_files(form: list[dict[str, Any]], attached: set[str]) -> list[str]:
    """The required file fields with nothing attached to them."""
    return [f["name"] for f in form if f["type"] == "file" and f["required"]
            and f["name"] not in attached]  # fmt: skip


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number: float | int = value
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    if isinstance(number, float):
        if not math.isfinite(number):
            return None
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
    return number
