"""Network management routes: institutions (with the small-company flag and Stripe
accounts), labs, users and roles, and instruments' sharing evaluations. Network admins,
except where institution admins may manage their own institution's users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from admin import management as mgmt
from admin import payouts
from admin.api import Id, Limit, Next, _page
from admin.schemas import (
    ConnectedAccountIn,
    EvaluationIn,
    EvaluationPublic,
    InstitutionIn,
    InstitutionPatch,
    InstitutionPublic,
    LabIn,
    LabPatch,
    LabPublic,
    UserAdminPublic,
    UserIn,
    UserPatch,
)
from core.deps import Admin, NetworkAdmin, SessionDep
from core.pagination import DEFAULT_LIMIT, Page, decode_cursor
from core.params import only_params
from core.routing import UnitOfWorkRoute

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/admin", tags=["admin"])


def _inst(row: object) -> InstitutionPublic:
    return InstitutionPublic.model_validate(row, from_attributes=True)


@router.get("/institutions", response_model=list[InstitutionPublic])
def list_institutions(session: SessionDep, _user: NetworkAdmin) -> list[InstitutionPublic]:
    """Every institution."""
    return [_inst(r) for r in mgmt.institutions_list(session)]


@router.post("/institutions", response_model=InstitutionPublic, status_code=201)
def create_institution(
    session: SessionDep, user: NetworkAdmin, data: InstitutionIn
) -> InstitutionPublic:
    """Add an institution."""
    return _inst(mgmt.institution_create(session, data=data, actor=user))


@router.patch("/institutions/{institution_id}", response_model=InstitutionPublic)
def update_institution(
    session: SessionDep, user: NetworkAdmin, institution_id: Id, data: InstitutionPatch
) -> InstitutionPublic:
    """Rename an institution, change its kind or its small-company flag."""
    return _inst(
        mgmt.institution_update(session, institution_id=institution_id, data=data, actor=user)
    )


@router.put("/institutions/{institution_id}/stripe-account", status_code=204)
def set_stripe_account(
    session: SessionDep, user: NetworkAdmin, institution_id: Id, data: ConnectedAccountIn
) -> Response:
    """The Stripe Connect account the institution's payouts go to."""
    payouts.connected_account_set(
        session,
        institution_id=institution_id,
        stripe_account_id=data.stripe_account_id,
        actor_id=user.id,
    )
    return Response(status_code=204)


@router.get(
    "/labs", response_model=list[LabPublic], dependencies=[Depends(only_params("institution_id"))]
)
def list_labs(
    session: SessionDep,
    _user: NetworkAdmin,
    institution_id: Annotated[int | None, Query(ge=1)] = None,
) -> list[LabPublic]:
    """Labs, optionally of one institution."""
    rows = mgmt.labs_list(session, institution_id=institution_id)
    return [LabPublic.model_validate(r, from_attributes=True) for r in rows]


@router.post("/labs", response_model=LabPublic, status_code=201)
def create_lab(session: SessionDep, user: NetworkAdmin, data: LabIn) -> LabPublic:
    """Add a lab to an institution."""
    return LabPublic.model_validate(
        mgmt.lab_create(session, data=data, actor=user), from_attributes=True
    )


@router.patch("/labs/{lab_id}", response_model=LabPublic)
def update_lab(session: SessionDep, user: NetworkAdmin, lab_id: Id, data: LabPatch) -> LabPublic:
    """Rename a lab or change its flags."""
    row = mgmt.lab_update(session, lab_id=lab_id, data=data, actor=user)
    return LabPublic.model_validate(row, from_attributes=True)


def _user(row: object) -> UserAdminPublic:
    return UserAdminPublic.model_validate(row, from_attributes=True)


@router.get(
    "/users",
    response_model=Page[UserAdminPublic],
    dependencies=[Depends(only_params("institution_id", "limit", "next"))],
)
def list_users(
    session: SessionDep,
    user: Admin,
    institution_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Limit = DEFAULT_LIMIT,
    next: Next = None,
) -> Page[UserAdminPublic]:
    """Users (institution admins: their own institution's)."""
    rows, last = mgmt.users_list(
        session, actor=user, institution_id=institution_id, after=decode_cursor(next), limit=limit
    )
    return _page([_user(r) for r in rows], last)


@router.post("/users", response_model=UserAdminPublic, status_code=201)
def create_user(session: SessionDep, user: Admin, data: UserIn) -> UserAdminPublic:
    """Create an account with a role (institution admins: in their institution)."""
    return _user(mgmt.user_admin_create(session, data=data, actor=user))


@router.patch("/users/{user_id}", response_model=UserAdminPublic)
def update_user(session: SessionDep, user: Admin, user_id: Id, data: UserPatch) -> UserAdminPublic:
    """Change a user's role, institution, lab or active flag (badges: `/labs/{code}/badges`)."""
    return _user(mgmt.user_admin_update(session, user_id=user_id, data=data, actor=user))


@router.put("/instruments/{instrument_id}/evaluation", response_model=EvaluationPublic)
def set_evaluation(
    session: SessionDep, user: NetworkAdmin, instrument_id: Id, data: EvaluationIn
) -> EvaluationPublic:
    """Record an instrument's sharing evaluation; `failed` bars it from rewards."""
    row = mgmt.evaluation_set(
        session, instrument_id=instrument_id, result=data.result, note=data.note, actor=user
    )
    return EvaluationPublic.model_validate(row, from_attributes=True)
