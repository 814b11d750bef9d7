"""Outgoing webhooks: endpoints outside labshare that hear its events, signed as Stripe signs.

A lab's manager registers endpoints for the lab's own events; a network administrator for
every event (an endpoint without a lab). Each event (`core.events`) is fanned out once to
the endpoints that asked for its type, as a delivery; a sender posts deliveries when due:

- the body is JSON (`id`, `type`, `created`, `data`), signed in `Labshare-Signature` as
  `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>`, so a
  receiver checks it the way it checks Stripe's (and refuses a stale timestamp);
- a 2xx answer delivers it; anything else is retried with backoff (1 min, 5 min, 30 min,
  2 h, 6 h, 12 h, 24 h), then the delivery fails and a person can replay it;
- every try is recorded with the status and the start of the answer;
- two senders never post one delivery at once: a sender leases a delivery with a
  conditional UPDATE before posting it (an expired lease is taken again, so a sender that
  died mid-post is covered: delivery is at least once, and the event id lets a receiver
  drop a repeat).

The URL follows the calendar URLs' rules (`core.outbound`): public addresses only, checked
when registered and again at every connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy import func, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from admin.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from core.audit import audit_record
from core.db import get_engine, is_postgres, session_scope
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.events import EVENT_TYPES, Event
from core.models import Role, User
from core.outbound import (
    Fetched,
    FetchFailed,
    UnsafeUrl,
    checked_address,
    fetch,
    normalise_http_url,
    system_resolver,
)
from core.settings import get_settings
from core.timeutil import utcnow

SIGNATURE_HEADER = "Labshare-Signature"
# Seconds to wait after each failed try; after the last, the delivery has failed.
BACKOFF = (60, 300, 1800, 7200, 21600, 43200, 86400)
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE = timedelta(minutes=5)
POST_TIMEOUT = 10.0
ANSWER_KEPT = 1000
# Events, their deliveries and tries are kept this long, then pruned.
KEEP = timedelta(days=30)
MAX_ENDPOINTS_PER_SCOPE = 20
# Events fanned out per transaction, and at most this many transactions a pass.
DISPATCH_BATCH = 1000
MAX_DISPATCH_ROUNDS = 50


class EndpointNotFound(NotFound):
    def __init__(self, endpoint_id: int) -> None:
        super().__init__(f"no webhook endpoint {endpoint_id}")


class DeliveryNotFound(NotFound):
    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"no webhook delivery {delivery_id}")


# ------------------------------------------------------------------------------- signing


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, body: bytes, header: str, *, tolerance: int = 300, now: float | None = None
) -> bool:
    """What a receiver does: the header's v1 matches and its timestamp is recent."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


