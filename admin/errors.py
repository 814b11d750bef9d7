"""Administration's errors; each carries its HTTP status."""

from __future__ import annotations

from core.errors import Conflict, Invalid, NotFound


class SettlementNotFound(NotFound):
    def __init__(self, settlement_id: object) -> None:
        super().__init__(f"no settlement {settlement_id}")


class SettlementFinalized(Conflict):
    def __init__(self, settlement_id: object) -> None:
        super().__init__(f"settlement {settlement_id} is finalized and can no longer change")


class NothingToSettle(Invalid):
    def __init__(self, period: str) -> None:
        super().__init__(
            f"nothing to settle in {period}: no usage sessions, charges or voucher redemptions"
        )


class PolicyNotFound(NotFound):
    def __init__(self, policy_id: object) -> None:
        super().__init__(f"no subsidy policy {policy_id}")


class NoPolicy(Invalid):
    def __init__(self) -> None:
        super().__init__(
            "no subsidy policy yet: create one (POST /api/v1/admin/policies "
            "or labshare settle --policy FILE)"
        )
