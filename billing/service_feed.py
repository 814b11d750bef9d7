"""The service-record feed a provincial sharing platform pulls (大型仪器开放共享平台): every
service as billing records it (person, instrument, hours, content, fee), in pages after a
cursor, each page signed.

A record is a charge: written once per booking or walk-up session and never rewritten, so
its id orders the feed and a cursor past it never misses a later record. The platform keeps
the last page's `next` and asks again from there. Each page's JSON body is signed with
HMAC-SHA256 under the shared secret (LABSHARE_SERVICE_FEED_SECRET), sent in
`X-Labshare-Signature: sha256=<hex>`, so the platform can check a page came whole from us.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from billing.models import Charge, ChargeUnit
from booking.models import Booking
from core.models import User
from core.timeutil import to_utc_z
from instruments.models import Institution, Instrument

MAX_PAGE = 1000


def records_after(
    session: Session, *, after: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` records with a charge id above `after`, in id order, and the cursor for
    the next page (None when this one is the last so far)."""
    payer = sa.orm.aliased(Institution)
    provider = sa.orm.aliased(Institution)
    rows = session.execute(
        sa.select(
            col(Charge.id), col(Charge.kind), col(Charge.period), col(Charge.unit),
            col(Charge.quantity), col(Charge.amount), col(Charge.currency),
            col(Charge.service_start_at), col(Charge.service_end_at),
            col(Instrument.code), col(Instrument.name), col(Instrument.classification_code),
            col(User.id), col(User.name), col(payer.code), col(payer.name), col(provider.code),
            col(Booking.purpose),
        )
        .join(Instrument, col(Instrument.id) == Charge.instrument_id)
        .join(payer, col(payer.id) == Charge.payer_institution_id)
        .join(provider, col(provider.id) == Charge.provider_institution_id)
        .outerjoin(User, col(User.id) == Charge.user_id)
        .outerjoin(Booking, col(Booking.id) == Charge.booking_id)
        .where(col(Charge.id) > after)
        .order_by(col(Charge.id))
        .limit(limit + 1)
    ).all()  # fmt: skip
    items = [
        {
            "id": r[0],
            "kind": r[1].value if hasattr(r[1], "value") else r[1],
            "period": r[2],
            "hours": round(r[4] / 60, 2) if r[3] == ChargeUnit.minute else None,
            "samples": r[4] if r[3] == ChargeUnit.sample else None,
            "fee": r[5],
            "currency": r[6],
            "start": to_utc_z(r[7]),
            "end": to_utc_z(r[8]),
            "instrument": {"code": r[9], "name": r[10], "classification_code": r[11]},
            "person": {"id": r[12], "name": r[13]} if r[12] is not None else None,
            "unit": {"code": r[14], "name": r[15]},
            "provider": r[16],
            "content": r[17] or "",
        }
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return items, (items[-1]["id"] if more and items else None)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