def event_body(event: Event) -> bytes:
    """The JSON an endpoint receives for an event (the same bytes on every try)."""
    return json.dumps(
        {
            "id": f"evt_{event.id}",
            "type": event.type,
            "created": int(event.occurred_at.timestamp()),
            "lab_id": event.lab_id,
            "data": event.data,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


# ----------------------------------------------------------------------------- endpoints


def _check_events(events: Sequence[str]) -> list[str]:
    families = {t.split(".", 1)[0] for t in EVENT_TYPES}
    chosen: list[str] = []
    for name in events:
        name = name.strip()
        if name in EVENT_TYPES or name == "*" or (name.endswith(".*") and name[:-2] in families):
            chosen.append(name)
        else:
            raise Invalid(f"events: unknown event type {name!r}")
    if not chosen:
        raise Invalid("events: choose at least one event type")
    return sorted(set(chosen))


def _scope(user: User, lab_id: int | None) -> int | None:
    """The lab an endpoint serves, as `user` may register it."""
    if user.role == Role.network_admin:
        return lab_id
    if user.role == Role.lab_manager and user.lab_id is not None:
        if lab_id not in (None, user.lab_id):
            raise Forbidden("a lab manager registers endpoints for their own lab")
        return user.lab_id
    raise Forbidden("only a lab manager or a network administrator manages webhooks")


def _may_see(user: User, endpoint: WebhookEndpoint) -> bool:
    if user.role == Role.network_admin:
        return True
    return (
        user.role == Role.lab_manager and user.lab_id is not None and endpoint.lab_id == user.lab_id
    )


def check_url(url: str) -> str:
    """A URL an endpoint may have: http(s), and a public address unless the setting allows
    private ones (UnsafeUrl, a 422, otherwise)."""
    url = normalise_http_url(url)
    if get_settings().webhook_allow_private_urls:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        checked_address(
            host,
            parts.port or (443 if parts.scheme == "https" else 80),
            allow_private=False,
            resolve=system_resolver,
        )
    except FetchFailed as exc:
        raise UnsafeUrl(f"url: {exc}")
    return url


def endpoint_create(
    session: Session,
    *,
    user: User,
    url: str,
    events: Sequence[str],
    description: str = "",
    lab_id: int | None = None,
) -> WebhookEndpoint:
    """Register an endpoint (its secret is shown to whoever registers it)."""
    scope = _scope(user, lab_id)
    url = check_url(url)
    chosen = _check_events(events)
    held = session.exec(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(
            col(WebhookEndpoint.lab_id).is_(None)
            if scope is None
            else col(WebhookEndpoint.lab_id) == scope
        )
    ).one()
    if held >= MAX_ENDPOINTS_PER_SCOPE:
        raise Conflict(f"at most {MAX_ENDPOINTS_PER_SCOPE} endpoints; remove one first")
    endpoint = WebhookEndpoint(
        lab_id=scope,
        url=url,
        events=chosen,
        description=description.strip()[:300],
        secret=f"whsec_{secrets.token_urlsafe(24)}",
        created_by_id=user.id,
    )
    session.add(endpoint)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="webhook.create",
        entity="webhook_endpoint",
        entity_id=endpoint.id,
        after={"url": url, "events": chosen, "lab_id": scope},
    )
    return endpoint


def endpoint_get(session: Session, *, user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or not _may_see(user, endpoint):
        raise EndpointNotFound(endpoint_id)
    return endpoint


def endpoint_list(session: Session, *, user: User) -> list[WebhookEndpoint]:
    """The endpoints `user` manages: their lab's, or all for a network administrator."""
    query = select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))
    if user.role != Role.network_admin:
        _scope(user, None)
        query = query.where(WebhookEndpoint.lab_id == user.lab_id)
    return list(session.exec(query).all())


def endpoint_update(
    session: Session,
    *,
    user: User,
    endpoint_id: int,
    url: str | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    endpoint = endpoint_get(session, user=user, endpoint_id=endpoint_id)
    before = {"url": endpoint.url, "events": endpoint.events, "is_active": endpoint.is_active}
    if url is not None:
        endpoint.url = check_url(url)
    if events is not None:
        endpoint.events = _check_events(events)
    if description is not None:
        endpoint.description = description.strip()[:300]
    if is_active is not None:
        endpoint.is_active = is_active
    session.add(endpoint)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="webhook.update",
        entity="webhook_endpoint",
        entity_id=endpoint.id,
        before=before,
        after={"url": endpoint.url, "events": endpoint.events, "is_active": endpoint.is_active},
    )
    return endpoint


def endpoint_delete(session: Session, *, user: User, endpoint_id: int) -> None:
    """Remove an endpoint and its deliveries."""
    endpoint = endpoint_get(session, user=user, endpoint_id=endpoint_id)
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    session.exec(  # type: ignore[call-overload]
        WebhookAttempt.__table__.delete().where(  # type: ignore[attr-defined]
            col(WebhookAttempt.delivery_id).in_(deliveries)
        )
    )
    session.exec(  # type: ignore[call-overload]
        WebhookDelivery.__table__.delete().where(  # type: ignore[attr-defined]
            col(WebhookDelivery.endpoint_id) == endpoint.id
        )
    )
    audit_record(
        session,
        actor_id=user.id,
        action="webhook.delete",
        entity="webhook_endpoint",
        entity_id=endpoint.id,
        before={"url": endpoint.url, "events": endpoint.events},
    )
    session.delete(endpoint)
    session.flush()


