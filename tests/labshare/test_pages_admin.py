"""The network administrator's pages: dashboard, settlement preview/finalize/export, audit."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from admin.models import Settlement
from admin.policies import policy_create
from admin.subsidy import policy_parse
from billing.models import BillingPeriod, PeriodStatus
from core.models import Role
from telemetry.models import UsageSession
from tests.factories import create_institution, create_instrument, create_lab, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def _network(session: Session) -> None:
    """October 2026: an outsider used a university's instrument for three hours."""
    host = create_institution(session, name="Northwest University")
    outside = create_institution(session, name="Qinling Biotech")
    instrument = create_instrument(
        session, lab=create_lab(session, institution=host), asset_value=2_000_000_00
    )
    guest = create_user(session, institution=outside)
    session.add(
        UsageSession(
            instrument_id=instrument.id,
            user_id=guest.id,
            start_at=datetime(2026, 10, 12, 1, tzinfo=UTC),
            end_at=datetime(2026, 10, 12, 4, tzinfo=UTC),
            last_event_at=datetime(2026, 10, 12, 4, tzinfo=UTC),
        )
    )
    session.add(BillingPeriod(period="2026-10", status=PeriodStatus.closed, runs=1))
    policy_create(
        session,
        document=policy_parse(
            {
                "name": "2026 sharing rewards",
                "currency": "cny",
                "budget": 1_000_000,
                "weights": {"external_hours": 10},
            }
        ),
        actor_id=None,
    )
    session.commit()


