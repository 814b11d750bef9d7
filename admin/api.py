"""Network administration routes: subsidy policies, settlements and payouts, KPIs, reports,
and the read-only audit log (network admins only). Institutions, labs and users are in
admin/management_api.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from admin import management as mgmt
from admin import payouts, policies, reports, service
from admin import settlement as settle
from admin.kpis import network_kpis, network_trend
from admin.models import Payout
from admin.schemas import (
    AuditEntryPublic,
    InstrumentKpiPublic,
    KpisPublic,
    KpiTrendPublic,
    PayoutPublic,
    PolicyPublic,
    SettlementCreate,
    SettlementInstrumentPublic,
    SettlementPatch,
    SettlementPublic,
)
from admin.subsidy import PolicyDocument
from core.deps import Admin, NetworkAdmin, SessionDep
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, encode_cursor
from core.params import only_params
from core.replicas import LagTolerant
from core.routing import UnitOfWorkRoute
from core.timeutil import OptionalTimeQuery, parse_aware

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/admin", tags=["admin"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Next = Annotated[str | None, Query(max_length=200)]
Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _page(items: list, last: int | None) -> Page:  # type: ignore[type-arg]
    return Page(items=items, next=encode_cursor(last) if last is not None else None)


# --- audit ---------------------------------------------------------------------------------


@router.get(
    "/audit",
    response_model=Page[AuditEntryPublic],
    dependencies=[
        Depends(
            only_params(
                "actor_id", "entity", "entity_id", "action", "since", "until", "limit", "next"
            )
        )
    ],
)
def list_audit(
    session: SessionDep,
    user: Admin,
    actor_id: Annotated[int | None, Query(ge=1)] = None,
    entity: Annotated[str | None, Query(max_length=100)] = None,
    entity_id: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[
        str | None, Query(max_length=100, description="prefix, e.g. settlement.")
    ] = None,
    since: OptionalTimeQuery = None,
    until: OptionalTimeQuery = None,
    limit: Limit = DEFAULT_LIMIT,
    next: Next = None,
) -> Page[AuditEntryPublic]:
    """The audit log, newest first (read only: entries are never edited or deleted)."""
    rows, last = mgmt.audit_list(
        session,
        actor=user,
        actor_id=actor_id,
        entity=entity,
        entity_id=entity_id,
        action=action,
        since=parse_aware(since, field="since") if since else None,
        until=parse_aware(until, field="until") if until else None,
        after=decode_cursor(next),
        limit=limit,
    )
    return _page([AuditEntryPublic.model_validate(r, from_attributes=True) for r in rows], last)


# --- policies ------------------------------------------------------------------------------


@router.post("/policies", response_model=PolicyPublic, status_code=201)
def create_policy(session: SessionDep, user: NetworkAdmin, data: PolicyDocument) -> PolicyPublic:
    """Store a subsidy policy: budget, eligibility, weights, cap, voucher reimbursement."""
    row = policies.policy_create(session, document=data, actor_id=user.id)
    return PolicyPublic.model_validate(row, from_attributes=True)


@router.get("/policies", response_model=list[PolicyPublic])
def list_policies(session: SessionDep, _user: NetworkAdmin) -> list[PolicyPublic]:
    """Every subsidy policy, newest first."""
    return [
        PolicyPublic.model_validate(r, from_attributes=True) for r in policies.policy_list(session)
    ]


@router.get("/policies/{policy_id}", response_model=PolicyPublic)
def get_policy(session: SessionDep, _user: NetworkAdmin, policy_id: Id) -> PolicyPublic:
    """One subsidy policy."""
    row = policies.policy_resolve(session, policy_id)
    return PolicyPublic.model_validate(row, from_attributes=True)


# --- settlements ---------------------------------------------------------------------------


@router.post("/settlements", response_model=SettlementPublic, status_code=201)
def create_settlement(
    session: SessionDep, user: NetworkAdmin, data: SettlementCreate
) -> SettlementPublic:
    """Preview a month's settlement: figures, scores, rewards, voucher reimbursements."""
    row = settle.settlement_preview(
        session, period=data.period, policy_id=data.policy_id, actor_id=user.id, note=data.note
    )
    return service.settlement_public(session, row)


@router.get(
    "/settlements",
    response_model=Page[SettlementPublic],
    dependencies=[Depends(only_params("period", "limit", "next"))],
)
def list_settlements(
    session: SessionDep,
    _user: NetworkAdmin,
    period: Month | None = None,
    limit: Limit = DEFAULT_LIMIT,
    next: Next = None,
) -> Page[SettlementPublic]:
    """Settlements, newest first (without their lines)."""
    rows, last = settle.settlement_list(
        session, period=period, after=decode_cursor(next), limit=limit
    )
    return _page([service.settlement_public(session, r, with_lines=False) for r in rows], last)


