"""Telemetry's HTTP routes: usage sessions, live status, gateways."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from core.deps import CurrentUser, LabManager, SessionDep
from core.errors import Forbidden
from core.models import Role
from core.params import only_params
from core.routing import UnitOfWorkRoute
from core.timeutil import TimeQuery, parse_aware
from instruments.models import CODE_PATTERN
from telemetry import badges, review, service
from telemetry.models import Badge
from telemetry.schemas import (
    BadgeIn,
    BadgePublic,
    GatewayPublic,
    InstrumentStatusPublic,
    UsageConfirm,
    UsageDismiss,
    UsagePublic,
)

router = APIRouter(route_class=UnitOfWorkRoute, tags=["telemetry"])
InstrumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
LabCode = Annotated[str, Path(pattern=CODE_PATTERN)]
Time = TimeQuery


@router.get(
    "/instruments/{instrument_id}/usage",
    response_model=list[UsagePublic],
    dependencies=[Depends(only_params("start", "end"))],
)
def get_instrument_usage(
    session: SessionDep, user: CurrentUser, instrument_id: InstrumentId, start: Time, end: Time
) -> list[UsagePublic]:
    """Usage sessions from telemetry in [start, end), each with the booking it matched or none."""
    return service.instrument_usage(
        session, user=user, instrument_id=instrument_id,
        start=parse_aware(start, field="start"), end=parse_aware(end, field="end"),
    )  # fmt: skip


@router.get("/instruments/{instrument_id}/status", response_model=InstrumentStatusPublic)
def get_instrument_status(
    session: SessionDep, instrument_id: InstrumentId
) -> InstrumentStatusPublic:
    """Live state from telemetry: idle, in_use, fault or offline."""
    return service.instrument_status(session, instrument_id=instrument_id)


@router.get(
    "/labs/{code}/usage",
    response_model=list[UsagePublic],
    dependencies=[Depends(only_params("start", "end"))],
)
def get_lab_usage(
    session: SessionDep, user: CurrentUser, code: LabCode, start: Time, end: Time
) -> list[UsagePublic]:
    """Usage sessions of all the lab's instruments in [start, end)."""
    return service.lab_usage(
        session, user=user, lab_code=code,
        start=parse_aware(start, field="start"), end=parse_aware(end, field="end"),
    )  # fmt: skip


@router.get("/labs/{code}/status", response_model=list[InstrumentStatusPublic])
def get_lab_status(session: SessionDep, code: LabCode) -> list[InstrumentStatusPublic]:
    """Live state of each of the lab's instruments."""
    return service.lab_status(session, lab_code=code)


@router.get("/labs/{code}/gateways", response_model=list[GatewayPublic])
def get_lab_gateways(session: SessionDep, user: CurrentUser, code: LabCode) -> list[GatewayPublic]:
    """The lab's gateways with presence and last seen (the lab's managers, network admins)."""
    lab = service.lab_by_code(session, code)
    if not (
        user.role == Role.network_admin or (user.role == Role.lab_manager and user.lab_id == lab.id)
    ):
        raise Forbidden("gateways are visible to the lab's managers and network administrators")
    return service.gateway_list(session, lab_id=lab.id)


@router.get("/labs/{code}/usage/held", response_model=list[UsagePublic])
def get_lab_held_usage(session: SessionDep, user: CurrentUser, code: LabCode) -> list[UsagePublic]:
    """Sessions the ingest held for the lab (an unknown badge, a person without the
    qualification, a report more than a day late): never billed until confirmed."""
    return service.lab_usage(
        session, user=user, lab_code=code, start=None, end=None, held_only=True
    )


def _usage_answer(session: SessionDep, usage_id: int) -> UsagePublic:
    [answer] = service.usage_list_by_ids(session, [usage_id])
    return answer


@router.post("/usage/{usage_id}/confirm", response_model=UsagePublic)
def confirm_usage(
    session: SessionDep, user: LabManager, usage_id: InstrumentId, data: UsageConfirm
) -> UsagePublic:
    """Confirm a held session as this person's use: matched to their booking, then billed."""
    review.usage_confirm(session, actor=user, usage_id=usage_id, email=data.email)
    return _usage_answer(session, usage_id)


@router.post("/usage/{usage_id}/dismiss", response_model=UsagePublic)
def dismiss_usage(
    session: SessionDep, user: LabManager, usage_id: InstrumentId, data: UsageDismiss
) -> UsagePublic:
    """Dismiss a held session: it stays on record and is never billed."""
    review.usage_dismiss(session, actor=user, usage_id=usage_id, reason=data.reason)
    return _usage_answer(session, usage_id)


def _badge_public(badge: Badge, email: str, name: str, lab: str | None) -> BadgePublic:
    assert badge.id is not None
    return BadgePublic(
        id=badge.id, code=badge.code, user_id=badge.user_id, email=email, name=name, lab=lab,
        created_at=badge.created_at,
    )  # fmt: skip


@router.get("/labs/{code}/badges", response_model=list[BadgePublic])
def list_lab_badges(session: SessionDep, user: LabManager, code: LabCode) -> list[BadgePublic]:
    """The badges the lab registered, with whose they are."""
    lab = service.lab_by_code(session, code)
    return [
        _badge_public(b, p.email, p.name, lab.code)
        for b, p in badges.badge_list(session, actor=user, lab=lab)
    ]


@router.post("/labs/{code}/badges", response_model=BadgePublic, status_code=201)
def register_lab_badge(
    session: SessionDep, user: LabManager, code: LabCode, data: BadgeIn
) -> BadgePublic:
    """Register a badge for someone who uses the lab: its gateways may then name them."""
    lab = service.lab_by_code(session, code)
    badge = badges.badge_register(session, actor=user, lab=lab, code=data.code, email=data.email)
    return _badge_public(badge, data.email.strip().lower(), "", lab.code)


@router.post("/badges", response_model=BadgePublic, status_code=201)
def register_network_badge(session: SessionDep, user: LabManager, data: BadgeIn) -> BadgePublic:
    """Register a badge network-wide (network administrators)."""
    badge = badges.badge_register(session, actor=user, lab=None, code=data.code, email=data.email)
    return _badge_public(badge, data.email.strip().lower(), "", None)


@router.delete("/badges/{badge_id}", status_code=204)
def revoke_badge(session: SessionDep, user: LabManager, badge_id: InstrumentId) -> Response:
    """Forget a badge; events that name it later are held like an unknown badge's."""
    badges.badge_revoke(session, actor=user, badge_id=badge_id)
    return Response(status_code=204)
