"""Redeeming vouchers (兑付): a provider claims the voucher share of its services with the
evidence of each use, the bureau reviews and publishes, and `verify` catches a record
changed after submission. Both databases."""

from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import text
from sqlmodel import Session, select
from typer.testing import CliRunner

from billing.cli import vouchers_app
from billing.invoices import invoice_close, invoice_mark_paid, invoice_run
from billing.models import Invoice
from billing.rates import rate_card_create
from billing.schemas import RateCardIn
from billing.vouchers import ProgrammeIn, programme_create
from core.db import session_scope
from instruments.models import Institution, PayerClass
from tests.billing.helpers import NOV, book, use
from tests.factories import auth, issue_voucher

runner = CliRunner()


def _paid_month_with_a_voucher_use(session: Session, net) -> int:
    """TINY books 3 h of UNIV-A's instrument (60,000 at the company rate); its voucher
    (20,000 approved, 50% coverage) pays 20,000; the invoice is closed and paid."""
    with session_scope() as s:
        rate_card_create(
            s, user=None,
            data=RateCardIn(instrument_id=net.instrument.id, payer_class=PayerClass.company,
                            amount=20000, effective_from=NOV - timedelta(days=365)),
        )  # fmt: skip
        programme = programme_create(
            s,
            data=ProgrammeIn(
                code="IV", name="Innovation vouchers", currency="cny", budget=10**7,
                coverage_bp=5000, company_yearly_cap=10**6, starts_on=date(2026, 1, 1),
                ends_on=date(2027, 12, 31),
            ),
        )  # fmt: skip
        programme_id = programme.id or 0
    small = session.get(Institution, net.founder.institution_id)
    issue_voucher(session, programme_id=programme_id, institution=small, amount=20000)
    booking = book(session, instrument=net.instrument, user=net.founder, minutes=180)
    use(session, instrument=net.instrument, user=net.founder, start=NOV, minutes=170,
        booking=booking)  # fmt: skip
    with session_scope() as s:
        invoice_run(s, period="2026-11")
        invoice_close(s, period="2026-11")
    with session_scope() as s:
        invoice = s.exec(select(Invoice).where(Invoice.number == "INV-2026-11-TINY")).one()
        assert invoice.voucher_total == 20000
        invoice_mark_paid(s, invoice=invoice, via="bank", ref="test")
    return programme_id


