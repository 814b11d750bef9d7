"""Innovation vouchers: a programme pays part of an eligible small company's invoice.

A programme covers `coverage_bp` basis points of the eligible lines (use of other
institutions' instruments by a flagged small company), drawn from the company's approved
vouchers of the programme (billing.voucher_applications), the soonest to expire first:
never more than their balances, the company's yearly cap nor the programme's remaining
budget. Each draw is a voucher_redemption row naming its voucher. The rows that hold
those running totals are locked while a grant is decided (SELECT ... FOR UPDATE
on PostgreSQL; SQLite's write lock serialises writers), and CHECK constraints
refuse any total past its limit, so concurrent runs cannot overspend.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from billing.models import (
    Charge,
    VoucherProgramme,
    VoucherRedemption,
)
from core.errors import Conflict, Invalid, NotFound
from core.money import largest_remainder_int
from core.periods import parse_period, period_first_day
from core.settings import CURRENCY_EXPONENTS
from instruments.models import Institution


@dataclass(frozen=True)
class ProgrammeIn:
    code: str
    name: str
    currency: str
    budget: int
    coverage_bp: int
    company_yearly_cap: int
    starts_on: date
    ends_on: date


def programme_create(session: Session, *, data: ProgrammeIn) -> VoucherProgramme:
    """Open a voucher programme (network administrators)."""
    currency = data.currency.lower()
    if currency not in CURRENCY_EXPONENTS:
        raise Invalid(f"unknown currency {data.currency!r}")
    if data.budget <= 0 or data.company_yearly_cap <= 0:
        raise Invalid("budget and company_yearly_cap must be positive")
    if not 0 < data.coverage_bp <= 10000:
        raise Invalid("coverage_bp must be between 1 and 10000 (basis points)")
    if data.ends_on < data.starts_on:
        raise Invalid("ends_on is before starts_on")
    if session.exec(select(VoucherProgramme).where(VoucherProgramme.code == data.code)).first():
        raise Conflict(f"a voucher programme with the code {data.code!r} exists")
    programme = VoucherProgramme(
        code=data.code,
        name=data.name,
        currency=currency,
        budget=data.budget,
        coverage_bp=data.coverage_bp,
        company_yearly_cap=data.company_yearly_cap,
        starts_on=data.starts_on,
        ends_on=data.ends_on,
    )
    session.add(programme)
    session.flush()
    return programme


def programme_get(session: Session, programme_id: int) -> VoucherProgramme:
    programme = session.get(VoucherProgramme, programme_id)
    if programme is None:
        raise NotFound(f"no voucher programme {programme_id}")
    return programme


def programmes_list(session: Session) -> list[VoucherProgramme]:
    """Every programme, newest first."""
    return list(session.exec(select(VoucherProgramme).order_by(col(VoucherProgramme.id).desc())))


def _lock(session: Session, statement: str, params: Mapping[str, object]) -> None:
    # Row locks on PostgreSQL; on SQLite the transaction already holds the write lock.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(statement + " FOR UPDATE"), params)


def _eligible(session: Session, period: str) -> list[tuple[int, int, str, int]]:
    """(invoice id, payer, currency, eligible amount) of the month's draft invoices."""
    rows = session.execute(
        text(
            """
            SELECT v.id, v.payer_institution_id, v.currency, SUM(c.amount)
            FROM invoice v JOIN charge c ON c.invoice_id = v.id
            WHERE v.period = :period AND v.status = 'draft' AND c.voucher_eligible
            GROUP BY v.id, v.payer_institution_id, v.currency
            ORDER BY v.id
            """
        ),
        {"period": period},
    ).all()
    return [(int(a), int(b), str(c), int(d)) for a, b, c, d in rows]


def _voucher_balances(
    session: Session, programme: VoucherProgramme, year: int, first_day: date, payers: list[int]
) -> dict[int, list[list[int]]]:
    """Per company, its approved vouchers of the programme's `year` still valid on the
    month's first day, as [voucher id, balance], the soonest to expire first (locked)."""
    query = (
        "SELECT id, institution_id, amount - used FROM voucher "
        "WHERE programme_id = :p AND year = :y AND status = 'approved' AND expires_on >= :d "
        "AND amount > used ORDER BY expires_on, id"
    )
    if session.get_bind().dialect.name == "postgresql":
        query += " FOR UPDATE"
    wanted = set(payers)
    out: dict[int, list[list[int]]] = {}
    for voucher_id, institution_id, balance in session.execute(
        text(query), {"p": programme.id, "y": year, "d": first_day}
    ).all():
        if int(institution_id) in wanted:
            out.setdefault(int(institution_id), []).append([int(voucher_id), int(balance)])
    return out


