"""Sending samples in a real browser: the lab publishes a service with its form; a
researcher finds it on the instrument's page, fills the form, attaches the sample sheet
and sends it; the lab quotes, receives the samples, holds the instrument, uploads the
result and completes; the researcher accepts the quote on the way and downloads the
result at the end."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, select

from billing.services.models import RequestStatus, ServiceRequest
from core.models import Role
from core.settings import get_settings
from tests.e2e.conftest import Shots
from tests.e2e.test_browser import _sign_in
from tests.factories import create_institution, create_instrument, create_lab, create_user

pytest.importorskip("playwright.sync_api")


def test_a_researcher_sends_samples_and_downloads_the_result(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    lab_row = create_lab(session)
    instrument = create_instrument(session, lab=lab_row, name="Orbitrap Exploris 480")
    manager = create_user(session, role=Role.lab_manager, lab=lab_row)
    researcher = create_user(session, institution=create_institution(session, code="UNIV-B"))
    session.commit()
    lab_context, me_context = browser.new_context(), browser.new_context(accept_downloads=True)
    lab, me = lab_context.new_page(), me_context.new_page()

    lab.goto(f"{live_server}/signin?next=/lab/services")
    _sign_in(lab, live_server, manager.email)
    form = lab.locator("#new-service")
    form.get_by_label("Name").fill("LC-MS/MS targeted quantitation")
    form.get_by_label("academic").fill("300.00")
    form.get_by_label("Request form").fill(
        "matrix; Sample matrix; text; required\nsheet; Sample sheet; file; required"
    )
    form.get_by_role("button", name="Publish the service").click()
    lab.get_by_text("LC-MS/MS targeted quantitation").first.wait_for()

    me.goto(f"{live_server}/signin?next=/instruments/{instrument.id}")
    _sign_in(me, live_server, researcher.email)
    me.get_by_role("link", name="LC-MS/MS targeted quantitation").click()
    me.get_by_label("How many (sample)").fill("3")
    me.get_by_label("Sample matrix").fill("serum")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("id,matrix\n1,serum\n2,serum\n3,serum\n")
    me.get_by_label("Sample sheet").set_input_files(str(sheet))
    me.get_by_role("button", name="Send the request").click()
    me.get_by_text("Sent: the lab answers with a quote.").wait_for()
    assert me.locator("#sr-status").inner_text().lower() == "submitted"
    request_url = me.url.split("?")[0]
    shots(me, "service-request-sent")

    lab.goto(request_url)
    lab.get_by_role("button", name="Send the quote").click()
    lab.locator("#quote-total").wait_for()
    assert lab.locator("#quote-total").inner_text().replace(",", "").startswith("900.00")

    me.goto(request_url)
    me.get_by_role("button", name="Accept the quote").click()
    me.locator("#sr-status", has_text="ccepted").wait_for()

    lab.goto(request_url)
    lab.get_by_role("button", name="Samples received").click()
    day = (datetime.now(get_settings().zone) + timedelta(days=2)).date()
    lab.get_by_label("Start").fill(f"{day}T09:00")
    lab.get_by_label("End").fill(f"{day}T12:00")
    lab.get_by_role("button", name="Hold the instrument").click()
    lab.get_by_label("Upload a result").wait_for()
    result = tmp_path / "results.csv"
    result.write_text("sample,ng/mL\n1,4.2\n2,3.9\n3,5.1\n")
    lab.get_by_label("Upload a result").set_input_files(str(result))
    lab.get_by_role("button", name="Upload", exact=True).click()
    lab.get_by_text("The file is added.").wait_for()
    lab.get_by_role("button", name="Complete: results are ready").click()
    lab.locator("#sr-status", has_text="ompleted").wait_for()

    me.goto(request_url)
    with me.expect_download() as download:
        me.get_by_role("link", name="results.csv").click()
    saved = tmp_path / "downloaded.csv"
    download.value.save_as(saved)
    assert saved.read_text() == result.read_text()
    me.get_by_label("Rating").select_option("5")
    me.get_by_role("button", name="Rate the service").click()
    me.get_by_text("Rated 5/5").wait_for()
    shots(me, "service-request-completed")
    lab_context.close()
    me_context.close()

    session.rollback()
    done = session.exec(select(ServiceRequest)).one()
    assert done.status == RequestStatus.completed and done.quote_total == 90000
    assert done.booking_id is not None and done.rating == 5
