"""The kernel's small pieces: money, pagination tokens, passwords and tokens, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Invalid
from core.money import format_money, round_to_step
from core.pagination import decode_cursor, encode_cursor
from core.security import create_access_token, hash_password, read_access_token, verify_password
from core.timeutil import parse_aware, to_utc_z


@given(st.integers(min_value=0, max_value=2**62))
def test_cursor_round_trips(last_id: int) -> None:
    assert decode_cursor(encode_cursor(last_id)) == last_id


@pytest.mark.parametrize("token", ["garbage", "e30", "eyJhZnRlciI6LTF9", "eyJhZnRlciI6ImEifQ"])
def test_foreign_cursors_are_invalid(token: str) -> None:
    with pytest.raises(Invalid):
        decode_cursor(token)


def test_money_formats_minor_units() -> None:
    assert format_money(123456, "cny") == "1,234.56 CNY"
    assert format_money(-5, "usd") == "-0.05 USD"
    assert format_money(500, "jpy") == "500 JPY"
    assert round_to_step(149, 100) == 100
    assert round_to_step(150, 100) == 200


def test_passwords_and_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("LABSHARE_SECRET_KEY", "k" * 48)
    get_settings.cache_clear()
    try:
        hashed = hash_password("correct horse")
        assert verify_password(hashed, "correct horse")
        assert not verify_password(hashed, "wrong horse")
        assert not verify_password("not a hash", "correct horse")
        soon = datetime.now(UTC) + timedelta(minutes=5)
        claims = read_access_token(create_access_token(7, "s1", expires_at=soon))
        assert claims is not None and (claims.user_id, claims.session_id) == (7, "s1")
        past = datetime.now(UTC) - timedelta(seconds=1)
        assert read_access_token(create_access_token(7, "s1", expires_at=past)) is None
        assert read_access_token("not.a.token") is None
        # A token without an expiry, or without a session, is refused however well signed.
        import jwt

        key = get_settings().signing_key()
        no_exp = jwt.encode({"sub": "7", "sid": "s1", "iat": 1, "typ": "access"}, key, "HS256")
        no_sid = jwt.encode(
            {"sub": "7", "iat": 1, "exp": soon, "typ": "access"}, key, algorithm="HS256"
        )
        assert read_access_token(no_exp) is None and read_access_token(no_sid) is None
    finally:
        get_settings.cache_clear()


def test_times_need_an_offset() -> None:
    assert parse_aware("2026-12-01T09:00:00+08:00") == datetime(2026, 12, 1, 1, tzinfo=UTC)
    assert to_utc_z(datetime(2026, 12, 1, 1, tzinfo=UTC)) == "2026-12-01T01:00:00Z"
    with pytest.raises(Invalid):
        parse_aware("2026-12-01T09:00:00")
    with pytest.raises(Invalid):
        parse_aware("yesterday")


def test_a_built_model_is_the_one_its_constructor_makes(session) -> None:  # type: ignore[no-untyped-def]
    """core.db.built (the ORM's way of making a loaded row, for the booking path) gives what
    the model's own __init__ gives: the same fields, defaults and factories included, and the
    same row once written; it refuses what __init__ could not take."""
    from sqlmodel import select

    from booking.models import Booking, BookingStatus
    from core.db import built
    from tests.factories import create_instrument, create_user

    instrument, user = create_instrument(session), create_user(session)
    start = datetime(2031, 5, 6, 9, tzinfo=UTC)
    given_ = {"instrument_id": instrument.id, "user_id": user.id, "status": BookingStatus.pending}
    made = [
        Booking(start_at=start, end_at=start + timedelta(hours=1), **given_),
        built(
            Booking,
            start_at=start + timedelta(hours=2),
            end_at=start + timedelta(hours=3),
            **given_,
        ),
    ]
    dumped = [
        m.model_dump(exclude={"start_at", "end_at", "created_at", "updated_at"}) for m in made
    ]
    assert dumped[0] == dumped[1]
    assert made[0].__pydantic_fields_set__ == made[1].__pydantic_fields_set__
    assert made[1].created_at is not None and made[1].version == 1 and made[1].purpose == ""
    session.add_all(made)
    session.commit()
    rows = session.exec(select(Booking).order_by(Booking.id)).all()
    assert [(r.status, r.version, r.purpose, r.assistance) for r in rows] == [
        (BookingStatus.pending, 1, "", None)
    ] * 2
    with pytest.raises(TypeError, match="missing"):
        built(Booking, instrument_id=1)
    with pytest.raises(TypeError, match="unknown"):
        built(Booking, start_at=start, end_at=start, no_such_field=1, **given_)


def test_a_model_built_first_in_a_process_takes_its_attributes() -> None:
    """The mappers are configured on first use (the constructor's init event does it, and
    built() must too): building a booking before any query, then setting its id, once
    failed with AttributeError in a fresh process."""
    import subprocess
    import sys

    probe = (
        "from datetime import UTC, datetime\n"
        "from booking.models import Booking\n"
        "from core.db import built\n"
        "now = datetime.now(UTC)\n"
        "b = built(Booking, instrument_id=1, user_id=2, start_at=now, end_at=now)\n"
        "b.id = 5\n"
        "print(b.id, b.version)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5", "1"]
