"""The double-entry ledger: every movement of money is a journal entry whose postings sum to zero.

Debits are positive, credits negative. Entries and postings are never updated or
deleted (database triggers refuse it); a correction is a new, reversing entry.
On PostgreSQL a deferred constraint trigger also refuses, at commit, any entry
that does not balance, however its postings were written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from billing.errors import Unbalanced
from billing.models import AccountKind, JournalEntry, LedgerAccount, Posting
from core.errors import NotFound
from instruments.models import Institution


@dataclass(frozen=True)
class AccountRef:
    """An account by what it is; resolved (and created) on first use."""

    kind: AccountKind
    currency: str
    institution_id: int | None = None
    programme_id: int | None = None
    name: str = "network"  # for accounts of no institution or programme (cash:stripe)

    def code(self, session: Session) -> str:
        if self.institution_id is not None:
            institution = session.get(Institution, self.institution_id)
            owner = institution.code if institution else str(self.institution_id)
        elif self.programme_id is not None:
            owner = f"programme-{self.programme_id}"
        else:
            owner = self.name
        return f"{self.kind.value}:{owner}:{self.currency}"


def account_get_or_create(session: Session, ref: AccountRef) -> LedgerAccount:
    """The ledger account for `ref`, created the first time it is needed."""
    code = ref.code(session)
    account = session.exec(select(LedgerAccount).where(LedgerAccount.code == code)).first()
    if account is not None:
        return account
    account = LedgerAccount(
        code=code,
        kind=ref.kind,
        currency=ref.currency,
        institution_id=ref.institution_id,
        programme_id=ref.programme_id,
    )
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:  # another transaction created it first
        account = session.exec(select(LedgerAccount).where(LedgerAccount.code == code)).one()
    return account


def _accounts_for(session: Session, refs: set[AccountRef]) -> dict[AccountRef, LedgerAccount]:
    """Resolve many account refs with a few queries, creating the missing accounts."""
    ids = {r.institution_id for r in refs if r.institution_id is not None}
    codes_of = (
        dict(
            session.exec(
                select(Institution.id, Institution.code).where(col(Institution.id).in_(ids))
            ).all()
        )
        if ids
        else {}
    )

    def code(ref: AccountRef) -> str:
        if ref.institution_id is not None:
            owner = codes_of.get(ref.institution_id, str(ref.institution_id))
        elif ref.programme_id is not None:
            owner = f"programme-{ref.programme_id}"
        else:
            owner = ref.name
        return f"{ref.kind.value}:{owner}:{ref.currency}"

    by_code = {code(r): r for r in refs}
    found = {
        a.code: a
        for a in session.exec(
            select(LedgerAccount).where(col(LedgerAccount.code).in_(list(by_code)))
        )
    }
    missing = [c for c in by_code if c not in found]
    for c in missing:
        ref = by_code[c]
        found[c] = account_get_or_create(session, ref)
    return {ref: found[c] for c, ref in by_code.items()}


def entries_post_many(
    session: Session, entries: list[tuple[str, str, list[tuple[AccountRef, int]], int | None]]
) -> int:
    """Post many balanced entries (ref, memo, lines, invoice id) with a few statements;
    refs already posted are skipped. Returns how many entries were posted."""
    refs = [ref for ref, _m, _l, _i in entries]
    done: set[str] = set()
    for start in range(0, len(refs), 500):
        done.update(
            session.exec(
                select(JournalEntry.ref).where(col(JournalEntry.ref).in_(refs[start : start + 500]))
            ).all()
        )
    todo = [e for e in entries if e[0] not in done]
    for _ref, _memo, lines, _invoice in todo:
        check_balanced(lines)
    accounts = _accounts_for(session, {r for _e, _m, lines, _i in todo for r, _a in lines})
    rows = [
        JournalEntry(ref=ref, memo=memo[:500], invoice_id=invoice)
        for ref, memo, _l, invoice in todo
    ]
    session.add_all(rows)
    session.flush()
    postings: list[dict[str, object]] = []
    for row, (_ref, _memo, lines, _invoice) in zip(rows, todo, strict=True):
        merged: dict[int, tuple[int, str]] = {}
        for ref, amount in lines:
            account_id = accounts[ref].id or 0
            before, _c = merged.get(account_id, (0, ref.currency))
            merged[account_id] = (before + amount, ref.currency)
        postings.extend(
            {"entry_id": row.id, "account_id": a, "amount": amount, "currency": currency}
            for a, (amount, currency) in merged.items()
            if amount != 0
        )
    if postings:
        session.execute(insert(Posting), postings)
    return len(rows)


def check_balanced(lines: Iterable[tuple[AccountRef, int]]) -> None:
    """Unbalanced (422) unless the amounts sum to zero in every currency."""
    sums: dict[str, int] = defaultdict(int)
    for ref, amount in lines:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise Unbalanced(f"amount {amount!r} is not an integer of minor units")
        sums[ref.currency] += amount
    off = {currency: total for currency, total in sums.items() if total != 0}
    if off:
        raise Unbalanced(f"journal entry does not balance: {off}")


def entry_post(
    session: Session,
    *,
    ref: str,
    memo: str,
    lines: list[tuple[AccountRef, int]],
    invoice_id: int | None = None,
) -> JournalEntry | None:
    """Post one balanced entry; the same `ref` posts once (returns the existing entry).

    Zero amounts are dropped; an entry with nothing left posts nothing (None).
    """
    existing = session.exec(select(JournalEntry).where(JournalEntry.ref == ref)).first()
    if existing is not None:
        return existing
    check_balanced(lines)
    resolved = [(account_get_or_create(session, r), r.currency, a) for r, a in lines if a != 0]
    return _post(session, ref=ref, memo=memo, lines=resolved, invoice_id=invoice_id)


def _post(
    session: Session,
    *,
    ref: str,
    memo: str,
    lines: list[tuple[LedgerAccount, str, int]],
    invoice_id: int | None,
    reverses_id: int | None = None,
) -> JournalEntry | None:
    merged: dict[int, tuple[int, str]] = {}
    for account, currency, amount in lines:
        assert account.id is not None
        before, _ = merged.get(account.id, (0, currency))
        merged[account.id] = (before + amount, currency)
    merged = {k: v for k, v in merged.items() if v[0] != 0}
    if not merged:
        return None
    sums: dict[str, int] = defaultdict(int)
    for amount, currency in merged.values():
        sums[currency] += amount
    if any(sums.values()):
        raise Unbalanced(f"journal entry does not balance: {dict(sums)}")
    entry = JournalEntry(ref=ref, memo=memo[:500], invoice_id=invoice_id, reverses_id=reverses_id)
    session.add(entry)
    session.flush()
    assert entry.id is not None
    session.add_all(
        Posting(entry_id=entry.id, account_id=account_id, amount=amount, currency=currency)
        for account_id, (amount, currency) in merged.items()
    )
    session.flush()
    return entry


def entry_reverse(session: Session, *, entry_id: int, memo: str) -> JournalEntry | None:
    """Correct an entry by posting its mirror image; the original stays as it was."""
    original = session.get(JournalEntry, entry_id)
    if original is None:
        raise NotFound(f"no journal entry {entry_id}")
    ref = f"reverse:{entry_id}"
    existing = session.exec(select(JournalEntry).where(JournalEntry.ref == ref)).first()
    if existing is not None:
        return existing
    rows = session.exec(
        select(Posting, LedgerAccount)
        .join(LedgerAccount, col(LedgerAccount.id) == Posting.account_id)
        .where(Posting.entry_id == entry_id)
    ).all()
    lines = [(account, posting.currency, -posting.amount) for posting, account in rows]
    return _post(
        session,
        ref=ref,
        memo=memo,
        lines=lines,
        invoice_id=original.invoice_id,
        reverses_id=entry_id,
    )


def balances(session: Session) -> list[tuple[str, str, int]]:
    """Every account's balance: (code, kind, balance), debits positive."""
    rows = session.exec(
        select(LedgerAccount.code, LedgerAccount.kind, func.coalesce(func.sum(Posting.amount), 0))
        .join(Posting, col(Posting.account_id) == LedgerAccount.id, isouter=True)
        .group_by(col(LedgerAccount.id), col(LedgerAccount.code), col(LedgerAccount.kind))
        .order_by(col(LedgerAccount.code))
    ).all()
    return [(code, str(kind), int(total)) for code, kind, total in rows]


def ledger_totals(session: Session) -> dict[str, int]:
    """The sum of all postings per currency: zero in every currency when the ledger balances."""
    rows = session.exec(
        select(Posting.currency, func.sum(Posting.amount)).group_by(col(Posting.currency))
    ).all()
    return {currency: int(total) for currency, total in rows}


def unbalanced_entries(session: Session) -> list[int]:
    """Ids of entries whose postings do not sum to zero (always empty, or something is wrong)."""
    rows = session.exec(
        select(Posting.entry_id)
        .group_by(col(Posting.entry_id), col(Posting.currency))
        .having(func.sum(Posting.amount) != 0)
    ).all()
    return sorted(set(rows))
