"""Innovation vouchers over HTTP: applying and review (申领), uses (使用), providers'
claims and the bureau's review of them, and public notices (兑付, 公示)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlmodel import Session

from billing import voucher_applications as applications
from billing import voucher_claims as claims
from billing.models import VoucherStatus
from billing.schemas import (
    PERIOD_PATTERN,
    ClaimDecision,
    ClaimIn,
    ClaimLinePublic,
    ClaimPublic,
    ClaimUse,
    NoticeClaim,
    NoticeIn,
    NoticePublic,
    VoucherApply,
    VoucherApprove,
    VoucherChoice,
    VoucherPublic,
    VoucherReject,
    VoucherUse,
)
from billing.vouchers import programme_get
from core.deps import CurrentUser, NetworkAdmin, SessionDep
from core.params import only_params
from core.routing import UnitOfWorkRoute
from instruments.models import Institution

router = APIRouter(route_class=UnitOfWorkRoute, tags=["vouchers"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Period = Annotated[str, Query(pattern=PERIOD_PATTERN, description="YYYY-MM")]


def _voucher_public(session: Session, voucher: Any) -> VoucherPublic:
    programme = programme_get(session, voucher.programme_id)
    company = session.get(Institution, voucher.institution_id)
    assert company is not None
    return VoucherPublic(
        **voucher.model_dump(exclude={"programme_id", "institution_id", "applicant_id",
                                      "decided_by_id"}),
        programme=programme.code,
        programme_id=programme.id or 0,
        institution=company.code,
        balance=voucher.balance,
    )  # fmt: skip


@router.post("/vouchers", response_model=VoucherPublic, status_code=201)
def apply_for_voucher(session: SessionDep, user: CurrentUser, data: VoucherApply) -> VoucherPublic:
    """Apply for an innovation voucher (a small company's researchers and admins): 422 with
    the reason when the company, credit code, programme or amount cannot be."""
    voucher = applications.application_submit(session, user=user, **data.model_dump())
    return _voucher_public(session, voucher)


@router.get(
    "/vouchers", response_model=list[VoucherPublic], dependencies=[Depends(only_params("status"))]
)
def list_vouchers(
    session: SessionDep, user: CurrentUser, status: VoucherStatus | None = None
) -> list[VoucherPublic]:
    """Your company's vouchers, newest first; a network administrator's: everyone's, and
    with status=pending the review queue, oldest first."""
    found = applications.vouchers_list(session, user=user, status=status)
    return [_voucher_public(session, v) for v in found]


@router.get("/vouchers/{voucher_id}", response_model=VoucherPublic)
def get_voucher(session: SessionDep, user: CurrentUser, voucher_id: Id) -> VoucherPublic:
    """One voucher: its status, amount, balance, expiry, or why it was rejected."""
    return _voucher_public(
        session, applications.voucher_get(session, user=user, voucher_id=voucher_id)
    )


@router.get("/vouchers/{voucher_id}/uses", response_model=list[VoucherUse])
def list_voucher_uses(session: SessionDep, user: CurrentUser, voucher_id: Id) -> list[VoucherUse]:
    """What the voucher paid, invoice by invoice, newest first."""
    uses = applications.voucher_uses(session, user=user, voucher_id=voucher_id)
    return [VoucherUse.model_validate(u, from_attributes=True) for u in uses]


@router.put("/bookings/{booking_id}/voucher")
def choose_voucher(
    session: SessionDep, user: CurrentUser, booking_id: Id, data: VoucherChoice
) -> dict[str, int]:
    """Pay your booking's voucher share with this voucher of your company: the invoice
    draws that share from it first. 403 for someone else's booking or voucher; 409 for an
    expired, used-up or unapproved voucher."""
    chosen = applications.voucher_choose(
        session, user=user, booking_id=booking_id, voucher_id=data.voucher_id
    )
    return {"booking_id": chosen.booking_id, "voucher_id": chosen.voucher_id}


@router.post("/vouchers/{voucher_id}/approve", response_model=VoucherPublic)
def approve_voucher(
    session: SessionDep, user: NetworkAdmin, voucher_id: Id, data: VoucherApprove
) -> VoucherPublic:
    """Approve an amount up to what was asked (network admins): 409 when the programme's
    budget or the company's yearly cap has too little left."""
    voucher = applications.application_approve(
        session, actor=user, voucher_id=voucher_id, amount=data.amount, note=data.note
    )
    return _voucher_public(session, voucher)


@router.post("/vouchers/{voucher_id}/reject", response_model=VoucherPublic)
def reject_voucher(
    session: SessionDep, user: NetworkAdmin, voucher_id: Id, data: VoucherReject
) -> VoucherPublic:
    """Reject an application with the reason the company will read (network admins)."""
    voucher = applications.application_reject(
        session, actor=user, voucher_id=voucher_id, reason=data.reason
    )
    return _voucher_public(session, voucher)


def _claim_public(session: Session, claim: Any, *, with_lines: bool) -> ClaimPublic:
    provider = session.get(Institution, claim.provider_institution_id)
    assert provider is not None
    lines = claims.claim_lines(session, claim.id) if with_lines else []
    return ClaimPublic(
        **claim.model_dump(exclude={"provider_institution_id", "submitted_by_id"}),
        programme=programme_get(session, claim.programme_id).code,
        provider=provider.code,
        line_items=[ClaimLinePublic.model_validate(x, from_attributes=True) for x in lines],
    )


@router.get(
    "/voucher-claims/uses",
    response_model=list[ClaimUse],
    dependencies=[Depends(only_params("programme_id", "period"))],
)
def unclaimed_uses(
    session: SessionDep,
    user: CurrentUser,
    programme_id: Annotated[int, Query(ge=1, le=2**31 - 1)],
    period: Period,
) -> list[ClaimUse]:
    """Your institution's voucher uses of a month not yet claimed, on paid invoices: what a
    claim would hold (providers' lab managers and institution admins)."""
    provider = claims.provider_of(user)
    programme_get(session, programme_id)
    found = claims.uses_of(session, provider_id=provider, programme_id=programme_id, period=period)
    return [ClaimUse.model_validate(u, from_attributes=True) for u in found]


@router.post("/voucher-claims", response_model=ClaimPublic, status_code=201)
def submit_claim(session: SessionDep, user: CurrentUser, data: ClaimIn) -> ClaimPublic:
    """Claim a month's unclaimed voucher uses of your services on paid invoices, one line
    per use with the digest of its evidence."""
    claim = claims.claim_submit(
        session, user=user, programme_id=data.programme_id, period=data.period
    )
    return _claim_public(session, claim, with_lines=True)


@router.get("/voucher-claims", response_model=list[ClaimPublic])
def list_claims(session: SessionDep, user: CurrentUser) -> list[ClaimPublic]:
    """Your institution's claims (network admins: everyone's), newest first."""
    return [
        _claim_public(session, c, with_lines=False) for c in claims.claims_list(session, user=user)
    ]


@router.get("/voucher-claims/{claim_id}", response_model=ClaimPublic)
def get_claim(session: SessionDep, user: CurrentUser, claim_id: Id) -> ClaimPublic:
    """A claim with its lines, each with its evidence digest and decision."""
    claim = claims.claim_get(session, user=user, claim_id=claim_id)
    return _claim_public(session, claim, with_lines=True)


@router.get("/voucher-claims/{claim_id}/lines/{line_id}/evidence")
def claim_line_evidence(
    session: SessionDep, user: CurrentUser, claim_id: Id, line_id: Id
) -> dict[str, Any]:
    """A line's evidence (the charge, booking, usage sessions with their telemetry events,
    invoice with payment, voucher) as stored now, with its digest when submitted and now."""
    return claims.line_evidence(session, user=user, claim_id=claim_id, line_id=line_id)


@router.post("/voucher-claims/{claim_id}/decide", response_model=ClaimPublic)
def decide_claim(
    session: SessionDep, user: NetworkAdmin, claim_id: Id, data: ClaimDecision
) -> ClaimPublic:
    """Approve or reject lines (all undecided ones without `line_ids`); a rejection needs
    its reason. A claim on a published notice is final: 409."""
    claim = claims.line_decide(
        session,
        actor=user,
        claim_id=claim_id,
        line_ids=data.line_ids,
        approve=data.approve,
        reason=data.reason,
    )
    return _claim_public(session, claim, with_lines=True)


@router.post("/voucher-notices", response_model=NoticePublic, status_code=201)
def publish_notice(session: SessionDep, user: NetworkAdmin, data: NoticeIn) -> NoticePublic:
    """Publish a programme's reviewed claims for public notice (公示) for `days`."""
    notice = claims.notice_publish(
        session, actor=user, programme_id=data.programme_id, days=data.days
    )
    return _notices(session, only=notice.id)[0]


@router.get("/voucher-notices", response_model=list[NoticePublic])
def list_notices(session: SessionDep) -> list[NoticePublic]:
    """Published notices, newest first, with each claim: provider, month, lines, approved
    amount and digest. Public: anyone may read them."""
    return _notices(session)


def _notices(session: Session, only: int | None = None) -> list[NoticePublic]:
    return [
        NoticePublic(
            id=n.id or 0,
            programme=p.code,
            programme_name=p.name,
            currency=p.currency,
            published_at=n.published_at,
            ends_on=n.ends_on,
            approved=n.approved,
            digest=n.digest,
            claims=[NoticeClaim.model_validate(e, from_attributes=True) for e in entries],
        )
        for n, p, entries in claims.notices_public(session)
        if only is None or n.id == only
    ]
