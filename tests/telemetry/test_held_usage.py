"""A gateway names people only by registered badges; what it cannot vouch for is held.

The attack this answers: the XJTU-ATC gateway published an eight-hour session, backdated
ten days, with `"user": "1"` (a raw user id), and the invoice run charged 1,680.00 CNY to
a researcher at another institution who had no booking and no qualification.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.invoices import invoice_run
from billing.models import Charge
from core.models import Role, User
from instruments.models import Instrument, Lab, Qualification
from telemetry.models import UsageReview, UsageSession
from telemetry.protocol import encode, events_topic
from telemetry.store import Directory, Incoming, write_batch
from tests.factories import (
    auth,
    create_badge,
    create_institution,
    create_lab,
    create_user,
)
from tests.telemetry.conftest import Net

_seq = iter(range(1, 10**6))


def publish(engine: Engine, net: Net, start: datetime, end: datetime, user: str | None) -> None:
    """A gateway's session_start and session_end for the net's first instrument."""
    topic = events_topic(net.gateway.uid, net.codes[0])
    batch = [
        Incoming(
            0, 1, topic, encode(id=f"h{next(_seq)}", ts=start, type="session_start", user=user)
        ),
        Incoming(0, 1, topic, encode(id=f"h{next(_seq)}", ts=end, type="session_end", user=user)),
    ]
    assert write_batch(engine, Directory(), batch).dead == 0


def sessions(session: Session) -> list[UsageSession]:
    session.commit()
    session.expire_all()
    return list(session.exec(select(UsageSession).order_by(col(UsageSession.id))))


def period_of(moment: datetime) -> str:
    from core.settings import get_settings

    return moment.astimezone(get_settings().zone).strftime("%Y-%m")


def charges(session: Session) -> list[Charge]:
    session.commit()
    session.expire_all()
    return list(session.exec(select(Charge)))


def test_a_raw_user_id_backdated_ten_days_bills_nobody(
    engine: Engine, session: Session, net: Net
) -> None:
    victim = create_user(session, institution=create_institution(session))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    publish(engine, net, start, start + timedelta(hours=8), user=str(victim.id))
    [usage] = sessions(session)
    assert usage.review == UsageReview.held
    assert usage.user_id is None and "unknown badge" in (usage.hold_reason or "")
    with Session(engine) as s:
        invoice_run(s, period=period_of(start))
        s.commit()
    assert charges(session) == []


def test_what_is_held_and_what_is_accepted(engine: Engine, session: Session, net: Net) -> None:
    lab = session.get(Lab, session.exec(select(Instrument.lab_id).where(
        Instrument.id == net.instrument_ids[0])).one())  # fmt: skip
    insider = create_user(session, lab=lab)
    create_badge(session, insider, "B-IN")
    now = datetime.now(UTC).replace(microsecond=0)
    # On time, a registered badge, no qualification needed: accepted.
    publish(engine, net, now - timedelta(hours=3), now - timedelta(hours=2), user="B-IN")
    # A badge nobody registered: held.
    publish(engine, net, now - timedelta(hours=2), now - timedelta(hours=1), user="B-NOBODY")
    # Reported more than a day after it began: held, even with a good badge.
    publish(engine, net, now - timedelta(days=2), now - timedelta(days=2, hours=-1), user="B-IN")
    # The instrument now needs a qualification the person lacks: held.
    instrument = session.get(Instrument, net.instrument_ids[0])
    assert instrument is not None
    instrument.qualification_required = True
    session.add(instrument)
    session.commit()
    publish(engine, net, now - timedelta(minutes=50), now - timedelta(minutes=40), user="B-IN")
    # ...and once qualified, accepted again.
    session.add(Qualification(user_id=insider.id, instrument_id=instrument.id))
    session.commit()
    publish(engine, net, now - timedelta(minutes=30), now - timedelta(minutes=20), user="B-IN")
    found = [(u.review, u.hold_reason or "") for u in sessions(session)]
    assert [r for r, _ in found] == [
        UsageReview.accepted,
        UsageReview.held,
        UsageReview.held,
        UsageReview.held,
        UsageReview.accepted,
    ]
    assert "unknown badge 'B-NOBODY'" in found[1][1]
    assert "after it started" in found[2][1]
    assert "not qualified" in found[3][1]


def test_the_lab_confirms_or_dismisses_and_only_confirmed_is_billed(
    client: TestClient, engine: Engine, session: Session, net: Net
) -> None:
    lab = session.exec(select(Lab).where(Lab.code == net.lab_code)).one()
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    insider = create_user(session, lab=lab)
    stranger = create_user(session, institution=create_institution(session))
    start = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    publish(engine, net, start, start + timedelta(hours=2), user="B-LOST")
    publish(engine, net, start + timedelta(hours=3), start + timedelta(hours=4), user="B-LOST")
    first, second = sessions(session)

    held = client.get(f"/api/v1/labs/{net.lab_code}/usage/held", headers=auth(manager))
    assert held.status_code == 200
    assert [u["id"] for u in held.json()] == [first.id, second.id]
    assert held.json()[0]["review"] == "held"

    # A lab cannot pin a session on someone from elsewhere, and cannot tell they exist.
    as_stranger = client.post(
        f"/api/v1/usage/{first.id}/confirm", json={"email": stranger.email}, headers=auth(manager)
    )
    as_nobody = client.post(
        f"/api/v1/usage/{first.id}/confirm", json={"email": "no@one.org"}, headers=auth(manager)
    )
    assert as_stranger.status_code == as_nobody.status_code == 404
    assert as_stranger.json() == as_nobody.json()

    confirmed = client.post(
        f"/api/v1/usage/{first.id}/confirm", json={"email": insider.email}, headers=auth(manager)
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["review"] == "confirmed" and confirmed.json()["user_id"] == insider.id
    dismissed = client.post(
        f"/api/v1/usage/{second.id}/dismiss", json={"reason": "test card"}, headers=auth(manager)
    )
    assert dismissed.status_code == 200 and dismissed.json()["review"] == "dismissed"
    again = client.post(f"/api/v1/usage/{second.id}/dismiss", json={}, headers=auth(manager))
    assert again.status_code == 409

    session.commit()  # end the read snapshot (SQLite WAL) before this session writes
    other_manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    assert (
        client.post(
            f"/api/v1/usage/{first.id}/dismiss", json={}, headers=auth(other_manager)
        ).status_code
        == 404
    )

    with Session(engine) as s:
        invoice_run(s, period="2026-11")
        s.commit()
    billed = charges(session)
    assert [(c.kind, c.usage_session_id, c.user_id) for c in billed] == [
        ("walk_up", first.id, insider.id)
    ]


def test_badges_are_registered_by_the_lab_for_its_people(
    client: TestClient, engine: Engine, session: Session, net: Net
) -> None:
    lab = session.exec(select(Lab).where(Lab.code == net.lab_code)).one()
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    insider = create_user(session, lab=lab)
    stranger = create_user(session, institution=create_institution(session))
    url = f"/api/v1/labs/{net.lab_code}/badges"

    made = client.post(url, json={"code": "CARD-1", "email": insider.email}, headers=auth(manager))
    assert made.status_code == 201, made.text
    taken = client.post(url, json={"code": "CARD-1", "email": insider.email}, headers=auth(manager))
    assert taken.status_code == 409
    strange = client.post(
        url, json={"code": "CARD-2", "email": stranger.email}, headers=auth(manager)
    )
    unknown = client.post(url, json={"code": "CARD-3", "email": "x@y.org"}, headers=auth(manager))
    assert strange.status_code == unknown.status_code == 404
    assert strange.json() == unknown.json()
    session.commit()
    other_manager = create_user(session, role=Role.lab_manager, lab=create_lab(session))
    assert client.get(url, headers=auth(other_manager)).status_code == 403
    assert client.get(url, headers=auth(insider)).status_code == 403
    assert [b["code"] for b in client.get(url, headers=auth(manager)).json()] == ["CARD-1"]

    now = datetime.now(UTC).replace(microsecond=0)
    publish(engine, net, now - timedelta(hours=2), now - timedelta(hours=1), user="CARD-1")
    assert (
        client.delete(f"/api/v1/badges/{made.json()['id']}", headers=auth(manager)).status_code
        == 204
    )
    publish(engine, net, now - timedelta(minutes=50), now - timedelta(minutes=40), user="CARD-1")
    kept, after_revoke = sessions(session)
    assert (kept.review, kept.user_id) == (UsageReview.accepted, insider.id)
    assert after_revoke.review == UsageReview.held

    session.commit()
    admin = create_user(session, role=Role.network_admin)
    anywhere = client.post(
        "/api/v1/badges", json={"code": "CITY-9", "email": stranger.email}, headers=auth(admin)
    )
    assert anywhere.status_code == 201 and anywhere.json()["lab"] is None
    assert (
        client.post(
            "/api/v1/badges",
            json={"code": "CITY-10", "email": insider.email},
            headers=auth(manager),
        ).status_code
        == 403
    )
    session.expire_all()
    assert session.get(User, stranger.id) is not None


def test_the_usage_page_shows_held_sessions_and_confirms_them(
    client: TestClient, engine: Engine, session: Session, net: Net
) -> None:
    from tests.labshare.pages_helpers import csrf_of, page_sign_in

    lab = session.exec(select(Lab).where(Lab.code == net.lab_code)).one()
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    insider = create_user(session, lab=lab)
    now = datetime.now(UTC).replace(microsecond=0)
    publish(engine, net, now - timedelta(hours=2), now - timedelta(hours=1), user="B-UNKNOWN")
    [held] = sessions(session)
    page_sign_in(client, manager.email)
    page = client.get("/lab/usage")
    assert page.status_code == 200
    assert f'id="held-{held.id}"' in page.text and "unknown badge" in page.text
    token = csrf_of(client, "/lab/usage")
    answer = client.post(
        f"/lab/usage/{held.id}/confirm",
        data={"email": insider.email, "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    [confirmed] = sessions(session)
    assert (confirmed.review, confirmed.user_id) == (UsageReview.confirmed, insider.id)
    assert f'id="held-{held.id}"' not in client.get("/lab/usage").text
    badges_page = client.get("/lab/badges")
    assert badges_page.status_code == 200 and "Register" in badges_page.text