def _grant_programme(
    session: Session,
    programme: VoucherProgramme,
    year: int,
    first_day: date,
    rows: list[tuple[int, int, str, int]],
    covered: dict[int, dict[int, int]],
    chosen: Mapping[int, list[tuple[int, int]]],
) -> int:
    """Grant one programme's share on every eligible invoice from the company's approved
    vouchers, within their balances, the company's cap and the programme's budget: first
    the share of the bookings whose voucher the company chose, from that voucher, then the
    rest from the vouchers soonest to expire."""
    rows = [r for r in rows if r[2] == programme.currency]
    if not rows:
        return 0
    params = {"p": programme.id, "y": year, "cap": programme.company_yearly_cap}
    # Lock the programme first, then its companies' allowances and vouchers: concurrent
    # runs queue here.
    _lock(session, "SELECT spent FROM voucher_programme WHERE id = :p", {"p": programme.id})
    session.refresh(programme)
    payers = sorted({payer for _i, payer, _c, _e in rows})
    insert = "INSERT INTO voucher_allowance (programme_id, institution_id, year, cap, used) VALUES (:p, :i, :y, :cap, 0) ON CONFLICT DO NOTHING"
    session.execute(text(insert), [{**params, "i": payer} for payer in payers])
    _lock(
        session, "SELECT used FROM voucher_allowance WHERE programme_id = :p AND year = :y", params
    )
    allowances = {
        int(i): (int(cap), int(used))
        for i, cap, used in session.execute(
            text(
                "SELECT institution_id, cap, used FROM voucher_allowance "
                "WHERE programme_id = :p AND year = :y"
            ),
            params,
        ).all()
    }
    vouchers = _voucher_balances(session, programme, year, first_day, payers)
    budget_left = programme.budget - programme.spent
    used_now: dict[int, int] = {}
    drawn: dict[int, int] = {}
    grants: list[dict[str, int]] = []
    for invoice_id, payer, _currency, eligible in rows:
        on_invoice = covered.setdefault(invoice_id, {})
        already = on_invoice.get(programme.id or 0, 0)
        room = eligible - sum(on_invoice.values())
        wanted = min(eligible * programme.coverage_bp // 10000 - already, room)
        cap, used = allowances[payer]
        used += used_now.get(payer, 0)
        amount = min(wanted, cap - used, budget_left)
        held = vouchers.get(payer, [])
        by_id = {v[0]: v for v in held}
        # (voucher, most it pays here): the chosen ones for their bookings' share first.
        plan = [
            (by_id[voucher_id], eligible_chosen * programme.coverage_bp // 10000)
            for voucher_id, eligible_chosen in chosen.get(invoice_id, [])
            if voucher_id in by_id
        ] + [(v, amount) for v in held]
        for voucher, most in plan:
            if amount <= 0:
                break
            voucher_id, balance = voucher
            share = min(amount, balance, most)
            if share <= 0:
                continue
            voucher[1] -= share
            amount -= share
            drawn[voucher_id] = drawn.get(voucher_id, 0) + share
            used_now[payer] = used_now.get(payer, 0) + share
            budget_left -= share
            on_invoice[programme.id or 0] = on_invoice.get(programme.id or 0, 0) + share
            grants.append(
                {"p": programme.id or 0, "v": invoice_id, "i": payer, "u": voucher_id,
                 "y": year, "e": eligible, "a": share}
            )  # fmt: skip
    if not grants:
        return 0
    session.execute(
        text(
            "INSERT INTO voucher_redemption (programme_id, invoice_id, institution_id, "
            "voucher_id, year, eligible_amount, amount, created_at) VALUES (:p, :v, :i, :u, "
            ":y, :e, :a, CURRENT_TIMESTAMP)"
        ),
        grants,
    )
    session.execute(
        text("UPDATE voucher SET used = used + :a WHERE id = :u"),
        [{"u": voucher_id, "a": amount} for voucher_id, amount in drawn.items()],
    )
    session.execute(
        text(
            "UPDATE voucher_allowance SET used = used + :a "
            "WHERE programme_id = :p AND institution_id = :i AND year = :y"
        ),
        [{**params, "i": payer, "a": amount} for payer, amount in used_now.items()],
    )
    total = sum(g["a"] for g in grants)
    programme.spent += total
    session.add(programme)
    session.flush()
    return total


def vouchers_apply(session: Session, *, period: str) -> int:
    """Apply active programmes to the month's draft invoices; returns the amount granted now.

    Set-based: a handful of statements whatever the number of invoices. Re-runs grant only
    the difference that new lines earned, never twice.
    """
    year, _ = parse_period(period)
    first_day = period_first_day(period)
    programmes = session.exec(
        select(VoucherProgramme)
        .where(VoucherProgramme.starts_on <= first_day, VoucherProgramme.ends_on >= first_day)
        .order_by(col(VoucherProgramme.id))
    ).all()
    rows = _eligible(session, period) if programmes else []
    if not rows:
        return 0
    covered: dict[int, dict[int, int]] = {}
    for invoice_id, programme_id, amount in session.execute(
        text(
            "SELECT r.invoice_id, r.programme_id, SUM(r.amount) FROM voucher_redemption r "
            "JOIN invoice v ON v.id = r.invoice_id WHERE v.period = :period "
            "GROUP BY r.invoice_id, r.programme_id"
        ),
        {"period": period},
    ).all():
        covered.setdefault(int(invoice_id), {})[int(programme_id)] = int(amount)
    chosen: dict[int, list[tuple[int, int]]] = {}
    for invoice_id, voucher_id, eligible in session.execute(
        text(
            """
            SELECT c.invoice_id, bv.voucher_id, SUM(c.amount)
            FROM charge c JOIN booking_voucher bv ON bv.booking_id = c.booking_id
            JOIN invoice v ON v.id = c.invoice_id
            WHERE v.period = :period AND v.status = 'draft' AND c.voucher_eligible
            GROUP BY c.invoice_id, bv.voucher_id
            ORDER BY c.invoice_id, bv.voucher_id
            """
        ),
        {"period": period},
    ).all():
        chosen.setdefault(int(invoice_id), []).append((int(voucher_id), int(eligible)))
    granted = sum(
        _grant_programme(session, p, year, first_day, rows, covered, chosen) for p in programmes
    )
    if granted:
        session.execute(
            text(
                """
                UPDATE invoice SET voucher_total = t.v, total = invoice.subtotal - t.v
                FROM (SELECT invoice_id, SUM(amount) AS v FROM voucher_redemption
                      WHERE invoice_id IN (SELECT id FROM invoice WHERE period = :period)
                      GROUP BY invoice_id) t
                WHERE invoice.id = t.invoice_id AND invoice.period = :period
                  AND invoice.status = 'draft'
                """
            ),
            {"period": period},
        )
    return granted


def redemptions_by_programme(
    session: Session, invoice_id: int
) -> list[tuple[VoucherProgramme, int]]:
    """What each programme pays on an invoice."""
    rows = session.exec(
        select(VoucherProgramme, func.sum(VoucherRedemption.amount))
        .join(VoucherRedemption, col(VoucherRedemption.programme_id) == VoucherProgramme.id)
        .where(VoucherRedemption.invoice_id == invoice_id)
        .group_by(col(VoucherProgramme.id))
        .order_by(col(VoucherProgramme.id))
    ).all()
    return [(programme, int(total)) for programme, total in rows]


@dataclass(frozen=True)
class ProgrammeUse:
    """A programme's budget and how much of it went where."""

    programme: VoucherProgramme
    used: int
    companies: int
    # (institution name, amount), the largest users first
    top: list[tuple[str, int]]

    @property
    def remaining(self) -> int:
        return max(0, self.programme.budget - self.used)

    @property
    def used_share(self) -> float:
        return self.used / self.programme.budget if self.programme.budget else 0.0


def programmes_use(session: Session, *, top: int = 5) -> list[ProgrammeUse]:
    """Every programme with what its redemptions used of the budget, and by whom."""
    by_company = session.exec(
        select(
            VoucherRedemption.programme_id,
            Institution.name,
            func.sum(VoucherRedemption.amount),
        )
        .join(Institution, col(Institution.id) == VoucherRedemption.institution_id)
        .group_by(col(VoucherRedemption.programme_id), col(Institution.id), col(Institution.name))
    ).all()
    spent: dict[int, list[tuple[str, int]]] = {}
    for programme_id, name, amount in by_company:
        spent.setdefault(programme_id, []).append((name, int(amount or 0)))
    out = []
    for programme in programmes_list(session):
        rows = sorted(spent.get(programme.id or 0, []), key=lambda r: -r[1])
        out.append(ProgrammeUse(programme, sum(a for _, a in rows), len(rows), rows[:top]))
    return out


@dataclass(frozen=True, slots=True)
class ChargeShare:
    """The part of one charge that one redemption paid."""

    charge_id: int
    voucher_id: int | None
    invoice_id: int
    instrument_id: int
    provider_id: int
    amount: int


def charge_shares(
    session: Session, redemptions: Sequence[tuple[int, int | None, int]]
) -> list[ChargeShare]:
    """Each redemption (invoice, voucher, amount) split over its invoice's voucher-eligible
    charges in proportion to their amounts: largest remainder, ties by charge id, so the
    parts always sum to the redemption. What a provider claims, and what an instrument
    earned from vouchers, are these parts."""
    if not redemptions:
        return []
    invoice_ids = sorted({invoice_id for invoice_id, _v, _a in redemptions})
    charges: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for charge_id, invoice_id, instrument_id, provider_id, amount in session.execute(
        sa_select(
            col(Charge.id),
            col(Charge.invoice_id),
            col(Charge.instrument_id),
            col(Charge.provider_institution_id),
            col(Charge.amount),
        ).where(
            col(Charge.invoice_id).in_(invoice_ids),
            col(Charge.voucher_eligible).is_(True),
            col(Charge.amount) > 0,
        )
    ).all():
        charges[int(invoice_id)].append(
            (int(charge_id), int(instrument_id), int(provider_id), int(amount))
        )
    out: list[ChargeShare] = []
    for invoice_id, voucher_id, total in redemptions:
        lines = sorted(charges.get(invoice_id, []))
        base = sum(amount for *_ids, amount in lines)
        if not base:
            continue
        split = largest_remainder_int(
            [(c, amount * total) for c, _i, _p, amount in lines], base, total
        )
        out += [
            ChargeShare(c, voucher_id, invoice_id, instrument_id, provider_id, split[c])
            for c, instrument_id, provider_id, _amount in lines
        ]
    return out
