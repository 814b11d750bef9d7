"""Outgoing webhooks over HTTP: a lab's (or the network's) endpoints, their deliveries with
every try, and replaying one."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Response

from admin import webhooks
from admin.models import WebhookDelivery, WebhookEndpoint
from admin.schemas import (
    WebhookAttemptPublic,
    WebhookDeliveryDetail,
    WebhookDeliveryPublic,
    WebhookEndpointIn,
    WebhookEndpointPatch,
    WebhookEndpointPublic,
)
from core.deps import CurrentUser, SessionDep
from core.events import EVENT_TYPES, Event
from core.routing import UnitOfWorkRoute

router = APIRouter(route_class=UnitOfWorkRoute, tags=["webhooks"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _endpoint(endpoint: WebhookEndpoint, *, secret: bool = False) -> WebhookEndpointPublic:
    assert endpoint.id is not None
    return WebhookEndpointPublic(
        id=endpoint.id,
        lab_id=endpoint.lab_id,
        url=endpoint.url,
        description=endpoint.description,
        events=list(endpoint.events),
        is_active=endpoint.is_active,
        created_at=endpoint.created_at,
        secret=endpoint.secret if secret else None,
    )


def _delivery(delivery: WebhookDelivery, event: Event) -> WebhookDeliveryPublic:
    assert delivery.id is not None
    return WebhookDeliveryPublic(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=event.type,
        status=delivery.status.value,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


@router.get("/webhooks/event-types", response_model=list[str])
def list_event_types() -> list[str]:
    """Every event an endpoint can ask for."""
    return list(EVENT_TYPES)


@router.get("/webhooks/endpoints", response_model=list[WebhookEndpointPublic])
def list_endpoints(session: SessionDep, user: CurrentUser) -> list[WebhookEndpointPublic]:
    """Your lab's endpoints (a network administrator: every endpoint)."""
    return [_endpoint(e) for e in webhooks.endpoint_list(session, user=user)]


@router.post(
    "/webhooks/endpoints",
    response_model=WebhookEndpointPublic,
    status_code=201,
    responses={422: {"description": "a private address, or an unknown event type"}},
)
def create_endpoint(
    session: SessionDep, user: CurrentUser, data: WebhookEndpointIn
) -> WebhookEndpointPublic:
    """Register an endpoint; the answer carries its signing secret. Its URL must be a
    public address, like a calendar URL's (422 otherwise)."""
    endpoint = webhooks.endpoint_create(session, user=user, **data.model_dump())
    return _endpoint(endpoint, secret=True)


@router.get("/webhooks/endpoints/{endpoint_id}", response_model=WebhookEndpointPublic)
def get_endpoint(session: SessionDep, user: CurrentUser, endpoint_id: Id) -> WebhookEndpointPublic:
    """One endpoint, with its signing secret."""
    endpoint = webhooks.endpoint_get(session, user=user, endpoint_id=endpoint_id)
    return _endpoint(endpoint, secret=True)


@router.patch("/webhooks/endpoints/{endpoint_id}", response_model=WebhookEndpointPublic)
def patch_endpoint(
    session: SessionDep, user: CurrentUser, endpoint_id: Id, data: WebhookEndpointPatch
) -> WebhookEndpointPublic:
    """Change an endpoint's URL, events or description, or pause it (is_active false)."""
    endpoint = webhooks.endpoint_update(
        session, user=user, endpoint_id=endpoint_id, **data.model_dump(exclude_unset=True)
    )
    return _endpoint(endpoint)


@router.delete("/webhooks/endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(session: SessionDep, user: CurrentUser, endpoint_id: Id) -> Response:
    """Remove an endpoint and its deliveries."""
    webhooks.endpoint_delete(session, user=user, endpoint_id=endpoint_id)
    return Response(status_code=204)


@router.get(
    "/webhooks/endpoints/{endpoint_id}/deliveries", response_model=list[WebhookDeliveryPublic]
)
def list_deliveries(
    session: SessionDep, user: CurrentUser, endpoint_id: Id
) -> list[WebhookDeliveryPublic]:
    """The endpoint's 50 newest deliveries."""
    rows = webhooks.deliveries_of(session, user=user, endpoint_id=endpoint_id)
    return [_delivery(d, e) for d, e in rows]


@router.get("/webhooks/deliveries/{delivery_id}", response_model=WebhookDeliveryDetail)
def get_delivery(session: SessionDep, user: CurrentUser, delivery_id: Id) -> WebhookDeliveryDetail:
    """One delivery: the body sent and every try, as the endpoint answered it."""
    delivery, event, attempts = webhooks.delivery_get(session, user=user, delivery_id=delivery_id)
    return WebhookDeliveryDetail(
        **_delivery(delivery, event).model_dump(),
        payload=json.loads(webhooks.event_body(event)),
        attempts_made=[
            WebhookAttemptPublic.model_validate(a, from_attributes=True) for a in attempts
        ],
    )


@router.post("/webhooks/deliveries/{delivery_id}/replay", response_model=WebhookDeliveryPublic)
def replay_delivery(
    session: SessionDep, user: CurrentUser, delivery_id: Id
) -> WebhookDeliveryPublic:
    """Send a delivery again at the next pass, with a fresh set of tries."""
    delivery = webhooks.delivery_replay(session, user=user, delivery_id=delivery_id)
    event = session.get(Event, delivery.event_id)
    assert event is not None
    return _delivery(delivery, event)