@router.get(
    "/settlements/{settlement_id}.csv",
    response_class=Response,
    responses={200: {"content": {CSV: {}}}},
)
def settlement_csv(session: SessionDep, _user: NetworkAdmin, settlement_id: Id) -> Response:
    """Per institution: hours, external revenue, vouchers redeemed, reward (minor units)."""
    body = reports.settlement_csv(session, settlement_id=settlement_id)
    name = f"settlement-{settlement_id}.csv"
    return Response(
        body, media_type=CSV, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get(
    "/settlements/{settlement_id}.xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}}},
)
def settlement_xlsx(session: SessionDep, _user: NetworkAdmin, settlement_id: Id) -> Response:
    """The settlement as a workbook: summary, institutions, instruments."""
    body = reports.settlement_xlsx(session, settlement_id=settlement_id)
    name = f"settlement-{settlement_id}.xlsx"
    return Response(
        body, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/settlements/{settlement_id}", response_model=SettlementPublic)
def get_settlement(session: SessionDep, _user: NetworkAdmin, settlement_id: Id) -> SettlementPublic:
    """One settlement with a line per institution."""
    return service.settlement_public(session, settle.settlement_get(session, settlement_id))


@router.get(
    "/settlements/{settlement_id}/instruments",
    response_model=Page[SettlementInstrumentPublic],
    dependencies=[Depends(only_params("institution_id", "limit", "next"))],
)
def list_settlement_instruments(
    session: SessionDep,
    _user: NetworkAdmin,
    settlement_id: Id,
    institution_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Limit = DEFAULT_LIMIT,
    next: Next = None,
) -> Page[SettlementInstrumentPublic]:
    """A settlement's per-instrument figures, score, reward and reimbursement."""
    settle.settlement_get(session, settlement_id)
    items, last = service.settlement_instruments(
        session,
        settlement_id=settlement_id,
        institution_id=institution_id,
        after=decode_cursor(next),
        limit=limit,
    )
    return _page(items, last)


@router.patch("/settlements/{settlement_id}", response_model=SettlementPublic)
def update_settlement(
    session: SessionDep, user: NetworkAdmin, settlement_id: Id, data: SettlementPatch
) -> SettlementPublic:
    """Recompute a preview (on current data, or under another policy); 409 once finalized."""
    row = settle.settlement_update(
        session,
        settlement_id=settlement_id,
        policy_id=data.policy_id,
        note=data.note,
        actor_id=user.id,
    )
    return service.settlement_public(session, row)


@router.delete("/settlements/{settlement_id}", status_code=204)
def delete_settlement(session: SessionDep, user: NetworkAdmin, settlement_id: Id) -> Response:
    """Discard a preview; 409 for a finalized settlement."""
    settle.settlement_delete(session, settlement_id=settlement_id, actor_id=user.id)
    return Response(status_code=204)


@router.post("/settlements/{settlement_id}/finalize", response_model=SettlementPublic)
def finalize_settlement(
    session: SessionDep, user: NetworkAdmin, settlement_id: Id
) -> SettlementPublic:
    """Make the settlement immutable and post it to the ledger; 409 if already final."""
    row = settle.settlement_finalize(session, settlement_id=settlement_id, actor_id=user.id)
    return service.settlement_public(session, row)


def _payout_public(p: Payout) -> PayoutPublic:
    return PayoutPublic.model_validate(p, from_attributes=True)


@router.post("/settlements/{settlement_id}/payouts", response_model=list[PayoutPublic])
def pay_settlement(
    session: SessionDep, user: NetworkAdmin, settlement_id: Id
) -> list[PayoutPublic]:
    """Pay a finalized settlement: Stripe Connect transfers, or payout records without Stripe."""
    rows = payouts.settlement_pay(session, settlement_id=settlement_id, actor_id=user.id)
    return [_payout_public(p) for p in rows]


# --- KPIs and reports ----------------------------------------------------------------------


@router.get(
    "/kpis", response_model=KpisPublic, dependencies=[LagTolerant, Depends(only_params("period"))]
)
def get_kpis(session: SessionDep, _user: NetworkAdmin, period: Month) -> KpisPublic:
    """The network's KPIs for a month: size, hours, external share, utilisation, money."""
    return KpisPublic.model_validate(network_kpis(session, period=period))


@router.get(
    "/kpis/trend",
    response_model=KpiTrendPublic,
    dependencies=[LagTolerant, Depends(only_params("from", "to"))],
)
def get_kpi_trend(
    session: SessionDep,
    _user: NetworkAdmin,
    first: Annotated[str, Query(alias="from", description="YYYY-MM")],
    last: Annotated[str, Query(alias="to", description="YYYY-MM")],
) -> KpiTrendPublic:
    """The network's booked, used and external hours and utilisation for each month of a
    range (at most 24 months), in one request."""
    return KpiTrendPublic.model_validate({"months": network_trend(session, first=first, last=last)})


@router.get(
    "/kpis/instruments",
    response_model=Page[InstrumentKpiPublic],
    dependencies=[LagTolerant, Depends(only_params("period", "idle", "limit", "next"))],
)
def get_instrument_kpis(
    session: SessionDep,
    _user: NetworkAdmin,
    period: Month,
    idle: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    next: Next = None,
) -> Page[InstrumentKpiPublic]:
    """Per-instrument KPIs for a month (`idle=true`: the instruments nobody used)."""
    items, last = service.instrument_kpis_page(
        session, period=period, idle=idle, after=decode_cursor(next), limit=limit
    )
    return _page(items, last)


@router.get(
    "/reports/assessment.csv",
    response_class=Response,
    dependencies=[LagTolerant, Depends(only_params("period"))],
    responses={200: {"content": {CSV: {}}}},
)
def assessment_csv(
    session: SessionDep,
    _user: NetworkAdmin,
    period: Annotated[
        str, Query(pattern=r"^\d{4}(-(0[1-9]|1[0-2]))?$", description="YYYY or YYYY-MM")
    ],
) -> Response:
    """National assessment per instrument: working hours, external hours, income, trained."""
    body = reports.assessment_csv(session, period=period)
    return Response(
        body,
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="assessment-{period}.csv"'},
    )
