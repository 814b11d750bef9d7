# ruff: noqa: RUF001  (Chinese text uses full-width punctuation on purpose)
"""The kiosk in a real browser: a tablet beside the instrument, in Chinese, checks a
booking in with its PIN after a wrong one, then out; nothing is wider than the tablet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from booking.attendance import booking_pin
from booking.models import Booking
from telemetry.models import UsageSession, UsageSource
from tests.e2e.conftest import Shots
from tests.factories import create_instrument, create_user

pytest.importorskip("playwright.sync_api")


def test_a_tablet_checks_in_and_out_in_chinese(
    browser,
    live_server: str,
    session: Session,
    shots: Shots,  # type: ignore[no-untyped-def]
) -> None:
    instrument = create_instrument(session, name="Orbitrap Exploris 480")
    booker = create_user(session)
    now = datetime.now(UTC)
    booking = Booking(instrument_id=instrument.id, user_id=booker.id,
                      start_at=now - timedelta(minutes=3), end_at=now + timedelta(hours=1))  # fmt: skip
    session.add(booking)
    session.commit()
    pin = booking_pin(booking.id)
    context = browser.new_context(
        viewport={"width": 800, "height": 1280},
        has_touch=True,
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
    )
    page = context.new_page()
    page.goto(f"{live_server}/instruments/{instrument.id}/kiosk")
    assert page.get_by_text("尚未签到").is_visible()
    # Big enough for a finger: the check-in button is at least 48 px tall.
    button = page.get_by_role("button", name="签到")
    assert button.bounding_box()["height"] >= 48
    field = page.get_by_label("您预约的 PIN")
    field.fill("000000" if pin != "000000" else "111111")
    button.click()
    assert page.get_by_role("alert").inner_text().startswith("该 PIN 不对应")
    page.get_by_label("您预约的 PIN").fill(pin)
    page.get_by_role("button", name="签到").click()
    page.get_by_text("已签到。使用完毕请在此签退。").wait_for()
    assert page.get_by_text("使用中").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    shots(page, "kiosk-checked-in-zh")
    page.get_by_label("您预约的 PIN").fill(pin)
    page.get_by_role("button", name="签退").click()
    page.get_by_text("已签退，谢谢。").wait_for()
    context.close()
    session.rollback()
    [usage] = session.exec(select(UsageSession)).all()
    assert usage.source == UsageSource.kiosk and usage.end_at is not None
    assert usage.booking_id == booking.id
