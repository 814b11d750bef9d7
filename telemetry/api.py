"""Telemetry's HTTP routes: usage sessions, live status, gateways."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from core.deps import CurrentUser, SessionDep
from core.errors import Forbidden
from core.models import Role
from core.params import only_params
from core.routing import UnitOfWorkRoute
from core.timeutil import parse_aware
from instruments.models import CODE_PATTERN
from telemetry import service
from telemetry.schemas import GatewayPublic, InstrumentStatusPublic, UsagePublic

router = APIRouter(route_class=UnitOfWorkRoute, tags=["telemetry"])
InstrumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
LabCode = Annotated[str, Path(pattern=CODE_PATTERN)]
Time = Annotated[str, Query(max_length=64, description="RFC 3339 with an offset")]


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
