"""Domain events: what happened, written in the same transaction as the change itself.

Any domain records an event with `emit()` (a booking was created, an invoice was paid); it
commits or rolls back with the change, so nothing outside ever hears of a change that did
not happen, and nothing that happened goes unheard. Outgoing webhooks (`admin.webhooks`)
read this table: a sender fans each new event out to the endpoints that asked for it.

The kernel owns the table because every domain writes it; it imports none of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, Index
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Column, Field, Session, SQLModel

from core.db import UTCDateTime
from core.models import utcnow

# Every event type there is, so an endpoint cannot subscribe to a misspelling.
EVENT_TYPES: tuple[str, ...] = (
    "booking.created",
    "booking.confirmed",
    "booking.cancelled",
    "booking.displaced",
    "usage.session_closed",
    "invoice.finalized",
    "invoice.paid",
    "voucher.applied",
    "voucher.approved",
    "voucher.rejected",
    "voucher.used",
    "voucher.claim_submitted",
    "voucher.claim_decided",
    "incident.reported",
    "incident.closed",
    "service_request.changed",
)


class Event(SQLModel, table=True):
    """One thing that happened, for the webhooks to carry. `lab_id` scopes it: a lab's
    endpoints hear its own events; the network's endpoints hear all."""

    __table_args__ = (
        # The sender's work list: events not yet fanned out to endpoints.
        Index(
            "ix_event_undispatched",
            "id",
            sqlite_where=sa.text("dispatched_at IS NULL"),
            postgresql_where=sa.text("dispatched_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=64)
    lab_id: int | None = Field(default=None, foreign_key="lab.id", index=True)
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


_INSERT_EVENT = sa.insert(Event)


def emit(
    session: Session,
    type: str,
    *,
    lab_id: int | None,
    data: dict[str, Any],
    now: datetime | None = None,
) -> None:
    """Record that `type` happened (with the ids and figures in `data`); the caller's
    transaction commits it with the change. One INSERT at once, past the ORM's unit of
    work: nothing reads an event back in the transaction that records it."""
    _known(type)
    session.connection().execute(
        _INSERT_EVENT,
        {"type": type, "lab_id": lab_id, "data": data, "occurred_at": now or utcnow()},
    )


def _known(type: str) -> None:
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")


# (an INSERT ... RETURNING id, the data key for that id) -> the same INSERT and its event
_WITH_EVENT: dict[tuple[sa.Insert, str], sa.Insert] = {}


def _with_event(insert: sa.Insert, id_key: str) -> sa.Insert:
    """`insert` as a data-modifying WITH whose new id goes into the event's data."""
    found = _WITH_EVENT.get((insert, id_key))
    if found is None:
        new = insert.cte("new_row")
        events = Event.__table__.c  # type: ignore[attr-defined]
        data = sa.cast(
            sa.cast(sa.bindparam("event_data", type_=JSONB), JSONB).op("||")(
                sa.func.jsonb_build_object(sa.literal(id_key), new.c.id)
            ),
            events.data.type,
        )
        found = _WITH_EVENT[(insert, id_key)] = (
            sa.insert(Event)
            .from_select(
                ["type", "lab_id", "data", "occurred_at"],
                sa.select(
                    sa.bindparam("event_type", type_=sa.String()),
                    sa.bindparam("event_lab_id", type_=sa.Integer()),
                    data,
                    sa.bindparam("event_at", type_=events.occurred_at.type),
                ).select_from(new),
            )
            .add_cte(new)
            .returning(sa.select(new.c.id).scalar_subquery())
        )
    return found


def insert_with_event(
    session: Session,
    insert: sa.Insert,
    values: dict[str, Any],
    type: str,
    *,
    lab_id: int | None,
    data: dict[str, Any],
    id_key: str,
    now: datetime | None = None,
) -> int | None:
    """INSERT one row (`insert` names its values as parameters and returns the new id) and
    record its event, the new id in the event's data under `id_key`; returns the id (None
    when `insert`, an INSERT ... SELECT, found nothing to insert: no event either). On
    PostgreSQL in one statement, a round trip less for every booking; elsewhere two."""
    _known(type)
    at = now or utcnow()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        event = {"event_type": type, "event_lab_id": lab_id, "event_data": data, "event_at": at}
        return connection.execute(
            _with_event(insert, id_key), {**values, **event}
        ).scalar_one_or_none()
    new_id = connection.execute(insert, values).scalar_one_or_none()
    if new_id is not None:
        emit(session, type, lab_id=lab_id, data={id_key: new_id, **data}, now=at)
    return new_id


def emit_many(
    session: Session,
    type: str,
    rows: list[tuple[int | None, dict[str, Any]]],
    *,
    now: datetime | None = None,
) -> None:
    """Record many events of one type at once, (lab_id, data) each: one INSERT, for a
    month's close that finalizes thousands of invoices."""
    _known(type)
    if not rows:
        return
    at = now or utcnow()
    session.execute(
        sa.insert(Event),
        [{"type": type, "lab_id": lab, "data": data, "occurred_at": at} for lab, data in rows],
    )
