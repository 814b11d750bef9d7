"""KPIs and the national-assessment export against hand-computed figures."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from sqlmodel import Session

from booking.models import Booking, BookingStatus
from instruments.models import Qualification
from tests.admin.helpers import PERIOD, at, build_network

API = "/api/v1/admin"
OPEN_OCTOBER = 86_399 * 31  # the factory opens 00:00-23:59:59 every day


def test_kpis_figures(client: TestClient, session: Session) -> None:
    net = build_network(session)
    session.add_all([
        Booking(instrument_id=net.i1.id, user_id=net.ub.id, start_at=at(5, 1), end_at=at(5, 3),
                status=BookingStatus.completed),
        Booking(instrument_id=net.i1.id, user_id=net.uc.id, start_at=at(12, 1), end_at=at(12, 2),
                status=BookingStatus.no_show),
        Booking(instrument_id=net.i3.id, user_id=net.uc.id, start_at=at(13, 1), end_at=at(13, 2),
                status=BookingStatus.cancelled),
        Qualification(user_id=net.uc.id, instrument_id=net.i1.id, granted_at=at(6, 0)),
        Qualification(user_id=net.ub.id, instrument_id=net.i1.id, granted_at=at(6, 0, month=9)),
    ])  # fmt: skip
    session.commit()
    r = client.get(f"{API}/kpis", params={"period": PERIOD}, headers=_h(net))
    assert r.status_code == 200, r.text
    k = r.json()
    assert k["instruments"] == 3 and k["idle_instruments"] == 0
    assert k["used_hours"] == 15.0  # I1 6 h, I2 2 h, I3 7 h (1 h clipped, September excluded)
    assert k["external_hours"] == 10.0 and k["external_share"] == round(10 / 15, 4)
    assert k["booked_hours"] == 3.0 and k["bookings"] == 2 and k["no_shows"] == 1
    assert k["no_show_rate"] == 0.5
    assert k["utilisation"] == round(15 * 3600 / (3 * OPEN_OCTOBER), 4)
    assert (k["revenue"], k["external_revenue"], k["vouchers_used"]) == (80_000, 70_000, 25_000)
    assert k["people_trained"] == 1
    ua = next(g for g in k["by_institution"] if g["code"] == "UA")
    assert (ua["instruments"], ua["used_hours"], ua["external_hours"]) == (2, 8.0, 5.0)
    assert [g["code"] for g in k["by_lab"]] == ["LA", "LB"]
    assert k["by_category"][0]["instruments"] == 3

    per = client.get(f"{API}/kpis/instruments", params={"period": PERIOD, "limit": 2},
                     headers=_h(net)).json()  # fmt: skip
    assert [i["code"] for i in per["items"]] == ["I1", "I2"] and per["next"]
    assert per["items"][0]["booked_hours"] == 3.0 and per["items"][0]["people_trained"] == 1
    idle = client.get(f"{API}/kpis/instruments", params={"period": "2026-08", "idle": "true"},
                      headers=_h(net)).json()  # fmt: skip
    assert len(idle["items"]) == 3
    assert client.get(f"{API}/kpis", params={"period": "2026"}, headers=_h(net)).status_code == 422
    assert (
        client.get(f"{API}/kpis", params={"period": PERIOD, "x": 1}, headers=_h(net)).status_code
        == 422
    )


def test_assessment_export(client: TestClient, session: Session) -> None:
    net = build_network(session)
    session.add(Qualification(user_id=net.uc.id, instrument_id=net.i1.id, granted_at=at(6, 0)))
    session.commit()
    for period in (PERIOD, "2026"):
        r = client.get(f"{API}/reports/assessment.csv", params={"period": period}, headers=_h(net))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = {row["instrument_code"]: row for row in csv.DictReader(io.StringIO(r.text))}
        i1, i3 = rows["I1"], rows["I3"]
        assert (i1["effective_working_hours"], i1["external_service_hours"]) == ("6.00", "5.00")
        assert (i1["service_income"], i1["external_service_income"], i1["people_trained"]) == (
            "60000",
            "50000",
            "1",
        )
        # The year also holds I3's September session (8 h) and November's clipped hour.
        expected = "7.00" if period == PERIOD else "16.00"
        assert i3["effective_working_hours"] == expected


def _h(net: object) -> dict[str, str]:
    from tests.factories import auth

    return auth(net.admin)  # type: ignore[attr-defined]
