"""Vouchers as pages: a small company applies through the form, the bureau decides in
its queue, and the company reads the outcome."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from billing.models import BookingVoucher
from billing.vouchers import ProgrammeIn, programme_create
from core.models import Role
from instruments.models import InstitutionKind, PayerClass, Rate
from tests.factories import create_institution, create_instrument, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in

TODAY = date.today()


def _programme(session: Session) -> int:
    programme = programme_create(
        session,
        data=ProgrammeIn(
            code="CITY-IV", name="City innovation vouchers", currency="cny", budget=500_000_00,
            coverage_bp=5000, company_yearly_cap=100_000_00,
            starts_on=TODAY - timedelta(days=10), ends_on=TODAY + timedelta(days=200),
        ),
    )  # fmt: skip
    session.commit()
    return programme.id or 0


def test_a_company_applies_and_reads_the_decision(client: TestClient, session: Session) -> None:
    programme_id = _programme(session)
    firm = create_institution(
        session, kind=InstitutionKind.small_company, is_small_company=True, name="Qinling Photonics"
    )
    engineer = create_user(session, institution=firm)
    admin = create_user(session, role=Role.network_admin)
    academic = create_user(session, institution=create_institution(session))

    page_sign_in(client, academic.email)
    page = client.get("/me/vouchers").text
    assert "is not registered as one" in page and 'href="/me/vouchers"' not in page
    client.cookies.clear()

    page_sign_in(client, engineer.email)
    page = client.get("/me/vouchers").text
    assert 'href="/me/vouchers"' in page  # the header links a small company's people here
    assert "100,000.00 CNY of 100,000.00 CNY left this year" in page
    form = {"programme_id": str(programme_id), "amount": "20,000", "needs": "SEM of 8 wafers",
            "credit_code": "9144030071526726XH", "csrf_token": csrf_of(client, "/me/vouchers")}  # fmt: skip
    refused = client.post("/me/vouchers", data=form)
    assert refused.status_code == 422
    assert "typing slip" in refused.text and "SEM of 8 wafers" in refused.text  # kept
    form["credit_code"] = "9144030071526726XG"
    applied = client.post("/me/vouchers", data=form, follow_redirects=False)
    assert applied.status_code == 303, applied.text
    page = client.get(applied.headers["location"]).text
    assert "Applied: the bureau reviews your application." in page
    assert "Waiting for the bureau" in page and "20,000.00 CNY" in page
    client.cookies.clear()

    page_sign_in(client, admin.email)
    queue = client.get("/admin/vouchers").text
    assert "Qinling Photonics" in queue and "SEM of 8 wafers" in queue
    assert "First application." in queue and 'value="20000.00"' in queue
    token = csrf_of(client, "/admin/vouchers")
    voucher_id = queue.split('id="voucher-', 1)[1].split('"', 1)[0]
    over = client.post(f"/admin/vouchers/{voucher_id}/approve",
                       data={"amount": "25000", "csrf_token": token})  # fmt: skip
    assert over.status_code == 422 and "at most the 20,000.00 CNY asked for" in over.text
    done = client.post(f"/admin/vouchers/{voucher_id}/approve",
                       data={"amount": "15000", "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    assert "No application is waiting." in client.get("/admin/vouchers").text
    client.cookies.clear()

    page_sign_in(client, engineer.email)
    row = client.get("/me/vouchers").text.split('id="vouchers"', 1)[1].split("</table>", 1)[0]
    assert "approved" in row and "15,000.00 CNY" in row
    # Before booking elsewhere, the instrument's page says what the voucher pays.
    elsewhere = create_instrument(session)
    session.add(Rate(instrument_id=elsewhere.id, payer_class=PayerClass.company, amount=16000,
                     currency="cny"))  # fmt: skip
    session.commit()
    cover = client.get(f"/instruments/{elsewhere.id}").text
    assert "pays 50% of this use, up to its balance of 15,000.00 CNY" in cover
    assert 'hx-get="/instruments/' in cover  # the form asks for a quote as times are picked
    quote = client.get(
        f"/instruments/{elsewhere.id}/quote",
        params={"start": "2030-03-04T10:00", "end": "2030-03-04T12:00"},
        headers={"HX-Request": "true"},
    ).text
    # 2 h at 160.00: 320.00, half of it from the voucher.
    assert "About 320.00 CNY for 2 h at 160.00 CNY / hour." in quote, quote
    assert "Your voucher pays 160.00 CNY; you pay 160.00 CNY." in quote
    nothing = client.get(f"/instruments/{elsewhere.id}/quote", params={"start": "x", "end": ""})
    assert nothing.status_code == 200 and "quote-line" not in nothing.text
    # Booking there, the company picks the voucher that pays the booking's share.
    assert 'name="voucher_id"' in cover
    day = (TODAY + timedelta(days=3)).isoformat()
    booked = client.post(
        f"/instruments/{elsewhere.id}/book",
        data={"start": f"{day}T10:00", "end": f"{day}T12:00", "voucher_id": voucher_id,
              "csrf_token": csrf_of(client, f"/instruments/{elsewhere.id}")},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert booked.status_code == 201, booked.text
    session.rollback()
    chosen = session.exec(select(BookingVoucher)).one()
    assert str(chosen.voucher_id) == voucher_id
    # Chinese, as a Chinese reader sees it.
    zh = client.get("/me/vouchers", headers={"Accept-Language": "zh-CN"}).text
    assert "本企业的创新券" in zh and "已批准" in zh
