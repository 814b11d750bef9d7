"""Vouchers within caps and budgets, and a ledger that always balances and is never edited."""

from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from billing.errors import Unbalanced
from billing.invoices import invoice_close, invoice_mark_paid, invoice_run
from billing.ledger import (
    AccountRef,
    balances,
    entry_post,
    entry_reverse,
    ledger_totals,
    unbalanced_entries,
)
from billing.models import AccountKind, Invoice, VoucherAllowance, VoucherProgramme
from billing.rates import rate_card_create
from billing.schemas import RateCardIn
from billing.vouchers import ProgrammeIn, programme_create
from core.db import session_scope
from instruments.models import Institution, InstitutionKind, PayerClass
from tests.billing.helpers import NOV, book, create_user
from tests.factories import auth, create_institution, issue_voucher


def _programme(budget: int, cap: int, coverage_bp: int = 5000) -> int:
    with session_scope() as s:
        programme = programme_create(
            s,
            data=ProgrammeIn(
                code=f"IV{uuid.uuid4().hex[:6]}",
                name="Innovation vouchers",
                currency="cny",
                budget=budget,
                coverage_bp=coverage_bp,
                company_yearly_cap=cap,
                starts_on=date(2026, 1, 1),
                ends_on=date(2027, 12, 31),
            ),
        )
        return programme.id or 0


def _voucher(session: Session, programme_id: int, user, amount: int) -> None:
    """The company's approved voucher: invoices draw their voucher share from it."""
    company = session.get(Institution, user.institution_id)
    issue_voucher(session, programme_id=programme_id, institution=company, amount=amount)


def _company_card(net) -> None:
    with session_scope() as s:
        rate_card_create(
            s,
            user=None,
            data=RateCardIn(
                instrument_id=net.instrument.id,
                payer_class=PayerClass.company,
                amount=20000,
                effective_from=NOV - timedelta(days=365),
            ),
        )


def _small_company(session: Session, code: str):
    inst = create_institution(
        session, code=code, kind=InstitutionKind.small_company, is_small_company=True
    )
    return create_user(session, institution=inst)


def test_vouchers_respect_cap_and_budget_and_post_balanced(session, net) -> None:
    _company_card(net)
    programme_id = _programme(budget=25000, cap=20000)
    other = _small_company(session, "TINY2")
    # The bureau approved the cap for TINY and what the budget had left for TINY2.
    _voucher(session, programme_id, net.founder, 20000)
    _voucher(session, programme_id, other, 5000)
    book(session, instrument=net.instrument, user=net.founder, minutes=180)  # 60000
    book(session, instrument=net.instrument, user=other, start=NOV + timedelta(days=1))  # 40000
    book(session, instrument=net.instrument, user=net.engineer, start=NOV + timedelta(days=2))
    with session_scope() as s:
        report = invoice_run(s, period="2026-11")
    assert report.vouchers_granted == 25000
    invoices = {i.number: i for i in session.exec(select(Invoice))}
    tiny, tiny2 = invoices["INV-2026-11-TINY"], invoices["INV-2026-11-TINY2"]
    assert (tiny.subtotal, tiny.voucher_total, tiny.total) == (60000, 20000, 40000)  # the cap
    assert (tiny2.voucher_total, tiny2.total) == (5000, 35000)  # what the budget had left
    assert invoices["INV-2026-11-BIGCO"].voucher_total == 0  # not a flagged small company
    # A later line earns nothing more: the cap and budget are spent.
    book(session, instrument=net.instrument, user=net.founder, start=NOV + timedelta(days=3))
    with session_scope() as s:
        assert invoice_run(s, period="2026-11").vouchers_granted == 0
        invoice_close(s, period="2026-11")
    with session_scope() as s:
        programme = s.exec(select(VoucherProgramme)).one()
        assert programme.spent == programme.budget == 25000
        assert ledger_totals(s) == {"cny": 0} and unbalanced_entries(s) == []
        accounts = {code: balance for code, _kind, balance in balances(s)}
        assert accounts["payer_receivable:TINY:cny"] == 80000
        assert accounts[f"voucher_programme:programme-{programme.id}:cny"] == 25000
        assert accounts["provider_revenue:UNIV-A:cny"] == -(100000 + 40000 + 40000)
        invoice = s.exec(select(Invoice).where(Invoice.number == "INV-2026-11-TINY")).one()
        invoice_mark_paid(s, invoice=invoice, via="bank", ref="test")
        invoice_mark_paid(s, invoice=invoice, via="bank", ref="again")
    with session_scope() as s:
        accounts = {code: balance for code, _kind, balance in balances(s)}
        assert accounts["payer_receivable:TINY:cny"] == 0
        assert accounts["cash:bank:cny"] == 80000


