"""Settlements: preview a month's sharing rewards and voucher reimbursements, then finalize.

A preview stores every figure that went in, the score, the reward and the reimbursement,
per instrument and per institution, with a SHA-256 of the inputs. Finalizing recomputes
the inputs, refuses if they changed since the preview, posts the money to the ledger and
makes the settlement immutable. Same inputs, same numbers to the cent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from admin import figures as fig
from admin.errors import NothingToSettle, SettlementFinalized, SettlementNotFound
from admin.models import (
    Settlement,
    SettlementClaim,
    SettlementInstitution,
    SettlementInstrument,
    SettlementStatus,
    SubsidyPolicy,
)
from admin.policies import policy_document, policy_resolve
from admin.settlement_ledger import settlement_post
from admin.subsidy import Allocation, InstrumentFigures, PolicyDocument, allocate
from billing.models import BillingPeriod, PeriodStatus
from core.audit import audit_record
from core.db import is_postgres
from core.errors import Conflict
from core.periods import Period
from core.timeutil import utcnow

INSERT_CHUNK = 5000


@dataclass(frozen=True)
class Inputs:
    """What a settlement computes from: every instrument's figures, and the voucher claims
    it pays (id, digest)."""

    figures: list[InstrumentFigures]
    claims: list[tuple[int, str]]


def settlement_inputs(session: Session, *, period: Period, policy: PolicyDocument) -> Inputs:
    """The figures of every instrument active in the period, with the voucher claims whose
    public notice has run and that no settlement has paid yet (their approved lines are
    the instruments' vouchers redeemed); NothingToSettle when there is nothing."""
    if is_postgres(session):
        # The month's sessions are sorted per instrument for the distinct outsiders: in
        # memory rather than spilled to disk (this transaction only).
        session.execute(sa.text("SET LOCAL work_mem = '64MB'"))
    use = fig.usage(session, period)
    money = fig.revenue(session, period, policy.currency)
    redeemed, claims = fig.claims_payable(session, period, policy.currency, utcnow().date())
    if not use and not money and not redeemed:
        raise NothingToSettle(period.label)
    hours = fig.open_seconds(session, period)
    none = fig.Usage(0, 0, 0, 0)
    out = []
    for row in fig.instruments_all(session):
        # Only instruments with something to settle: a quiet instrument scores nothing, and
        # leaving it out keeps catalog edits to it from invalidating a preview.
        if row.id not in use and row.id not in money and row.id not in redeemed:
            continue
        u = use.get(row.id, none)
        out.append(
            InstrumentFigures(
                instrument_id=row.id,
                institution_id=row.institution_id,
                asset_value=row.asset_value,
                evaluation_failed=row.evaluation_failed,
                used_seconds=u.used_seconds,
                open_seconds=hours.get(row.id, 0),
                external_seconds=u.external_seconds,
                external_revenue=money[row.id].external if row.id in money else 0,
                outside_users=u.outside_users,
                vouchers_redeemed=redeemed.get(row.id, 0),
            )
        )
    return Inputs(out, claims)


def inputs_hash(
    period: str,
    policy: PolicyDocument,
    figures: list[InstrumentFigures],
    claims: Sequence[tuple[int, str]] = (),
) -> str:
    """SHA-256 of the canonical JSON of the period, the policy, every instrument's figures
    and the digests of the voucher claims paid (each digest covers its lines' evidence)."""
    canonical: dict[str, object] = {
        "period": period,
        "policy": policy.canonical(),
        "figures": [f.as_list() for f in sorted(figures, key=lambda f: f.instrument_id)],
    }
    if claims:  # absent without claims: earlier previews keep their hash
        canonical["voucher_claims"] = [digest for _id, digest in sorted(claims)]
    raw = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


def _decimal_text(value: Fraction, places: int = 4) -> str:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return str(exact.quantize(Decimal(1).scaleb(-places)))


def _round_half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)).__floor__())


