"""Money as an integer of minor units plus an ISO 4217 currency, as Stripe writes it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from core.settings import CURRENCY_EXPONENTS


class Money(BaseModel):
    amount: int = Field(description="Integer amount in the currency's minor unit")
    currency: str = Field(description="ISO 4217, lower case")

    @field_validator("currency")
    @classmethod
    def _known(cls, value: str) -> str:
        value = value.lower()
        if value not in CURRENCY_EXPONENTS:
            raise ValueError(f"unknown currency {value!r}")
        return value


def format_money(amount: int, currency: str) -> str:
    """`12345, "cny"` -> `"123.45 CNY"`."""
    exponent = CURRENCY_EXPONENTS[currency.lower()]
    if exponent == 0:
        return f"{amount} {currency.upper()}"
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{units:,}.{minor:0{exponent}d} {currency.upper()}"


def round_to_step(amount: int, step: int) -> int:
    """Round half up to a multiple of `step` minor units (step >= 1)."""
    if step <= 1:
        return amount
    return ((amount + step // 2) // step) * step


def largest_remainder_int(
    numerators: list[tuple[Any, int]], denominator: int, total: int
) -> dict[Any, int]:
    """Split `total` in proportion to `numerators / denominator` into integers that sum to
    it: each key's floor, then one more unit to the largest remainders (ties by key)."""
    floors = {key: num // denominator for key, num in numerators}
    left = total - sum(floors.values())
    if left > 0:
        order = sorted(numerators, key=lambda kn: (-(kn[1] % denominator), kn[0]))
        for key, _ in order[:left]:
            floors[key] += 1
    return floors