def test_ledger_refuses_edits_and_unbalanced_entries(session, net, backend) -> None:
    receivable = AccountRef(AccountKind.payer_receivable, "cny", institution_id=net.academic.id)
    revenue = AccountRef(AccountKind.provider_revenue, "cny", institution_id=net.provider.id)
    with pytest.raises(Unbalanced), session_scope() as s:
        entry_post(s, ref="bad", memo="", lines=[(receivable, 100), (revenue, -99)])
    with session_scope() as s:
        entry = entry_post(s, ref="ok", memo="", lines=[(receivable, 100), (revenue, -100)])
        assert entry is not None
        entry_id = entry.id
    with pytest.raises(DBAPIError), session_scope() as s:
        s.execute(text("UPDATE posting SET amount = amount + 1"))
    if backend == "postgresql":
        with pytest.raises(DBAPIError), session_scope() as s:
            s.execute(text("DELETE FROM posting"))
        # However the rows are written, an entry that does not balance fails at commit.
        with pytest.raises(DBAPIError), session_scope() as s:
            s.execute(
                text("INSERT INTO journal_entry (ref, memo, created_at) VALUES ('raw', '', now())")
            )
            s.execute(
                text(
                    "INSERT INTO posting (entry_id, account_id, amount, currency) "
                    "SELECT MAX(j.id), MIN(a.id), 5, 'cny' FROM journal_entry j, "
                    "ledger_account a"
                )
            )
    with session_scope() as s:
        entry_reverse(s, entry_id=entry_id, memo="typo")
        entry_reverse(s, entry_id=entry_id, memo="typo")  # once only
    with session_scope() as s:
        assert all(balance == 0 for _c, _k, balance in balances(s))
        assert ledger_totals(s) == {"cny": 0}