def deliveries_of(
    session: Session, *, user: User, endpoint_id: int, limit: int = 50
) -> list[tuple[WebhookDelivery, Event]]:
    """An endpoint's newest deliveries, with their events."""
    endpoint_get(session, user=user, endpoint_id=endpoint_id)
    rows = session.exec(
        select(WebhookDelivery, Event)
        .join(Event, col(Event.id) == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(col(WebhookDelivery.id).desc())
        .limit(limit)
    ).all()
    return [(d, e) for d, e in rows]


def delivery_get(
    session: Session, *, user: User, delivery_id: int
) -> tuple[WebhookDelivery, Event, list[WebhookAttempt]]:
    """One delivery (of an endpoint `user` manages), its event and its tries, oldest first."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise DeliveryNotFound(delivery_id)
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or not _may_see(user, endpoint):
        raise DeliveryNotFound(delivery_id)
    event = session.get(Event, delivery.event_id)
    assert event is not None
    attempts = session.exec(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(col(WebhookAttempt.id))
    ).all()
    return delivery, event, list(attempts)


def delivery_replay(
    session: Session, *, user: User, delivery_id: int, now: datetime | None = None
) -> WebhookDelivery:
    """Send a delivery again, now, with a fresh set of tries (its record stays)."""
    delivery, _event, _attempts = delivery_get(session, user=user, delivery_id=delivery_id)
    now = now or utcnow()
    if (
        delivery.status == DeliveryStatus.pending
        and delivery.lease_until
        and delivery.lease_until > now
    ):
        raise Conflict("this delivery is being sent right now")
    delivery.status = DeliveryStatus.pending
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.lease_until = None
    session.add(delivery)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="webhook.replay",
        entity="webhook_delivery",
        entity_id=delivery.id,
    )
    return delivery


# ----------------------------------------------------------------------------- sending


def _wants(endpoint: WebhookEndpoint, event: Event) -> bool:
    if endpoint.lab_id is not None and endpoint.lab_id != event.lab_id:
        return False
    family = event.type.split(".", 1)[0]
    return any(e in ("*", event.type, f"{family}.*") for e in endpoint.events)


def events_dispatch(
    session: Session, *, now: datetime, limit: int = DISPATCH_BATCH
) -> tuple[int, int]:
    """Fan up to `limit` new events out to the endpoints that want them, in one claiming
    UPDATE and one INSERT; returns (events claimed, deliveries made). Two senders never
    fan one event out twice: PostgreSQL's skip the rows another has locked, SQLite's take
    turns at the write lock."""
    table = Event.__table__  # type: ignore[attr-defined]
    pick = (
        sa.select(table.c.id)
        .where(table.c.dispatched_at.is_(None))
        .order_by(table.c.id)
        .limit(limit)
    )
    if is_postgres(session):
        pick = pick.with_for_update(skip_locked=True)
    claimed = session.connection().execute(
        sa.update(table)
        .where(table.c.id.in_(pick.scalar_subquery()), table.c.dispatched_at.is_(None))
        .values(dispatched_at=now)
        .returning(table.c.id)
    )
    ids = sorted(claimed.scalars().all())
    if not ids:
        return 0, 0
    endpoints = session.exec(
        select(WebhookEndpoint).where(col(WebhookEndpoint.is_active).is_(True))
    ).all()
    if not endpoints:
        return len(ids), 0
    events = session.exec(select(Event).where(col(Event.id).in_(ids))).all()
    rows = [
        {
            "endpoint_id": endpoint.id,
            "event_id": event.id,
            "status": DeliveryStatus.pending.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in events
        for endpoint in endpoints
        if _wants(endpoint, event)
    ]
    if rows:
        session.connection().execute(sa.insert(WebhookDelivery.__table__), rows)  # type: ignore[attr-defined]
    return len(ids), len(rows)


def _lease_due(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Take up to `limit` due deliveries for this sender; returns their ids."""
    free = or_(col(WebhookDelivery.lease_until).is_(None), col(WebhookDelivery.lease_until) < now)
    due = session.exec(
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.pending,
            col(WebhookDelivery.next_attempt_at) <= now,
            free,
            col(WebhookEndpoint.is_active).is_(True),
        )
        .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
        .limit(limit)
    ).all()
    taken: list[int] = []
    for delivery_id in due:
        result = session.exec(  # type: ignore[call-overload]
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.status) == DeliveryStatus.pending,
                free,
            )
            .values(lease_until=now + LEASE)
        )
        if result.rowcount:
            assert delivery_id is not None
            taken.append(delivery_id)
    return taken


Poster = Callable[..., Fetched]