def test_admin_previews_finalizes_and_exports_a_settlement(
    client: TestClient, session: Session
) -> None:
    _network(session)
    admin = create_user(session, role=Role.network_admin, email="admin@example.org")
    page_sign_in(client, admin.email)
    page = client.get("/admin/settlements")
    assert page.status_code == 200 and "2026 sharing rewards" in page.text
    token = csrf_of(client, "/admin/settlements")
    policy_id = re.search(r'<option value="(\d+)">#\d+ 2026 sharing rewards', page.text).group(1)

    made = client.post(
        "/admin/settlements",
        data={"period": "2026-10", "policy_id": policy_id, "note": "October", "csrf_token": token},
        follow_redirects=False,
    )
    assert made.status_code == 303
    url = made.headers["location"]
    detail = client.get(url)
    assert detail.status_code == 200
    assert "Northwest University" in detail.text and "3.0" in detail.text
    assert "status-preview" in detail.text and "Finalize" in detail.text
    assert "SettlementInstitution" not in detail.text  # counts, not objects, in the cards
    settlement_id = int(url.rsplit("/", 1)[1])
    csv = client.get(f"/api/v1/admin/settlements/{settlement_id}.csv")
    assert csv.status_code == 200 and "Northwest University" in csv.text

    dashboard = client.get("/admin", params={"period": "2026-10"})
    assert dashboard.status_code == 200
    assert 'id="subsidy-data"' in dashboard.text and "Northwest University" in dashboard.text
    kpis = client.get("/api/v1/admin/kpis", params={"period": "2026-10"})
    assert kpis.status_code == 200 and kpis.json()["external_hours"] == 3.0

    done = client.post(f"{url}/finalize", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    final = client.get(url)
    assert "status-finalized" in final.text and "immutable" in final.text
    assert "Finalize</button>" not in final.text
    again = client.post(f"{url}/finalize", data={"csrf_token": token})
    assert again.status_code == 409
    session.rollback()
    session.expire_all()
    assert session.get(Settlement, settlement_id).status == "finalized"

    audit = client.get("/admin/audit", params={"entity": "settlement"})
    assert audit.status_code == 200
    assert "settlement.preview" in audit.text and "settlement.finalize" in audit.text
    assert "admin@example.org" in audit.text
    assert client.get("/admin/audit", params={"since": "yesterday"}).status_code == 422


def test_admin_pages_are_for_network_admins(client: TestClient, session: Session) -> None:
    manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    assert client.get("/admin", follow_redirects=False).status_code == 303
    page_sign_in(client, manager.email)
    for path in ("/admin", "/admin/settlements", "/admin/audit"):
        assert client.get(path).status_code == 403
    assert client.get("/admin/settlements/999").status_code == 403


def test_missing_settlement_and_no_policy(client: TestClient, session: Session) -> None:
    admin = create_user(session, role=Role.network_admin)
    page_sign_in(client, admin.email)
    assert client.get("/admin/settlements/999").status_code == 404
    page = client.get("/admin/settlements")
    assert "No subsidy policy yet" in page.text
    token = csrf_of(client, "/admin/settlements")
    refused = client.post("/admin/settlements", data={"period": "2026-10", "csrf_token": token})
    assert refused.status_code == 422
    assert client.get("/admin").status_code == 200
    assert session.exec(select(Settlement)).first() is None


def test_invoices_page(client: TestClient, session: Session) -> None:
    user = create_user(session, institution=create_institution(session))
    page_sign_in(client, user.email)
    page = client.get("/me/invoices")
    assert page.status_code == 200 and "No invoices." in page.text
    # The month picker names months, newest first.
    picker = page.text.split('<select id="period"', 1)[1].split("</select>", 1)[0]
    names = re.findall(r"<option value=\"(\d{4}-\d{2})\"[^>]*>([^<]+)</option>", picker)
    assert len(names) == 24 and names[0][0] > names[-1][0]
    year = names[0][0].split("-")[0]
    assert names[0][1].strip().endswith(year) and names[0][1].split()[0] in [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ]
    assert client.get("/me/invoices", params={"period": "2026-13"}).status_code == 422


def test_the_dashboard_shows_each_voucher_programmes_budget_and_use(
    client: TestClient, session: Session
) -> None:
    from datetime import date

    from billing.vouchers import ProgrammeIn, programme_create

    programme_create(
        session,
        data=ProgrammeIn(
            code="CITY-IV", name="City innovation vouchers", currency="cny", budget=500_000_00,
            coverage_bp=5000, company_yearly_cap=10_000_00, starts_on=date(2026, 1, 1),
            ends_on=date(2026, 12, 31),
        ),
    )  # fmt: skip
    session.commit()
    admin = create_user(session, role=Role.network_admin)
    page_sign_in(client, admin.email)
    box = client.get("/admin").text.split('id="vouchers-title"', 1)[1].split("</section>", 1)[0]
    assert "City innovation vouchers" in box and "500,000.00 CNY" in box
    assert "No voucher has been redeemed yet." in box


def test_the_subsidy_policy_is_written_in_a_form_and_a_change_is_a_new_version(
    client: TestClient, session: Session
) -> None:
    from admin.models import SubsidyPolicy

    admin = create_user(session, role=Role.network_admin)
    page_sign_in(client, admin.email)
    assert 'href="/admin/policies"' in client.get("/admin/settlements").text
    page = client.get("/admin/policies").text
    token = csrf_of(client, "/admin/policies")
    form = {"name": "City rewards", "budget": "2,000,000", "point_value": "1.00",
            "external_hours": "10", "external_revenue": "0.5", "outside_users": "20",
            "utilisation": "0", "min_asset_value": "500000", "min_external_hours": "1",
            "exclude_failed_evaluation": "on", "institution_cap": "300000",
            "voucher_reimbursement_percent": "100", "csrf_token": token}  # fmt: skip
    assert 'value="5000.00"' not in page  # the starting point is the usual 500,000
    bad = client.post("/admin/policies", data={**form, "external_hours": "-1"})
    assert bad.status_code == 422 and "external_hours" in bad.text and "City rewards" in bad.text
    for field in ("voucher_reimbursement_percent", "external_hours", "budget"):
        odd = client.post("/admin/policies", data={**form, field: "NaN"})
        assert odd.status_code == 422 and field in odd.text, (field, odd.text)
    done = client.post("/admin/policies", data=form, follow_redirects=False)
    assert done.status_code == 303
    assert "The policy is stored" in client.get(done.headers["location"]).text
    session.rollback()
    stored = session.exec(select(SubsidyPolicy)).one()
    assert (
        stored.document["budget"] == 200_000_000
        and stored.document["institution_cap"] == 30_000_000
    )
    # A change starts from the stored one and is stored beside it.
    again = client.get(f"/admin/policies?from={stored.id}").text
    assert 'value="2000000.00"' in again
    client.post("/admin/policies", data={**form, "budget": "2500000"}, follow_redirects=False)
    session.rollback()
    assert len(session.exec(select(SubsidyPolicy)).all()) == 2
