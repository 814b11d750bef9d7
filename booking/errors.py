"""The booking domain's errors; each carries its HTTP status and, for a 409, a way out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import Conflict, Forbidden, Invalid, NotFound, PreconditionFailed


@dataclass(frozen=True)
class InTheWay:
    """One conflict as the person asking reads it: what, when, and whether it is a booking
    of their own. Pages word it; the API's `conflicts` never says whose."""

    kind: str  # booking, blackout or closed
    start: datetime
    end: datetime
    mine: bool = False


class SlotUnavailable(Conflict):
    """The time is taken: says by what (no one's identity) and offers alternatives."""

    def __init__(
        self,
        message: str,
        *,
        conflicts: list[dict[str, Any]],
        alternatives: list[dict[str, Any]] | None = None,
        in_the_way: list[InTheWay] | None = None,
        raced: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message, conflicts=conflicts, alternatives=alternatives or [], **extra)
        self.in_the_way = in_the_way or []
        # Taken between our check and our insert (the database refused the overlap).
        self.raced = raced


class RuleViolation(Invalid):
    """A request the instrument's rules do not allow (grid, length, lead time, quota...)."""


class AlreadyStarted(Conflict):
    """The booked time has begun: the booker can no longer cancel it (the lab still can)."""

    def __init__(self) -> None:
        super().__init__(
            "this booking has already started, so it can no longer be cancelled; "
            "ask the lab if something went wrong"
        )


class NotQualified(Forbidden):
    def __init__(
        self, message: str = "this instrument needs a qualification you do not hold; ask its lab"
    ) -> None:
        super().__init__(message)


class BookingNotFound(NotFound):
    def __init__(self, booking_id: int) -> None:
        super().__init__(f"no booking {booking_id}")


class WaitlistEntryNotFound(NotFound):
    def __init__(self, entry_id: int) -> None:
        super().__init__(f"no waitlist entry {entry_id}")


class BlackoutNotFound(NotFound):
    def __init__(self, blackout_id: int) -> None:
        super().__init__(f"no blackout {blackout_id}")


class NotAllowed(Forbidden):
    """Signed in, but not the owner or a manager of the instrument's lab."""


class StaleVersion(PreconditionFailed):
    def __init__(self, current: str) -> None:
        super().__init__(
            "the booking changed since you read it; fetch it again", current_etag=current
        )


class IfMatchRequired(PreconditionFailed):
    status_code = 428

    def __init__(self) -> None:
        super().__init__("send If-Match with the booking's ETag to change it")


class IdempotencyMismatch(Invalid):
    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used for a different request; use a new key")
