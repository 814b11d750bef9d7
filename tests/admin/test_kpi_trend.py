"""The KPI trend: one request for a range of months, the same figures as month by month."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session

from booking.models import Booking, BookingStatus
from tests.admin.helpers import at, build_network
from tests.factories import auth

API = "/api/v1/admin"
FIELDS = ("booked_hours", "used_hours", "open_hours", "external_hours", "utilisation")


def test_trend_equals_the_monthly_kpis(client: TestClient, session: Session) -> None:
    net = build_network(session)
    session.add_all([
        # Across the September/October boundary (16:00 UTC, midnight in the network's zone):
        # each month gets its clipped part, 6 h and 4 h.
        Booking(instrument_id=net.i1.id, user_id=net.ub.id, start_at=at(30, 10, month=9),
                end_at=at(30, 20, month=9), status=BookingStatus.completed),
        Booking(instrument_id=net.i2.id, user_id=net.uc.id, start_at=at(5, 1), end_at=at(5, 4),
                status=BookingStatus.confirmed),
        Booking(instrument_id=net.i3.id, user_id=net.uc.id, start_at=at(3, 1, month=11),
                end_at=at(3, 2, month=11), status=BookingStatus.no_show),
        Booking(instrument_id=net.i3.id, user_id=net.uc.id, start_at=at(4, 1, month=11),
                end_at=at(4, 2, month=11), status=BookingStatus.cancelled),
    ])  # fmt: skip
    session.commit()
    h = auth(net.admin)
    r = client.get(f"{API}/kpis/trend", params={"from": "2026-08", "to": "2026-12"}, headers=h)
    assert r.status_code == 200, r.text
    months = r.json()["months"]
    assert [m["period"] for m in months] == ["2026-08", "2026-09", "2026-10", "2026-11", "2026-12"]
    for month in months:
        k = client.get(f"{API}/kpis", params={"period": month["period"]}, headers=h).json()
        assert {f: month[f] for f in FIELDS} == {f: k[f] for f in FIELDS}, month["period"]
    # The fixture's figures are not all zero: the comparison means something.
    october = months[2]
    assert (october["used_hours"], october["external_hours"], october["booked_hours"]) == (
        15.0,
        10.0,
        7.0,  # 4 h of the boundary booking and I2's 3 h
    )
    assert months[1]["booked_hours"] == 6.0 and months[3]["booked_hours"] == 1.0
    one = client.get(f"{API}/kpis/trend", params={"from": "2026-10", "to": "2026-10"}, headers=h)
    assert one.json()["months"] == [october]


def test_trend_refuses_bad_ranges(client: TestClient, session: Session) -> None:
    net = build_network(session)
    h = auth(net.admin)
    bad = [
        {"from": "2026-10", "to": "2026-09"},  # ends before it starts
        {"from": "2024-01", "to": "2026-01"},  # 25 months
        {"from": "2026-13", "to": "2026-12"},
        {"from": "2026", "to": "2026-12"},
        {"from": "2026-01"},
        {"from": "2026-01", "to": "2026-02", "period": "2026-01"},
    ]
    for params in bad:
        r = client.get(f"{API}/kpis/trend", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
    ok = client.get(f"{API}/kpis/trend", params={"from": "2025-01", "to": "2026-12"}, headers=h)
    assert ok.status_code == 200 and len(ok.json()["months"]) == 24
    r = client.get(
        f"{API}/kpis/trend", params={"from": "2026-01", "to": "2026-02"}, headers=auth(net.ub)
    )
    assert r.status_code == 403