def _store_lines(session: Session, settlement_id: int, alloc: Allocation) -> None:
    institutions, instruments = [], []
    for inst in alloc.institutions:
        rows = inst.instruments
        institutions.append(
            {
                "settlement_id": settlement_id,
                "institution_id": inst.institution_id,
                "instruments": len(rows),
                "eligible_instruments": sum(r.eligible for r in rows),
                "used_seconds": sum(r.figures.used_seconds for r in rows),
                "external_seconds": sum(r.figures.external_seconds for r in rows),
                "external_revenue": sum(r.figures.external_revenue for r in rows),
                "vouchers_redeemed": sum(r.figures.vouchers_redeemed for r in rows),
                "claim": _round_half_up(inst.claim),
                "capped": inst.capped,
                "reward": inst.reward,
                "voucher_reimbursement": inst.voucher_reimbursement,
            }
        )
        for r in rows:
            f = r.figures
            instruments.append(
                {
                    "settlement_id": settlement_id,
                    "instrument_id": f.instrument_id,
                    "institution_id": f.institution_id,
                    "eligible": r.eligible,
                    "reason": r.reason,
                    "asset_value": f.asset_value,
                    "evaluation_failed": f.evaluation_failed,
                    "used_seconds": f.used_seconds,
                    "open_seconds": f.open_seconds,
                    "external_seconds": f.external_seconds,
                    "external_revenue": f.external_revenue,
                    "outside_users": f.outside_users,
                    "vouchers_redeemed": f.vouchers_redeemed,
                    "utilisation_bp": _round_half_up(r.utilisation * 10_000),
                    "score": _decimal_text(r.score),
                    "reward": r.reward,
                    "voucher_reimbursement": r.voucher_reimbursement,
                }
            )
    if institutions:
        session.execute(SettlementInstitution.__table__.insert(), institutions)  # type: ignore[attr-defined]
    for i in range(0, len(instruments), INSERT_CHUNK):
        session.execute(
            SettlementInstrument.__table__.insert(),  # type: ignore[attr-defined]
            instruments[i : i + INSERT_CHUNK],
        )


def _summary(settlement: Settlement) -> dict[str, object]:
    return {
        "period": settlement.period,
        "status": settlement.status.value,
        "policy_id": settlement.policy_id,
        "inputs_hash": settlement.inputs_hash,
        "total_reward": settlement.total_reward,
        "currency": settlement.currency,
        "total_voucher_reimbursement": settlement.total_voucher_reimbursement,
        "scale": settlement.scale,
        "journal_entry_id": settlement.journal_entry_id,
    }


def _compute(
    session: Session, settlement: Settlement, period: Period, policy: PolicyDocument
) -> Allocation:
    inputs = settlement_inputs(session, period=period, policy=policy)
    figures = inputs.figures
    alloc = allocate(policy, figures)
    settlement.currency = policy.currency
    settlement.budget = policy.budget
    settlement.total_claim = _round_half_up(alloc.total_claim)
    settlement.scale = f"{alloc.scale.numerator}/{alloc.scale.denominator}"
    settlement.total_reward = alloc.total_reward
    settlement.total_voucher_reimbursement = alloc.total_voucher_reimbursement
    settlement.instruments = len(figures)
    settlement.institutions = len(alloc.institutions)
    settlement.inputs_hash = inputs_hash(period.label, policy, figures, inputs.claims)
    return alloc


def settlement_preview(
    session: Session,
    *,
    period: str,
    policy_id: int | None,
    actor_id: int | None,
    note: str = "",
) -> Settlement:
    """Compute and store a preview settlement for the month under a policy (latest by default)."""
    month = Period.parse(period)
    policy_row = policy_resolve(session, policy_id)
    assert policy_row.id is not None
    settlement = Settlement(
        period=month.label,
        policy_id=policy_row.id,
        currency="",
        budget=0,
        inputs_hash="",
        note=note,
        created_by_id=actor_id,
    )
    alloc = _compute(session, settlement, month, policy_document(policy_row))
    session.add(settlement)
    session.flush()
    assert settlement.id is not None
    _store_lines(session, settlement.id, alloc)
    audit_record(
        session,
        actor_id=actor_id,
        action="settlement.preview",
        entity="settlement",
        entity_id=settlement.id,
        after=_summary(settlement),
    )
    return settlement


def settlement_get(session: Session, settlement_id: int, *, lock: bool = False) -> Settlement:
    """The settlement, or SettlementNotFound."""
    query = select(Settlement).where(Settlement.id == settlement_id)
    if lock:
        query = query.with_for_update()
    settlement = session.exec(query).first()
    if settlement is None:
        raise SettlementNotFound(settlement_id)
    return settlement