@dataclass
class Tried:
    delivery_id: int
    status_code: int | None
    response: str
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(endpoint: WebhookEndpoint, event: Event, delivery_id: int, post: Poster) -> Tried:
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "labshare-webhooks/1",
        SIGNATURE_HEADER: sign(endpoint.secret, body, int(time.time())),
        "Labshare-Event-Id": f"evt_{event.id}",
        "Labshare-Delivery-Id": str(delivery_id),
    }
    started = time.monotonic()
    try:
        answer = post(
            endpoint.url,
            method="POST",
            content=body,
            headers=headers,
            timeout=POST_TIMEOUT,
            max_bytes=64 * 1024,
            allow_private=get_settings().webhook_allow_private_urls,
            follow_redirects=False,
        )
    except FetchFailed as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        return Tried(delivery_id, None, "", str(exc)[:300], elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    text = answer.body[:ANSWER_KEPT].decode("utf-8", "replace")
    return Tried(delivery_id, answer.status, text, None, elapsed)


def _record(session: Session, tried: Tried, *, now: datetime) -> WebhookDelivery | None:
    delivery = session.get(WebhookDelivery, tried.delivery_id)
    if delivery is None:  # its endpoint was removed meanwhile
        return None
    session.add(
        WebhookAttempt(
            delivery_id=tried.delivery_id,
            attempted_at=now,
            status_code=tried.status_code,
            response=tried.response,
            error=tried.error,
            duration_ms=tried.duration_ms,
        )
    )
    delivery.attempts += 1
    delivery.lease_until = None
    delivery.last_status_code = tried.status_code
    delivery.last_error = tried.error or (
        None if tried.ok else f"the endpoint answered {tried.status_code}"
    )
    if tried.ok:
        delivery.status = DeliveryStatus.delivered
        delivery.delivered_at = now
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.failed
    else:
        delivery.next_attempt_at = now + timedelta(seconds=BACKOFF[delivery.attempts - 1])
    session.add(delivery)
    return delivery


def webhooks_prune(session: Session, *, now: datetime, keep: timedelta = KEEP) -> int:
    """Forget events older than `keep` once they are fanned out, with their finished
    deliveries and tries (a delivery still pending keeps its event); returns how many
    events went. The sender runs this now and then, so the outbox stays small."""
    before = now - keep
    old_events = select(Event.id).where(
        col(Event.occurred_at) < before, col(Event.dispatched_at).is_not(None)
    )
    finished = select(WebhookDelivery.id).where(
        col(WebhookDelivery.event_id).in_(old_events),
        col(WebhookDelivery.status) != DeliveryStatus.pending,
    )
    session.exec(  # type: ignore[call-overload]
        WebhookAttempt.__table__.delete().where(  # type: ignore[attr-defined]
            col(WebhookAttempt.delivery_id).in_(finished)
        )
    )
    session.exec(  # type: ignore[call-overload]
        WebhookDelivery.__table__.delete().where(  # type: ignore[attr-defined]
            col(WebhookDelivery.id).in_(finished)
        )
    )
    still_pending = select(WebhookDelivery.event_id)
    gone = session.connection().execute(
        Event.__table__.delete().where(  # type: ignore[attr-defined]
            col(Event.id).in_(old_events), col(Event.id).not_in(still_pending)
        )
    )
    return int(gone.rowcount or 0)


@dataclass
class SendReport:
    dispatched: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    errors: dict[int, str] = field(default_factory=dict)


def webhooks_send_due(
    *,
    engine: Engine | None = None,
    now: datetime | None = None,
    limit: int = 100,
    post: Poster = fetch,
) -> SendReport:
    """One pass: fan out new events, then post the deliveries that are due (at most
    `limit`), each recorded as it was answered."""
    engine = engine or get_engine()
    now = now or utcnow()
    report = SendReport()
    # A busy network makes events faster than one batch: fan out until caught up.
    for _ in range(MAX_DISPATCH_ROUNDS):
        with session_scope(engine=engine) as session:
            claimed, made = events_dispatch(session, now=now)
        report.dispatched += made
        if claimed < DISPATCH_BATCH:
            break
    with session_scope(engine=engine) as session:
        taken = _lease_due(session, now=now, limit=limit)
    for delivery_id in taken:
        with session_scope(write=False, engine=engine) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                continue
            endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
            event = session.get(Event, delivery.event_id)
        if endpoint is None or event is None:
            continue
        tried = _post(endpoint, event, delivery_id, post)
        with session_scope(engine=engine) as session:
            recorded = _record(session, tried, now=now)
        if recorded is None:
            continue
        if recorded.status == DeliveryStatus.delivered:
            report.delivered += 1
        elif recorded.status == DeliveryStatus.failed:
            report.failed += 1
        else:
            report.retrying += 1
        if not tried.ok:
            report.errors[delivery_id] = tried.error or f"HTTP {tried.status_code}"
    return report
