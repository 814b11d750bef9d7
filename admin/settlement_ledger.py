"""How settlements and payouts move money in billing's double-entry ledger.

Billing owns the ledger and its account kinds; we use them as they are:
- finalizing a settlement records what the programmes now owe each institution:
  debit `voucher_programme:sharing-reward` (the reward programme's spending) and
  `voucher_programme:voucher-reimbursement` (the voucher programmes' spending),
  credit `reimbursement:<institution>` (owed to the provider);
- paying out settles that debt: debit `reimbursement:<institution>`, credit `cash:network`.
"""

from __future__ import annotations

from sqlmodel import Session

from admin.models import Payout, Settlement, SettlementInstitution
from billing.ledger import AccountRef, entry_post
from billing.models import AccountKind

REWARD_PROGRAMME = "sharing-reward"
VOUCHER_PROGRAMME = "voucher-reimbursement"


def settlement_post(
    session: Session, *, settlement: Settlement, lines: list[SettlementInstitution]
) -> int | None:
    """Post a finalized settlement's rewards and reimbursements; the journal entry's id."""
    currency = settlement.currency
    postings: list[tuple[AccountRef, int]] = []
    for line in sorted(lines, key=lambda li: li.institution_id):
        owed = line.reward + line.voucher_reimbursement
        if owed:
            ref = AccountRef(
                AccountKind.reimbursement, currency, institution_id=line.institution_id
            )
            postings.append((ref, -owed))
    reward = sum(line.reward for line in lines)
    vouchers = sum(line.voucher_reimbursement for line in lines)
    postings.append(
        (AccountRef(AccountKind.voucher_programme, currency, name=REWARD_PROGRAMME), reward)
    )
    postings.append(
        (AccountRef(AccountKind.voucher_programme, currency, name=VOUCHER_PROGRAMME), vouchers)
    )
    entry = entry_post(
        session,
        ref=f"settlement:{settlement.id}:finalize",
        memo=f"sharing settlement {settlement.period} (settlement {settlement.id})",
        lines=postings,
    )
    return entry.id if entry is not None else None


def payout_post(session: Session, *, payout: Payout) -> int | None:
    """Post a payout: the institution is paid what it was owed."""
    entry = entry_post(
        session,
        ref=f"payout:{payout.id}",
        memo=f"settlement {payout.settlement_id} payout ({payout.status.value})",
        lines=[
            (
                AccountRef(
                    AccountKind.reimbursement, payout.currency, institution_id=payout.institution_id
                ),
                payout.amount,
            ),
            (AccountRef(AccountKind.cash, payout.currency), -payout.amount),
        ],
    )
    return entry.id if entry is not None else None
