"""Redeeming vouchers (兑付): providers claim the voucher share of their services, the
bureau reviews each line against its evidence, and publishes the approved claims for
public notice (公示) before the settlement pays them.

A *use* is the voucher's share of one charge: each redemption (what a voucher paid of an
invoice) is split over the invoice's voucher-eligible charges in proportion to their
amounts (largest remainder, ties by charge id), so every provider on the invoice can claim
its own part and the parts sum to the redemption. Only uses on paid invoices are claimed:
the payment is part of the evidence.

Each line carries the SHA-256 of its evidence, written as canonical JSON: the charge (the
invoice line), its booking, the usage sessions matched to it with their telemetry events,
the invoice with its payment, and the voucher. The claim's digest is the SHA-256 of its
lines' digests in line order. `verify` recomputes both from the database and names the
line whose records changed since the claim was submitted.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.models import (
    Charge,
    ClaimStatus,
    Invoice,
    InvoiceStatus,
    LineDecision,
    Voucher,
    VoucherClaim,
    VoucherClaimLine,
    VoucherNotice,
    VoucherProgramme,
    VoucherRedemption,
)
from billing.vouchers import charge_shares, programme_get
from booking.models import Booking
from core.audit import audit_record
from core.db import is_postgres
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.events import emit
from core.models import Role, User
from core.periods import parse_period
from core.timeutil import utcnow
from telemetry.models import TelemetryEvent, UsageSession

PROVIDER_ROLES = (Role.lab_manager, Role.institution_admin)
NOTICE_DAYS = 7  # the usual public-notice period


@dataclass(frozen=True, slots=True)
class Use:
    """The voucher's share of one charge."""

    charge_id: int
    voucher_id: int
    invoice_id: int
    amount: int


def provider_of(user: User) -> int:
    if user.role not in PROVIDER_ROLES or user.institution_id is None:
        raise Forbidden("claims are submitted by a provider's lab managers or institution admins")
    return user.institution_id


def uses_of(
    session: Session, *, provider_id: int, programme_id: int, period: str, paid_only: bool = True
) -> list[Use]:
    """The provider's voucher uses on the month's invoices (paid ones by default), not yet
    claimed, in (charge, voucher) order."""
    invoice_filter = [col(Invoice.period) == period]
    if paid_only:
        invoice_filter.append(col(Invoice.status) == InvoiceStatus.paid)
    redemptions = session.execute(
        sa.select(
            col(VoucherRedemption.invoice_id),
            col(VoucherRedemption.voucher_id),
            sa.func.sum(col(VoucherRedemption.amount)),
        )
        .join(Invoice, col(Invoice.id) == VoucherRedemption.invoice_id)
        .where(
            col(VoucherRedemption.programme_id) == programme_id,
            col(VoucherRedemption.voucher_id).is_not(None),
            # Only the invoices this provider has a line on: its claim's work is its own.
            col(VoucherRedemption.invoice_id).in_(
                sa.select(col(Charge.invoice_id)).where(
                    col(Charge.provider_institution_id) == provider_id,
                    col(Charge.period) == period,
                    col(Charge.voucher_eligible).is_(True),
                )
            ),
            *invoice_filter,
        )
        .group_by(col(VoucherRedemption.invoice_id), col(VoucherRedemption.voucher_id))
    ).all()
    claimed = _claimed(session, provider_id)
    shares = charge_shares(session, [(int(i), int(v), int(a)) for i, v, a in redemptions])
    out = [
        Use(x.charge_id, x.voucher_id or 0, x.invoice_id, x.amount)
        for x in shares
        if x.provider_id == provider_id
        and x.amount > 0
        and (x.charge_id, x.voucher_id) not in claimed
    ]
    return sorted(out, key=lambda u: (u.charge_id, u.voucher_id))


def on_paid_invoices(session: Session, uses: list[Use]) -> list[Use]:
    """Of these uses, those whose invoice is paid: what a claim can take now."""
    invoice_ids = sorted({u.invoice_id for u in uses})
    if not invoice_ids:
        return []
    paid = set(
        session.execute(
            sa.select(col(Invoice.id)).where(
                col(Invoice.id).in_(invoice_ids), col(Invoice.status) == InvoiceStatus.paid
            )
        ).scalars()
    )
    return [u for u in uses if u.invoice_id in paid]


