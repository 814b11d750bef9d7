"""Billing's errors; each carries its HTTP status."""

from __future__ import annotations

from core.errors import Conflict, Forbidden, Invalid, NotFound


class PeriodClosed(Conflict):
    def __init__(self, period: str) -> None:
        super().__init__(f"billing period {period} is closed: its invoices are final")


class Retroactive(Conflict):
    """A price that would reach back under charges already made, or into a closed month."""


class RateOverlap(Conflict):
    """A rate card whose dates overlap another card for the same target and payer class."""


class InvoiceNotFound(NotFound):
    def __init__(self, invoice_id: object) -> None:
        super().__init__(f"no invoice {invoice_id}")


class NotYourInvoice(Forbidden):
    def __init__(self) -> None:
        super().__init__("this invoice belongs to another institution")


class NotYourLab(Forbidden):
    def __init__(self) -> None:
        super().__init__("only a manager of this lab may change its rates and charging policy")


class Unbalanced(Invalid):
    """A journal entry whose postings do not sum to zero."""