kinds = st.sampled_from(list(AccountKind))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entries=st.lists(
        st.tuples(
            st.lists(
                st.tuples(kinds, st.integers(0, 2), st.integers(-(10**9), 10**9)),
                min_size=1,
                max_size=5,
            ),
            st.sampled_from(["cny", "usd"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_ledger_always_balances(engine, entries) -> None:
    """Whatever is posted, each entry and the whole ledger sum to zero in every currency."""
    institutions = [None, None, None]
    with session_scope() as s:
        for i in range(3):
            code = f"H{i}"
            found = s.exec(
                text("SELECT id FROM institution WHERE code = :c").bindparams(c=code)
            ).first()
            if found is None:
                s.execute(
                    text(
                        "INSERT INTO institution (code, name, kind, is_small_company, created_at) "
                        "VALUES (:c, :c, 'university', false, CURRENT_TIMESTAMP)"
                    ).bindparams(c=code)
                )
                found = s.exec(
                    text("SELECT id FROM institution WHERE code = :c").bindparams(c=code)
                ).first()
            institutions[i] = found[0]
    for raw, currency in entries:
        lines = [
            (AccountRef(kind, currency, institution_id=institutions[who]), amount)
            for kind, who, amount in raw
        ]
        # Balance the entry with a cash line; an unbalanced one must be refused whole.
        off = sum(amount for _r, amount in lines)
        balanced = [*lines, (AccountRef(AccountKind.cash, currency, name="stripe"), -off)]
        with session_scope() as s:
            entry_post(s, ref=uuid.uuid4().hex, memo="", lines=balanced)
        if off != 0:
            with pytest.raises(Unbalanced), session_scope() as s:
                entry_post(s, ref=uuid.uuid4().hex, memo="", lines=lines)
    with session_scope() as s:
        assert all(total == 0 for total in ledger_totals(s).values())
        assert unbalanced_entries(s) == []


def test_concurrent_runs_never_pass_the_cap(session, net, backend) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    _company_card(net)
    _voucher(session, _programme(budget=10**9, cap=30000), net.founder, 30000)
    for month in (NOV, NOV + timedelta(days=30)):
        book(session, instrument=net.instrument, user=net.founder, start=month, minutes=300)
    errors: list[BaseException] = []

    def run(period: str) -> None:
        try:
            with session_scope() as s:
                invoice_run(s, period=period)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in ("2026-11", "2026-12")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    session.expire_all()
    allowance = session.exec(select(VoucherAllowance)).one()
    assert allowance.used == 30000  # 2 x 50000 wanted; the cap holds
    assert sum(i.voucher_total for i in session.exec(select(Invoice))) == 30000


def test_an_invoice_draws_from_the_companys_vouchers_soonest_to_expire_first(
    session, net, client
) -> None:
    from billing.models import Voucher, VoucherRedemption
    from billing.voucher_applications import vouchers_expire

    _company_card(net)
    programme_id = _programme(budget=10**7, cap=10**6)
    _voucher(session, programme_id, net.founder, 10000)
    _voucher(session, programme_id, net.founder, 15000)
    later, sooner = session.exec(select(Voucher).order_by(Voucher.id)).all()
    sooner.expires_on = date(2026, 12, 15)
    session.add(sooner)
    session.commit()
    other = _small_company(session, "NOVOUCHER")  # a small company with no voucher
    book(session, instrument=net.instrument, user=net.founder, minutes=180)  # 60000
    book(session, instrument=net.instrument, user=other, start=NOV + timedelta(days=1))
    with session_scope() as s:
        assert invoice_run(s, period="2026-11").vouchers_granted == 25000
    session.rollback()
    invoices = {i.number: i for i in session.exec(select(Invoice))}
    assert invoices["INV-2026-11-TINY"].voucher_total == 25000  # both balances, not 30000
    assert invoices["INV-2026-11-NOVOUCHER"].voucher_total == 0
    drawn = {r.voucher_id: r.amount for r in session.exec(select(VoucherRedemption))}
    assert drawn == {sooner.id: 15000, later.id: 10000}
    session.expire_all()
    assert [v.used for v in session.exec(select(Voucher).order_by(Voucher.id))] == [10000, 15000]
    # The company sees each use; another company sees nothing of it.
    uses = client.get(f"/api/v1/vouchers/{sooner.id}/uses", headers=auth(net.founder)).json()
    assert [(u["invoice_number"], u["amount"]) for u in uses] == [("INV-2026-11-TINY", 15000)]
    stranger = client.get(f"/api/v1/vouchers/{sooner.id}/uses", headers=auth(other))
    assert stranger.status_code == 404
    # Spent vouchers give nothing back when they expire.
    with session_scope() as s:
        assert vouchers_expire(s, today=date(2028, 1, 1)) == (2, 0)


def test_a_booking_paid_with_the_voucher_its_company_chose(session, net, client) -> None:
    from billing.models import Voucher, VoucherRedemption, VoucherStatus

    _company_card(net)
    programme_id = _programme(budget=10**7, cap=10**6)
    _voucher(session, programme_id, net.founder, 50000)
    _voucher(session, programme_id, net.founder, 50000)
    sooner, later = session.exec(select(Voucher).order_by(Voucher.id)).all()
    sooner.expires_on = date(2026, 12, 15)
    session.add(sooner)
    session.commit()
    booking = book(session, instrument=net.instrument, user=net.founder, minutes=180)  # 60000
    url = f"/api/v1/bookings/{booking.id}/voucher"
    who = auth(net.founder)
    # Someone else's booking, someone else's voucher: 403.
    assert (
        client.put(url, json={"voucher_id": later.id}, headers=auth(net.engineer)).status_code
        == 403
    )
    stranger = _small_company(session, "OTHERCO")
    other = Voucher(programme_id=programme_id, institution_id=stranger.institution_id,
                    applicant_id=stranger.id, year=2026, requested=1, needs="x",
                    status=VoucherStatus.approved, amount=1, expires_on=date(2026, 12, 31))  # fmt: skip
    session.add(other)
    session.commit()
    assert client.put(url, json={"voucher_id": other.id}, headers=who).status_code == 403
    # The one that expires later: chosen, and the invoice draws this booking's share from it.
    r = client.put(url, json={"voucher_id": later.id}, headers=who)
    assert r.status_code == 200, r.text
    with session_scope() as s:
        assert invoice_run(s, period="2026-11").vouchers_granted == 30000
    session.rollback()
    drawn = {x.voucher_id: x.amount for x in session.exec(select(VoucherRedemption))}
    assert drawn == {later.id: 30000}
    # An expired or used-up voucher cannot be chosen: 409.
    with session_scope() as s:
        s.execute(text("UPDATE voucher SET expires_on = :d WHERE id = :i"),
                  {"d": date(2026, 1, 1), "i": sooner.id})  # fmt: skip
        s.execute(text("UPDATE voucher SET used = amount WHERE id = :i"), {"i": later.id})
    assert client.put(url, json={"voucher_id": sooner.id}, headers=who).status_code == 409
    assert client.put(url, json={"voucher_id": later.id}, headers=who).status_code == 409


def test_a_cancelled_booking_takes_nothing_from_its_voucher(session, net, client) -> None:
    """A voucher pays only what the invoice charges: a booking cancelled before it ran is
    not charged (a late-cancellation fee is never voucher-eligible), so its chosen voucher
    keeps its whole balance."""
    from billing.models import Voucher
    from booking.models import BookingStatus

    _company_card(net)
    programme_id = _programme(budget=10**7, cap=10**6)
    _voucher(session, programme_id, net.founder, 50000)
    voucher = session.exec(select(Voucher)).one()
    booking = book(session, instrument=net.instrument, user=net.founder, minutes=180)
    r = client.put(f"/api/v1/bookings/{booking.id}/voucher", json={"voucher_id": voucher.id},
                   headers=auth(net.founder))  # fmt: skip
    assert r.status_code == 200, r.text
    booking.status = BookingStatus.cancelled
    booking.cancelled_at = booking.start_at - timedelta(days=3)
    booking.cancelled_by_id = net.founder.id
    session.add(booking)
    session.commit()
    with session_scope() as s:
        assert invoice_run(s, period="2026-11").vouchers_granted == 0
    session.rollback()
    assert session.get(Voucher, voucher.id).used == 0  # type: ignore[union-attr]
