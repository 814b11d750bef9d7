"""China's unified social credit code (统一社会信用代码, GB 32100-2015): the 18-character
registration number every company carries, checked by its last character.

The code is 17 characters of a 31-symbol alphabet (digits and capitals without I, O, S,
V, Z), then a check character: with weights 3**i mod 31 over the first 17, the check is
the symbol at (31 - sum mod 31) mod 31. Positions 3-8 are the administrative division
(digits). A typing slip in any one character changes the check, so a code that passes is
one that was copied correctly, not one that is registered: the bureau's reviewer still
looks it up.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
LENGTH = 18


def normalise(code: str) -> str:
    """As people type it: spaces and dashes dropped, upper case."""
    return code.replace(" ", "").replace("-", "").upper()


def check_character(first17: str) -> str:
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` (normalised) is not a unified social credit code, or None if it is one."""
    if len(code) != LENGTH:
        return f"a unified social credit code has {LENGTH} characters, not {len(code)}"
    wrong = sorted({c for c in code if c not in ALPHABET})
    if wrong:
        return f"a unified social credit code cannot hold {', '.join(wrong)}"
    if not code[2:8].isdigit():
        return "characters 3 to 8 of a unified social credit code are the area's six digits"
    if check_character(code[:17]) != code[17]:
        return "the unified social credit code's last character does not match: check for a typing slip"
    return None
