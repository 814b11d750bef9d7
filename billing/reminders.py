# ruff: noqa: RUF001  (Chinese text uses full-width punctuation on purpose)
"""Billing's reminders: a company's voucher with money left, a fortnight before it expires.

Registered with booking's reminder passes at start-up (`labshare.cli` imports this module).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from billing.models import Voucher, VoucherProgramme, VoucherStatus
from booking.reminders import EXPIRY_WARNING, Reminded, register, remind
from core.models import User
from core.money import format_money
from core.settings import get_settings

TEXTS = {
    "en": (
        "Your innovation voucher expires on {day}",
        "{left} of your voucher {code} is unused; it expires at the end of {day}. Use it on "
        "a booking at another institution before then.",
    ),
    "zh": (
        "您的创新券将于 {day} 到期",
        "您的创新券 {code} 尚有 {left} 未使用，将于 {day} 当日结束时失效，请在此之前用于其他单位的仪器预约。",
    ),
}


def voucher_expiry_reminders(session: Session, now: datetime, out: Reminded) -> None:
    today = now.astimezone(get_settings().zone).date()
    rows = session.exec(
        select(Voucher, VoucherProgramme, User)
        .join(VoucherProgramme, col(VoucherProgramme.id) == Voucher.programme_id)
        .join(User, col(User.id) == Voucher.applicant_id)
        .where(
            Voucher.status == VoucherStatus.approved,
            col(Voucher.expires_on) >= today,
            col(Voucher.expires_on) <= today + EXPIRY_WARNING,
            col(User.is_active).is_(True),
        )
    ).all()
    for voucher, programme, person in rows:
        if voucher.balance <= 0 or voucher.expires_on is None or person.id is None:
            continue
        subject, body = TEXTS.get(person.language, TEXTS["en"])
        values = {
            "day": voucher.expires_on.isoformat(),
            "code": f"{programme.code}-{voucher.id}",
            "left": format_money(voucher.balance, programme.currency),
        }
        out.count(
            "voucher",
            remind(
                session,
                key=f"reminder:voucher:{voucher.id}:{voucher.expires_on.isoformat()}",
                user_id=person.id,
                kind="reminder_voucher",
                subject=subject.format(**values),
                body=body.format(**values),
                data={"voucher_id": voucher.id, "expires_on": voucher.expires_on.isoformat()},
            ),
        )


register(voucher_expiry_reminders)
