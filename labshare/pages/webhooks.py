"""Outgoing webhooks as pages: a lab's endpoints (a network administrator's: every one),
each delivery with its tries, and replaying one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from admin import webhooks
from core.deps import SessionDep
from core.errors import AppError, Forbidden
from core.events import EVENT_TYPES
from core.models import Role, User
from core.routing import UnitOfWorkRoute
from labshare.pages.web import Csrf, PageUser, back_to, render

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
FAMILIES = sorted({t.split(".", 1)[0] + ".*" for t in EVENT_TYPES})


def _home(user: User) -> str:
    return "/admin/webhooks" if user.role == Role.network_admin else "/lab/webhooks"


def _require(user: User) -> None:
    if user.role not in (Role.lab_manager, Role.network_admin):
        raise Forbidden("only a lab manager or a network administrator manages webhooks")


def _page(
    request: Request,
    session: Session,
    user: User,
    *,
    problem: str | None = None,
    form: dict[str, object] | None = None,
    status: int = 200,
) -> HTMLResponse:
    _require(user)
    endpoints = webhooks.endpoint_list(session, user=user)
    return render(
        request,
        "facility/webhooks.html",
        {
            "endpoints": [
                (e, webhooks.deliveries_of(session, user=user, endpoint_id=e.id or 0, limit=20))
                for e in endpoints
            ],
            "families": FAMILIES,
            "event_types": EVENT_TYPES,
            "home": _home(user),
            "problem": problem,
            "form": form or {},
            "shown_secret": request.query_params.get("secret_of"),
        },
        user=user,
        status_code=status,
    )


@router.get("/lab/webhooks", response_class=HTMLResponse)
@router.get("/admin/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """The endpoints and their newest deliveries."""
    return _page(request, session, user)


@router.post("/lab/webhooks", dependencies=[Csrf])
@router.post("/admin/webhooks", dependencies=[Csrf])
def add_endpoint(
    request: Request,
    session: SessionDep,
    user: PageUser,
    url: Annotated[str, Form(max_length=2000)],
    events: Annotated[list[str], Form()] = [],  # noqa: B006  (FastAPI copies it)
    description: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Register an endpoint; its secret is shown once on the page that follows."""
    try:
        _require(user)
        endpoint = webhooks.endpoint_create(
            session, user=user, url=url, events=events, description=description
        )
    except AppError as exc:
        session.rollback()
        form = {"url": url, "events": events, "description": description}
        return _page(request, session, user, problem=exc.message, form=form, status=exc.status_code)
    return back_to(f"{_home(user)}?secret_of={endpoint.id}", "endpoint-added")


@router.post("/webhooks/endpoints/{endpoint_id}/toggle", dependencies=[Csrf])
def toggle(request: Request, session: SessionDep, user: PageUser, endpoint_id: Id) -> Response:
    """Pause an endpoint, or resume it."""
    endpoint = webhooks.endpoint_get(session, user=user, endpoint_id=endpoint_id)
    webhooks.endpoint_update(
        session, user=user, endpoint_id=endpoint_id, is_active=not endpoint.is_active
    )
    return back_to(_home(user), "endpoint-saved")


@router.post("/webhooks/endpoints/{endpoint_id}/delete", dependencies=[Csrf])
def remove(request: Request, session: SessionDep, user: PageUser, endpoint_id: Id) -> Response:
    webhooks.endpoint_delete(session, user=user, endpoint_id=endpoint_id)
    return back_to(_home(user), "endpoint-removed")


@router.get("/webhooks/deliveries/{delivery_id}", response_class=HTMLResponse)
def delivery_page(
    request: Request, session: SessionDep, user: PageUser, delivery_id: Id
) -> HTMLResponse:
    """One delivery: the body sent and each try as the endpoint answered it."""
    delivery, event, attempts = webhooks.delivery_get(session, user=user, delivery_id=delivery_id)
    return render(
        request,
        "facility/delivery.html",
        {
            "delivery": delivery,
            "event": event,
            "attempts": attempts,
            "body": webhooks.event_body(event).decode(),
            "home": _home(user),
        },
        user=user,
    )


@router.post("/webhooks/deliveries/{delivery_id}/replay", dependencies=[Csrf])
def replay(request: Request, session: SessionDep, user: PageUser, delivery_id: Id) -> Response:
    """Send it again at the next pass."""
    webhooks.delivery_replay(session, user=user, delivery_id=delivery_id)
    return back_to(f"/webhooks/deliveries/{delivery_id}", "replayed")