def settlement_list(
    session: Session, *, period: str | None, after: int | None, limit: int
) -> tuple[list[Settlement], int | None]:
    """Settlements newest first; returns the page and the id to continue after."""
    query = select(Settlement)
    if period:
        query = query.where(Settlement.period == Period.parse(period).label)
    if after is not None:
        query = query.where(col(Settlement.id) < after)
    rows = list(session.exec(query.order_by(col(Settlement.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def _editable(session: Session, settlement_id: int) -> Settlement:
    settlement = settlement_get(session, settlement_id, lock=True)
    if settlement.status == SettlementStatus.finalized:
        raise SettlementFinalized(settlement_id)
    return settlement


def settlement_update(
    session: Session,
    *,
    settlement_id: int,
    policy_id: int | None,
    note: str | None,
    actor_id: int | None,
) -> Settlement:
    """Recompute a preview (under another policy, or on newer data) or change its note."""
    settlement = _editable(session, settlement_id)
    before = _summary(settlement) | {"note": settlement.note}
    if note is not None:
        settlement.note = note
    policy_row = policy_resolve(session, policy_id or settlement.policy_id)
    settlement.policy_id = policy_row.id  # type: ignore[assignment]
    alloc = _compute(
        session, settlement, Period.parse(settlement.period), policy_document(policy_row)
    )
    for table in (SettlementInstrument, SettlementInstitution):
        session.execute(sa.delete(table).where(col(table.settlement_id) == settlement_id))
    _store_lines(session, settlement_id, alloc)
    session.add(settlement)
    session.flush()
    audit_record(
        session,
        actor_id=actor_id,
        action="settlement.update",
        entity="settlement",
        entity_id=settlement_id,
        before=before,
        after=_summary(settlement) | {"note": settlement.note},
    )
    return settlement


def settlement_delete(session: Session, *, settlement_id: int, actor_id: int | None) -> None:
    """Discard a preview; a finalized settlement stays forever."""
    settlement = _editable(session, settlement_id)
    before = _summary(settlement)
    for table in (SettlementInstrument, SettlementInstitution):
        session.execute(sa.delete(table).where(col(table.settlement_id) == settlement_id))
    session.delete(settlement)
    session.flush()
    audit_record(
        session,
        actor_id=actor_id,
        action="settlement.delete",
        entity="settlement",
        entity_id=settlement_id,
        before=before,
    )


def settlement_finalize(
    session: Session, *, settlement_id: int, actor_id: int | None
) -> Settlement:
    """Check the inputs are unchanged, post to the ledger, and make the settlement immutable."""
    settlement = _editable(session, settlement_id)
    month = Period.parse(settlement.period)
    if month.end > utcnow():
        raise Conflict(f"period {settlement.period} has not ended yet: it can only be previewed")
    billing_month = session.get(BillingPeriod, settlement.period, with_for_update={"read": True})
    if billing_month is None or billing_month.status != PeriodStatus.closed:
        # Its revenue and vouchers are not final until its invoices are: a run after the
        # settlement would add what the frozen settlement never saw.
        raise Conflict(
            f"billing month {settlement.period} is not closed: run and close its invoices "
            f"first (labshare invoices close --period {settlement.period})"
        )
    other = session.exec(
        select(Settlement.id).where(
            Settlement.period == settlement.period, Settlement.status == SettlementStatus.finalized
        )
    ).first()
    if other is not None:
        raise Conflict(f"period {settlement.period} is already settled by settlement {other}")
    policy_row = session.get(SubsidyPolicy, settlement.policy_id)
    assert policy_row is not None
    policy = policy_document(policy_row)
    inputs = settlement_inputs(session, period=month, policy=policy)
    if inputs_hash(month.label, policy, inputs.figures, inputs.claims) != settlement.inputs_hash:
        raise Conflict(
            f"the figures of {settlement.period} changed since this preview; "
            "preview again (PATCH the settlement) and finalize that"
        )
    before = _summary(settlement)
    lines = session.exec(
        select(SettlementInstitution).where(SettlementInstitution.settlement_id == settlement_id)
    ).all()
    settlement.journal_entry_id = settlement_post(session, settlement=settlement, lines=list(lines))
    # The claims it pays, once: a later settlement no longer counts them.
    session.add_all(
        SettlementClaim(settlement_id=settlement_id, claim_id=i) for i, _d in inputs.claims
    )
    settlement.status = SettlementStatus.finalized
    settlement.finalized_at = utcnow()
    settlement.finalized_by_id = actor_id
    session.add(settlement)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"period {settlement.period} was settled meanwhile")
    audit_record(
        session,
        actor_id=actor_id,
        action="settlement.finalize",
        entity="settlement",
        entity_id=settlement_id,
        before=before,
        after=_summary(settlement),
    )
    return settlement
