"""The catalog pages, sign-in by cookie, CSRF and languages, over real HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from core.models import Role
from tests.factories import create_institution, create_instrument, create_lab, create_user
from tests.labshare.pages_helpers import csrf_of, page_sign_in


def test_catalog_search_filters_and_pages(client: TestClient, session: Session) -> None:
    lab = create_lab(session, code="CHEM1", name="Chemistry Core")
    for n in range(27):
        create_instrument(session, lab=lab, name=f"Orbitrap {n:02d}", manufacturer="Thermo")
    create_instrument(session, name="Cryo-EM Krios")

    page = client.get("/", params={"q": "orbitrap"})
    assert page.status_code == 200
    assert "Orbitrap 00" in page.text and "Orbitrap 24" in page.text
    assert "Orbitrap 25" not in page.text and "Cryo-EM" not in page.text
    assert 'rel="next"' in page.text
    next_url = page.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    rest = client.get(next_url.replace("&amp;", "&"))
    assert "Orbitrap 25" in rest.text and "Orbitrap 26" in rest.text
    assert "Orbitrap 00" not in rest.text

    by_lab = client.get("/", params={"lab": "CHEM1", "q": "krios"})
    assert "No instruments match." in by_lab.text
    assert "Cryo-EM Krios" in client.get("/", params={"category": "ms-lc", "q": "krios"}).text
    bad = client.get("/", params={"lab": "NOPE"})
    assert bad.status_code == 422 and "no lab with the code" in bad.text


def test_catalog_results_come_best_first_with_what_people_choose_by(
    client: TestClient, session: Session
) -> None:
    from instruments.models import Rate

    lab = create_lab(session, name="Proteomics Core")
    create_instrument(session, lab=lab, name="LC system", model="Orbitrap Exploris")
    named = create_instrument(session, lab=lab, name="Orbitrap Eclipse")
    trained = create_instrument(
        session, lab=lab, name="Orbitrap Astral", qualification_required=True
    )
    create_instrument(session, lab=lab, name="Cryo-EM Krios")
    # Another university's researcher pays the academic rate; a company the company rate.
    session.add(Rate(instrument_id=named.id, payer_class="company", amount=90000, currency="cny"))
    session.commit()
    elsewhere = create_user(session, institution=create_institution(session))

    signed_out = client.get("/", params={"q": "orbitrap"}).text
    assert "3 instruments" in signed_out
    # A name that starts with the words first (by name), a model that holds them last.
    assert signed_out.index("Orbitrap Astral") < signed_out.index("Orbitrap Eclipse")
    assert signed_out.index("Orbitrap Eclipse") < signed_out.index("LC system")
    assert "Sign in for your price" in signed_out
    row = signed_out.split("Orbitrap Astral", 1)[1].split("</tr>", 1)[0]
    assert "Training needed" in row
    assert f"/instruments/{trained.id}?at=" in row  # next free, opening the calendar there

    browser = TestClient(client.app)
    page_sign_in(browser, elsewhere.email)
    mine = browser.get("/", params={"q": "orbitrap"}).text
    eclipse = mine.split("Orbitrap Eclipse", 1)[1].split("</tr>", 1)[0]
    assert "300.00 CNY / hour" in eclipse and "900.00" not in eclipse


def test_find_a_free_slot_across_a_category_and_book_it(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session, name="Imaging Core")
    krios = create_instrument(session, lab=lab, name="Krios G4", lead_minutes=0)
    user = create_user(session)
    browser = TestClient(client.app)
    page_sign_in(browser, user.email)
    assert "Find a free slot across a category" in browser.get("/").text
    found = browser.get("/find", params={"category": "ms-lc", "hours": "2"})
    assert found.status_code == 200 and "Krios G4" in found.text and "Imaging Core" in found.text
    start = found.text.split('name="start" value="', 1)[1].split('"', 1)[0]
    end = found.text.split('name="end" value="', 1)[1].split('"', 1)[0]
    booked = browser.post(
        f"/instruments/{krios.id}/book",
        data={"start": start, "end": end, "csrf_token": csrf_of(browser)},
    )
    assert booked.status_code == 201 and "Booked." in booked.text
    unknown = browser.get("/find", params={"category": "nope"})
    assert unknown.status_code == 422 and "no category with the code" in unknown.text


def test_retired_instruments_are_hidden_unless_asked_for(
    client: TestClient, session: Session
) -> None:
    from instruments.models import InstrumentStatus

    create_instrument(session, name="Old Krios").status = InstrumentStatus.retired
    create_instrument(session, name="New Krios")
    session.commit()
    default = client.get("/", params={"q": "krios"}).text
    assert "New Krios" in default and "Old Krios" not in default
    everything = client.get("/", params={"q": "krios", "status": "all"}).text
    assert "New Krios" in everything and "Old Krios" in everything
    retired = client.get("/", params={"q": "krios", "status": "retired"}).text
    assert "Old Krios" in retired and "New Krios" not in retired


def test_instrument_page_shows_rules_rates_and_calendar(
    client: TestClient, session: Session
) -> None:
    instrument = create_instrument(session, name="NMR 600", location="Building 3, room 101")
    page = client.get(f"/instruments/{instrument.id}")
    assert page.status_code == 200
    for text in ("NMR 600", "Building 3, room 101", "300.00 CNY / hour", "Booking rules"):
        assert text in page.text
    assert 'id="calendar"' in page.text
    assert "/static/vendor/fullcalendar/fullcalendar.min.js" in page.text
    missing = client.get("/instruments/999999")
    assert missing.status_code == 404 and "no instrument 999999" in missing.text
    assert missing.headers["content-type"].startswith("text/html")


def test_sign_in_sets_a_secure_session_cookie(client: TestClient, session: Session) -> None:
    user = create_user(session, email="ada@example.org")
    token = csrf_of(client, "/signin")
    wrong = client.post(
        "/signin", data={"email": user.email, "password": "nope-nope", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "Wrong email or password." in wrong.text

    response = client.post(
        "/signin",
        data={
            "email": user.email,
            "password": "correct horse battery",
            "csrf_token": token,
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"  # never off-site
    cookie = response.headers["set-cookie"].lower()
    assert "labshare_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "ada@example.org" in client.get("/").text
    # The API accepts the same cookie.
    assert client.get("/api/v1/me").json()["email"] == "ada@example.org"

    signout = client.post("/signout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert signout.status_code == 303
    assert "ada@example.org" not in client.get("/").text


def test_forms_refuse_a_missing_or_forged_csrf_token(client: TestClient, session: Session) -> None:
    user = create_user(session)
    csrf_of(client, "/signin")  # the CSRF cookie is set
    for token in (None, "0" * 64):
        data = {"email": user.email, "password": "correct horse battery"}
        if token:
            data["csrf_token"] = token
        response = client.post("/signin", data=data, follow_redirects=False)
        assert response.status_code == 403
        assert "labshare_session" not in response.headers.get("set-cookie", "")
    # A token from another browser (another CSRF cookie) is refused too.
    other = TestClient(client.app)
    stolen = csrf_of(other, "/signin")
    response = client.post(
        "/signin",
        data={"email": user.email, "password": "correct horse battery", "csrf_token": stolen},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_cookie_signed_api_writes_need_the_csrf_header(
    client: TestClient, session: Session
) -> None:
    lab = create_lab(session)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    instrument = create_instrument(session, lab=lab)
    page_sign_in(client, manager.email)
    url = f"/api/v1/instruments/{instrument.id}"
    refused = client.patch(url, json={"name": "Renamed"})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    token = csrf_of(client)
    accepted = client.patch(url, json={"name": "Renamed"}, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 200 and accepted.json()["name"] == "Renamed"


def test_language_by_browser_and_by_choice(client: TestClient, session: Session) -> None:
    create_instrument(session)
    assert "查找仪器" in client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert (
        "Find an instrument"
        in client.get("/", headers={"Accept-Language": "en;q=1, zh;q=0.5"}).text
    )
    assert "Find an instrument" in client.get("/", headers={"Accept-Language": "fr"}).text
    token = csrf_of(client)
    client.post("/lang", data={"lang": "zh", "csrf_token": token, "next": "/"})
    page = client.get("/", headers={"Accept-Language": "en"})
    assert '<html lang="zh-CN">' in page.text and "查找仪器" in page.text


def test_pages_work_by_keyboard_and_on_a_phone(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    for path in ("/", f"/instruments/{instrument.id}", "/signin"):
        html = client.get(path).text
        assert 'class="skip-link" href="#main"' in html and 'id="main"' in html
        assert 'name="viewport"' in html
        # Every visible input has a label.
        import re

        for input_id in re.findall(r'<(?:input|select|textarea)[^>]*\sid="([^"]+)"', html):
            assert f'for="{input_id}"' in html, f"{path}: #{input_id} has no label"


def test_only_a_bearer_token_that_authenticates_skips_csrf(
    client: TestClient, session: Session
) -> None:
    """Cookie + `Authorization: Basic x` booked without a CSRF token."""
    from tests.booking.helpers import at, body
    from tests.factories import auth, create_instrument

    user = create_user(session)
    instrument = create_instrument(session)
    page_sign_in(client, user.email)
    booking = body(instrument.id, at(3, 10), at(3, 11))
    for header in ("Basic eA==", "Bearer not-a-token", "Token abc"):
        refused = client.post("/api/v1/bookings", json=booking, headers={"Authorization": header})
        assert refused.status_code == 403, (header, refused.text)
        assert "X-CSRF-Token" in refused.json()["detail"]
    bearer = client.post("/api/v1/bookings", json=booking, headers=auth(user))
    assert bearer.status_code == 201, bearer.text
    with_token = client.post(
        "/api/v1/bookings",
        json=body(instrument.id, at(4, 10), at(4, 11)),
        headers={"X-CSRF-Token": csrf_of(client, "/")},
    )
    assert with_token.status_code == 201, with_token.text


def test_input_a_handler_left_unchecked_is_a_422_with_its_field(client: TestClient) -> None:
    """A schema refusing what a form carried, where its handler forgot to catch that, is the
    person's input: a page (or the API's JSON) naming the field, not a 500."""
    from pydantic import BaseModel, Field

    class Grant(BaseModel):
        email: str = Field(pattern="@")

    def unchecked() -> None:
        Grant(email="no-at-sign")

    client.app.add_api_route("/unchecked", unchecked)  # type: ignore[attr-defined]
    client.app.add_api_route("/api/v1/unchecked", unchecked)  # type: ignore[attr-defined]
    page = client.get("/unchecked")
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]
    assert "email: String should match pattern" in page.text
    answer = client.get("/api/v1/unchecked")
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("email: String should match pattern")


def test_a_form_past_the_size_limit_is_answered_with_a_page_and_the_way_back(
    client: TestClient, session: Session
) -> None:
    """A calendar file over 2 MiB posted from the lab's page: the page's 413 in the person's
    language with a link back to the form (it was the API's raw JSON); programs still get
    JSON."""
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    page_sign_in(client, manager.email)
    token = csrf_of(client, f"/lab/instruments/{instrument.id}")
    form = f"http://testserver/lab/instruments/{instrument.id}?tab=calendars"
    big = b"BEGIN:VCALENDAR\r\n" + b"X" * (3 * 1024 * 1024)
    answer = client.post(
        f"/lab/instruments/{instrument.id}/calendars",
        data={"csrf_token": token},
        files={"file": ("big.ics", big, "text/calendar")},
        headers={"Referer": form},
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert "what was sent is larger than 2 MB; nothing was saved" in answer.text
    assert f'href="/lab/instruments/{instrument.id}?tab=calendars">Back to the form' in answer.text
    assert "Sign in" not in answer.text  # the person is not known before the body is read
    client.cookies.set("labshare_lang", "zh")
    answer = client.post(
        f"/lab/instruments/{instrument.id}/calendars",
        files={"file": ("big.ics", big, "text/calendar")},
        headers={"Referer": "http://elsewhere.example/x"},
    )
    assert answer.status_code == 413 and "提交的内容超过 2 MB" in answer.text
    assert "elsewhere" not in answer.text and 'href="/"' in answer.text
    api = client.post("/api/v1/bookings", content=big, headers={"Content-Type": "application/json"})
    assert api.status_code == 413 and api.json()["limit"] == 1024 * 1024


def test_the_language_switch_on_a_refused_form_returns_to_the_form_page(
    client: TestClient, session: Session
) -> None:
    """An error shown in answer to a form: switching language came back to the form's
    address by GET, a 405. It now comes back to the page the form was on."""
    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    page_sign_in(client, manager.email)
    url = f"/lab/instruments/{instrument.id}"
    token = csrf_of(client, url)
    refused = client.post(
        f"{url}/qualifications",
        data={"email": "not-an-email", "csrf_token": token},
        headers={"Referer": f"http://testserver{url}"},
    )
    assert refused.status_code == 422
    assert f'name="next" value="{url}"' in refused.text
    switched = client.post(
        "/lang", data={"lang": "zh", "next": url, "csrf_token": token}, follow_redirects=True
    )
    assert switched.status_code == 200 and instrument.name in switched.text
    # Without a page to return to (no Referer, or another site's), the catalog.
    refused = client.post(
        f"{url}/qualifications", data={"email": "x", "csrf_token": token},
        headers={"Referer": "http://elsewhere.example/"},
    )  # fmt: skip
    assert 'name="next" value="/"' in refused.text