def _claimed(session: Session, provider_id: int) -> set[tuple[int, int]]:
    rows = session.execute(
        sa.select(col(VoucherClaimLine.charge_id), col(VoucherClaimLine.voucher_id))
        .join(VoucherClaim, col(VoucherClaim.id) == VoucherClaimLine.claim_id)
        .where(col(VoucherClaim.provider_institution_id) == provider_id)
    ).all()
    return {(int(c), int(v)) for c, v in rows}


# --- evidence --------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _rows(session: Session, columns: Sequence[Any], where: Any) -> list[dict[str, Any]]:
    result = session.execute(sa.select(*columns).where(where))
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: times in ISO 8601, enums as their values."""
    out = {}
    for key, value in record.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif hasattr(value, "value"):
            value = value.value
        out[key] = value
    return out


def evidence(session: Session, uses: Iterable[tuple[int, int]]) -> dict[tuple[int, int], dict]:
    """Per (charge, voucher): the records that prove the use, read in a few set-based
    queries whatever the number of uses."""
    wanted = sorted(set(uses))
    if not wanted:
        return {}
    charge_ids = sorted({c for c, _v in wanted})
    charges = {
        r["id"]: _plain(r)
        for r in _chunks(
            session,
            charge_ids,
            lambda ids: (
                [
                    col(Charge.id),
                    col(Charge.kind),
                    col(Charge.period),
                    col(Charge.payer_institution_id),
                    col(Charge.provider_institution_id),
                    col(Charge.instrument_id),
                    col(Charge.user_id),
                    col(Charge.booking_id),
                    col(Charge.usage_session_id),
                    col(Charge.unit),
                    col(Charge.quantity),
                    col(Charge.unit_amount),
                    col(Charge.amount),
                    col(Charge.currency),
                    col(Charge.service_start_at),
                    col(Charge.service_end_at),
                    col(Charge.invoice_id),
                    col(Charge.line_no),
                ],
                col(Charge.id).in_(ids),
            ),
        )
    }
    booking_ids = sorted({c["booking_id"] for c in charges.values() if c["booking_id"]})
    bookings = {
        r["id"]: _plain(r)
        for r in _chunks(
            session,
            booking_ids,
            lambda ids: (
                [
                    col(Booking.id),
                    col(Booking.instrument_id),
                    col(Booking.user_id),
                    col(Booking.start_at),
                    col(Booking.end_at),
                    col(Booking.status),
                ],
                col(Booking.id).in_(ids),
            ),
        )
    }
    session_columns = [
        col(UsageSession.id),
        col(UsageSession.instrument_id),
        col(UsageSession.user_id),
        col(UsageSession.start_at),
        col(UsageSession.end_at),
        col(UsageSession.last_event_at),
        col(UsageSession.booking_id),
        col(UsageSession.kind),
        col(UsageSession.samples),
        col(UsageSession.review),
    ]
    direct = sorted({c["usage_session_id"] for c in charges.values() if c["usage_session_id"]})
    sessions = {
        r["id"]: r
        for r in _chunks(
            session, direct, lambda ids: (session_columns, col(UsageSession.id).in_(ids))
        )
    }
    for r in _chunks(
        session, booking_ids, lambda ids: (session_columns, col(UsageSession.booking_id).in_(ids))
    ):
        sessions[r["id"]] = r
    events = _events(session, list(sessions.values()))
    by_booking: dict[int, list[dict]] = defaultdict(list)
    for s in sorted(sessions.values(), key=lambda s: s["id"]):
        if s["booking_id"]:
            by_booking[s["booking_id"]].append(s)
    invoice_ids = sorted({c["invoice_id"] for c in charges.values() if c["invoice_id"]})
    invoices = {
        r["id"]: _plain(r)
        for r in _rows(
            session,
            [
                col(Invoice.id),
                col(Invoice.number),
                col(Invoice.payer_institution_id),
                col(Invoice.period),
                col(Invoice.currency),
                col(Invoice.subtotal),
                col(Invoice.voucher_total),
                col(Invoice.total),
                col(Invoice.status),
                col(Invoice.paid_at),
            ],
            col(Invoice.id).in_(invoice_ids),
        )
    }
    voucher_ids = sorted({v for _c, v in wanted})
    vouchers = {
        r["id"]: _plain(r)
        for r in _rows(
            session,
            [
                col(Voucher.id),
                col(Voucher.programme_id),
                col(Voucher.institution_id),
                col(Voucher.year),
                col(Voucher.amount),
                col(Voucher.status),
            ],
            col(Voucher.id).in_(voucher_ids),
        )
    }
    out: dict[tuple[int, int], dict] = {}
    for charge_id, voucher_id in wanted:
        charge = charges.get(charge_id)
        if charge is None:
            out[(charge_id, voucher_id)] = {"charge": None}
            continue
        matched = (
            by_booking.get(charge["booking_id"], [])
            if charge["booking_id"]
            else [sessions[charge["usage_session_id"]]]
            if charge["usage_session_id"] in sessions
            else []
        )
        out[(charge_id, voucher_id)] = {
            "charge": charge,
            "booking": bookings.get(charge["booking_id"]) if charge["booking_id"] else None,
            "usage": [{**_plain(s), "events": events.get(s["id"], [])} for s in matched],
            "invoice": invoices.get(charge["invoice_id"]),
            "voucher": vouchers.get(voucher_id),
        }
    return out


def _chunks(session: Session, ids: list[int], make: Any, size: int = 5000) -> list[dict]:
    """_rows over `ids` a few thousand at a time (SQLite's limit on parameters)."""
    out: list[dict] = []
    for at in range(0, len(ids), size):
        columns, where = make(ids[at : at + size])
        out += _rows(session, columns, where)
    return out


def _events(session: Session, sessions: list[dict]) -> dict[int, list[list[Any]]]:
    """Per usage session, its instrument's telemetry events from its start to its end (or
    its last event), as [id, type, ts]."""
    if not sessions:
        return {}
    by_instrument: dict[int, list[dict]] = defaultdict(list)
    for s in sessions:
        by_instrument[s["instrument_id"]].append(s)
    low = min(s["start_at"] for s in sessions)
    high = max((s["end_at"] or s["last_event_at"]) for s in sessions)
    out: dict[int, list[list[Any]]] = defaultdict(list)
    rows = _chunks(
        session,
        sorted(by_instrument),
        lambda ids: (
            [
                col(TelemetryEvent.id),
                col(TelemetryEvent.instrument_id),
                col(TelemetryEvent.ts),
                col(TelemetryEvent.type),
            ],
            sa.and_(
                col(TelemetryEvent.instrument_id).in_(ids),
                col(TelemetryEvent.ts) >= low,
                col(TelemetryEvent.ts) <= high,
            ),
        ),
    )
    # Per instrument, its events in time order; each session takes the slice of them from
    # its start to its end (two bisections, not a scan per event).
    timeline: dict[int, list[dict]] = defaultdict(list)
    for e in sorted(rows, key=lambda e: (e["ts"], e["id"])):
        timeline[e["instrument_id"]].append(e)
    stamps = {i: [e["ts"] for e in evs] for i, evs in timeline.items()}
    for s in sessions:
        evs, ts = timeline.get(s["instrument_id"], []), stamps.get(s["instrument_id"], [])
        first = bisect.bisect_left(ts, s["start_at"])
        last = bisect.bisect_right(ts, s["end_at"] or s["last_event_at"])
        out[s["id"]] = [
            [e["id"], getattr(e["type"], "value", e["type"]), _iso(e["ts"])]
            for e in sorted(evs[first:last], key=lambda e: e["id"])
        ]
    return out


def digest_of(record: Any) -> str:
    """SHA-256 of a record's canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def claim_digest(line_digests: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(line_digests).encode()).hexdigest()


# --- submit, review, notice ------------------------------------------------------------------


def claim_submit(session: Session, *, user: User, programme_id: int, period: str) -> VoucherClaim:
    """Claim the month's unclaimed uses of the provider's services on paid invoices: one
    line per use with its evidence digest. 422 when there is nothing to claim."""
    provider_id = provider_of(user)
    parse_period(period)
    programme = programme_get(session, programme_id)
    uses = uses_of(session, provider_id=provider_id, programme_id=programme_id, period=period)
    if not uses:
        raise Invalid(
            f"nothing to claim for {period}: no unclaimed voucher use of your services on a "
            "paid invoice"
        )
    proofs = evidence(session, [(u.charge_id, u.voucher_id) for u in uses])
    digests = [digest_of(proofs[(u.charge_id, u.voucher_id)]) for u in uses]
    claim = VoucherClaim(
        programme_id=programme.id or 0,
        provider_institution_id=provider_id,
        period=period,
        lines=len(uses),
        claimed=sum(u.amount for u in uses),
        digest=claim_digest(digests),
        submitted_by_id=user.id,
    )
    session.add(claim)
    session.flush()
    session.execute(
        sa.insert(VoucherClaimLine),
        [
            {
                "claim_id": claim.id,
                "charge_id": u.charge_id,
                "voucher_id": u.voucher_id,
                "invoice_id": u.invoice_id,
                "amount": u.amount,
                "evidence_digest": d,
                "decision": LineDecision.pending,
                "reason": "",
            }
            for u, d in zip(uses, digests, strict=True)
        ],
    )
    audit_record(
        session,
        actor_id=user.id,
        action="claim.submit",
        entity="voucher_claim",
        entity_id=claim.id,
        after={
            "period": period,
            "lines": claim.lines,
            "claimed": claim.claimed,
            "digest": claim.digest,
        },
    )
    _claim_event(session, "voucher.claim_submitted", claim)
    return claim


def _claim_event(session: Session, type: str, claim: VoucherClaim) -> None:
    emit(
        session,
        type,
        lab_id=None,
        data={
            "claim_id": claim.id,
            "programme_id": claim.programme_id,
            "provider_institution_id": claim.provider_institution_id,
            "period": claim.period,
            "status": claim.status.value,
            "claimed": claim.claimed,
            "approved": claim.approved,
        },
    )


def claim_get(session: Session, *, user: User, claim_id: int) -> VoucherClaim:
    claim = session.get(VoucherClaim, claim_id)
    if claim is None or not (
        user.role == Role.network_admin or user.institution_id == claim.provider_institution_id
    ):
        raise NotFound(f"no claim {claim_id}")
    return claim


def claim_lines(session: Session, claim_id: int) -> list[VoucherClaimLine]:
    return list(
        session.exec(
            select(VoucherClaimLine)
            .where(VoucherClaimLine.claim_id == claim_id)
            .order_by(col(VoucherClaimLine.charge_id), col(VoucherClaimLine.voucher_id))
        )
    )


def claims_list(session: Session, *, user: User, limit: int = 200) -> list[VoucherClaim]:
    """The provider's claims (a network administrator: everyone's), newest first."""
    query = select(VoucherClaim).order_by(col(VoucherClaim.id).desc()).limit(limit)
    if user.role != Role.network_admin:
        if user.institution_id is None:
            return []
        query = query.where(VoucherClaim.provider_institution_id == user.institution_id)
    return list(session.exec(query))


def line_decide(
    session: Session,
    *,
    actor: User,
    claim_id: int,
    line_ids: list[int] | None,
    approve: bool,
    reason: str = "",
) -> VoucherClaim:
    """Approve or reject lines of a claim (all its undecided lines when `line_ids` is None).
    A rejection needs its reason; a claim on a published notice is final (409)."""
    if actor.role != Role.network_admin:
        raise Forbidden("only network administrators review claims")
    claim = session.get(VoucherClaim, claim_id, with_for_update=is_postgres(session))
    if claim is None:
        raise NotFound(f"no claim {claim_id}")
    if claim.status == ClaimStatus.noticed:
        raise Conflict(f"claim {claim_id} is on a published notice: its decisions are final")
    reason = reason.strip()
    if not approve and not reason:
        raise Invalid("say why the line is rejected: the provider reads it")
    lines = claim_lines(session, claim_id)
    chosen = (
        [line for line in lines if line.decision == LineDecision.pending]
        if line_ids is None
        else [line for line in lines if line.id in set(line_ids)]
    )
    if line_ids is not None and len(chosen) != len(set(line_ids)):
        missing = sorted(set(line_ids) - {line.id for line in chosen})
        raise NotFound(f"claim {claim_id} has no line {missing[0]}")
    now = utcnow()
    for line in chosen:
        line.decision = LineDecision.approved if approve else LineDecision.rejected
        line.reason = reason
        line.decided_by_id = actor.id
        line.decided_at = now
        session.add(line)
    claim.approved = sum(line.amount for line in lines if line.decision == LineDecision.approved)
    if all(line.decision != LineDecision.pending for line in lines):
        claim.status = ClaimStatus.reviewed
    session.add(claim)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="claim.approve" if approve else "claim.reject",
        entity="voucher_claim",
        entity_id=claim.id,
        after={
            "lines": [line.id for line in chosen],
            "reason": reason,
            "approved": claim.approved,
            "status": claim.status.value,
        },
    )
    _claim_event(session, "voucher.claim_decided", claim)
    return claim


def notice_publish(
    session: Session,
    *,
    actor: User,
    programme_id: int,
    days: int = NOTICE_DAYS,
    today: date | None = None,
) -> VoucherNotice:
    """Publish the programme's reviewed claims for public notice for `days` from `today`
    (the demo publishes one that has already run)."""
    if actor.role != Role.network_admin:
        raise Forbidden("only network administrators publish notices")
    if not 1 <= days <= 90:
        raise Invalid("a notice runs between 1 and 90 days")
    programme_get(session, programme_id)
    claims = list(
        session.exec(
            select(VoucherClaim)
            .where(
                VoucherClaim.programme_id == programme_id,
                VoucherClaim.status == ClaimStatus.reviewed,
            )
            .order_by(col(VoucherClaim.id))
            .with_for_update()
        )
    )
    if not claims:
        raise Invalid("no reviewed claim is waiting to be published")
    now = utcnow()
    today = today or now.date()
    notice = VoucherNotice(
        programme_id=programme_id,
        published_at=datetime.combine(today, now.timetz()),
        ends_on=today + timedelta(days=days),
        claims=len(claims),
        approved=sum(c.approved for c in claims),
        digest=claim_digest(c.digest for c in claims),
        published_by_id=actor.id,
    )
    session.add(notice)
    session.flush()
    for claim in claims:
        claim.status = ClaimStatus.noticed
        claim.notice_id = notice.id
        session.add(claim)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="notice.publish",
        entity="voucher_notice",
        entity_id=notice.id,
        after={
            "claims": [c.id for c in claims],
            "approved": notice.approved,
            "ends_on": notice.ends_on.isoformat(),
            "digest": notice.digest,
        },
    )
    return notice


@dataclass(frozen=True)
class NoticeEntry:
    provider: str
    period: str
    lines: int
    approved: int
    digest: str


def notices_public(
    session: Session, *, limit: int = 20
) -> list[tuple[VoucherNotice, VoucherProgramme, list[NoticeEntry]]]:
    """The published notices, newest first, each with its claims: what anyone may read."""
    from instruments.models import Institution

    notices = session.exec(
        select(VoucherNotice).order_by(col(VoucherNotice.id).desc()).limit(limit)
    ).all()
    out = []
    for notice in notices:
        rows = session.exec(
            select(VoucherClaim, Institution.name)
            .join(Institution, col(Institution.id) == VoucherClaim.provider_institution_id)
            .where(VoucherClaim.notice_id == notice.id)
            .order_by(col(Institution.name), col(VoucherClaim.period))
        ).all()
        entries = [NoticeEntry(name, c.period, c.lines, c.approved, c.digest) for c, name in rows]
        out.append((notice, programme_get(session, notice.programme_id), entries))
    return out


# --- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    line_id: int | None  # None: the claim's own digest
    charge_id: int | None
    problem: str


def claim_verify(session: Session, claim_id: int) -> list[Finding]:
    """Recompute every line's evidence digest and the claim's digest from the database;
    what no longer matches, line by line (empty: the claim holds)."""
    claim = session.get(VoucherClaim, claim_id)
    if claim is None:
        raise NotFound(f"no claim {claim_id}")
    lines = claim_lines(session, claim_id)
    proofs = evidence(session, [(line.charge_id, line.voucher_id) for line in lines])
    findings = [
        Finding(line.id, line.charge_id, "its evidence changed since the claim was submitted")
        for line in lines
        if digest_of(proofs[(line.charge_id, line.voucher_id)]) != line.evidence_digest
    ]
    if claim_digest(line.evidence_digest for line in lines) != claim.digest:
        findings.append(Finding(None, None, "the claim's digest does not match its lines"))
    return findings


def line_evidence(session: Session, *, user: User, claim_id: int, line_id: int) -> dict[str, Any]:
    """One line's evidence as the database holds it now, its digest then and now: what a
    reviewer checks a line against (the claim's provider may read it too)."""
    claim_get(session, user=user, claim_id=claim_id)
    line = session.get(VoucherClaimLine, line_id)
    if line is None or line.claim_id != claim_id:
        raise NotFound(f"claim {claim_id} has no line {line_id}")
    record = evidence(session, [(line.charge_id, line.voucher_id)])[
        (line.charge_id, line.voucher_id)
    ]
    now = digest_of(record)
    return {
        "line_id": line.id,
        "amount": line.amount,
        "decision": line.decision.value,
        "digest_submitted": line.evidence_digest,
        "digest_now": now,
        "matches": now == line.evidence_digest,
        "evidence": record,
    }