def test_claim_review_notice_and_verify(session, net, client) -> None:
    programme_id = _paid_month_with_a_voucher_use(session, net)
    provider, admin = auth(net.manager), auth(net.admin)
    query = {"programme_id": programme_id, "period": "2026-11"}
    r = client.get("/api/v1/voucher-claims/uses", params=query, headers=provider)
    assert r.status_code == 200, r.text
    uses = r.json()
    assert [u["amount"] for u in uses] == [20000]
    # The paying company cannot claim; the provider's lab manager can.
    assert client.post("/api/v1/voucher-claims", json=query,
                       headers=auth(net.founder)).status_code == 403  # fmt: skip
    r = client.post("/api/v1/voucher-claims", json=query, headers=provider)
    assert r.status_code == 201, r.text
    claim = r.json()
    assert (claim["lines"], claim["claimed"], claim["status"]) == (1, 20000, "submitted")
    assert len(claim["digest"]) == 64 and len(claim["line_items"][0]["evidence_digest"]) == 64
    # A use is claimed once.
    again = client.post("/api/v1/voucher-claims", json=query, headers=provider)
    assert again.status_code == 422 and "nothing to claim" in again.json()["detail"]

    decide = f"/api/v1/voucher-claims/{claim['id']}/decide"
    assert client.post(decide, json={"approve": False}, headers=admin).status_code == 422
    assert client.post(decide, json={"approve": True}, headers=provider).status_code == 403
    reviewed = client.post(decide, json={"approve": True}, headers=admin).json()
    assert (reviewed["status"], reviewed["approved"]) == ("reviewed", 20000)
    r = client.post("/api/v1/voucher-notices", json={"programme_id": programme_id, "days": 7},
                    headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["claims"][0]["provider"] == net.provider.name
    # Published: final.
    late = client.post(decide, json={"approve": False, "reason": "late doubt"}, headers=admin)
    assert late.status_code == 409
    public = client.get("/api/v1/voucher-notices")  # anyone
    assert public.status_code == 200 and public.json()[0]["approved"] == 20000
    assert net.provider.name in client.get("/vouchers/notices").text

    # A reviewer reads a line's evidence, and whether it still matches.
    line_id = claim["line_items"][0]["id"]
    shown = client.get(f"/api/v1/voucher-claims/{claim['id']}/lines/{line_id}/evidence",
                       headers=admin).json()  # fmt: skip
    assert shown["matches"] and shown["evidence"]["booking"]["status"] == "completed"
    assert len(shown["evidence"]["usage"]) == 1 and shown["evidence"]["invoice"]["status"] == "paid"
    assert client.get(f"/api/v1/voucher-claims/{claim['id']}/lines/{line_id}/evidence",
                      headers=auth(net.founder)).status_code == 404  # fmt: skip
    # The evidence holds until a record behind it changes.
    result = runner.invoke(vouchers_app, ["verify", "--claim", str(claim["id"])])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        s.execute(text("UPDATE usage_session SET end_at = end_at + INTERVAL '1 hour'")
                  if s.get_bind().dialect.name == "postgresql"
                  else text("UPDATE usage_session SET end_at = datetime(end_at, '+1 hour')"))  # fmt: skip
    result = runner.invoke(vouchers_app, ["verify", "--claim", str(claim["id"])])
    assert result.exit_code == 1
    assert f"line {line_id}" in result.output and "evidence changed" in result.output
    again = client.get(f"/api/v1/voucher-claims/{claim['id']}/lines/{line_id}/evidence",
                       headers=admin).json()  # fmt: skip
    assert not again["matches"]


def test_the_pages_of_a_claim(session, net, client, monkeypatch) -> None:
    from labshare.pages import vouchers as pages
    from tests.labshare.pages_helpers import csrf_of, page_sign_in

    monkeypatch.setattr(pages, "last_month", lambda: "2026-11")
    programme_id = _paid_month_with_a_voucher_use(session, net)
    page_sign_in(client, net.manager.email)
    page = client.get("/lab/claims").text
    assert 'href="/lab/claims"' in page
    unclaimed = page.split('id="unclaimed"', 1)[1].split("</table>", 1)[0]
    assert "2026-11" in unclaimed and "1 uses, 200.00 CNY" in unclaimed
    token = csrf_of(client, "/lab/claims")
    form = {"programme_id": str(programme_id), "period": "2026-10", "csrf_token": token}
    empty = client.post("/lab/claims", data=form)
    assert empty.status_code == 422 and "nothing to claim for 2026-10" in empty.text
    done = client.post("/lab/claims", data={**form, "period": "2026-11"}, follow_redirects=False)
    assert done.status_code == 303
    page = client.get("/lab/claims").text
    assert "1 uses, 200.00 CNY claimed, 0.00 CNY approved." in page
    line_url = re.search(r'href="(/lab/claims/\d+/lines/\d+)"', page).group(1)  # type: ignore[union-attr]
    assert "still match the digest" in client.get(line_url).text
    client.cookies.clear()

    page_sign_in(client, net.admin.email)
    page = client.get("/admin/claims").text
    claim_id = page.split('id="claim-', 1)[1].split('"', 1)[0]
    token = csrf_of(client, "/admin/claims")
    r = client.post(f"/admin/claims/{claim_id}/decide", data={"approve": "yes", "csrf_token": token},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    r = client.post("/admin/notices", data={"programme_id": str(programme_id), "days": "7",
                                            "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    client.cookies.clear()
    notice = client.get("/vouchers/notices").text  # anyone
    assert net.provider.name in notice and "200.00 CNY" in notice


def test_a_settlement_pays_a_claim_once_after_its_notice_has_run(session, net, client) -> None:
    from admin.models import SettlementClaim
    from billing.models import VoucherNotice
    from tests.admin.helpers import POLICY

    programme_id = _paid_month_with_a_voucher_use(session, net)
    provider, admin = auth(net.manager), auth(net.admin)
    claim = client.post("/api/v1/voucher-claims", json={"programme_id": programme_id,
                        "period": "2026-11"}, headers=provider).json()  # fmt: skip
    client.post(f"/api/v1/voucher-claims/{claim['id']}/decide", json={"approve": True},
                headers=admin)  # fmt: skip
    client.post("/api/v1/voucher-notices", json={"programme_id": programme_id}, headers=admin)
    assert client.post("/api/v1/admin/policies", json=POLICY, headers=admin).status_code == 201

    def reimbursed() -> tuple[int, int]:
        r = client.post("/api/v1/admin/settlements", json={"period": "2026-11"}, headers=admin)
        assert r.status_code == 201, r.text
        body = r.json()
        return body["id"], body["total_voucher_reimbursement"]

    # While the notice runs, nothing is paid.
    assert reimbursed()[1] == 0
    with session_scope() as s:
        s.execute(text("UPDATE voucher_notice SET ends_on = :d"), {"d": date(2026, 12, 1)})
    settlement_id, total = reimbursed()
    assert total == 20000
    r = client.post(f"/api/v1/admin/settlements/{settlement_id}/finalize", headers=admin)
    assert r.status_code == 200, r.text
    session.rollback()
    assert session.exec(select(SettlementClaim.claim_id)).all() == [claim["id"]]
    assert session.exec(select(VoucherNotice.ends_on)).one() == date(2026, 12, 1)
    # Paid once: another settlement of the month pays it no more.
    assert reimbursed()[1] == 0
