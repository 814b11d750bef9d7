"""Applying for an innovation voucher (申领) and the bureau's review.

A small company (a researcher or institution admin of an institution that is one) applies
to an open programme for an amount and says what it needs tested, giving the company's
unified social credit code. A network administrator approves an amount up to what was
asked, within what the programme's budget and the company's yearly cap have left, or
rejects with a reason; the voucher then holds that amount until `expires_on`. Unused
vouchers expire and return what they did not use.

What approvals take is counted on two rows: voucher_programme.committed (<= budget) and
voucher_allowance.approved (<= the company's yearly cap). A decision locks the programme
row, then the company's allowance (PostgreSQL; SQLite's write lock already serialises
writers), checks, and moves both by SQL increments; the CHECK constraints refuse any
total past its limit should a path ever skip the lock. Every decision is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from billing.models import (
    BookingVoucher,
    Invoice,
    Voucher,
    VoucherProgramme,
    VoucherRedemption,
    VoucherStatus,
)
from billing.vouchers import programme_get
from booking.models import ACTIVE_STATUSES, Booking, BookingStatus
from core.audit import audit_record
from core.db import is_postgres
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.events import emit
from core.models import Role, User
from core.money import format_money
from core.timeutil import utcnow
from instruments.credit_code import credit_code_problem, normalise
from instruments.models import Institution, Instrument, Lab

# How long an approved voucher lasts, at most (and never past its programme's end).
VALIDITY = timedelta(days=365)
APPLICANT_ROLES = (Role.researcher, Role.institution_admin)


def _money(amount: int, programme: VoucherProgramme) -> str:
    return format_money(amount, programme.currency)


def is_small_company(institution: Institution) -> bool:
    """Flagged by the network's administrators as a small company: the flag billing's
    voucher eligibility reads (billing.charge_sql)."""
    return institution.is_small_company


def _company_of(session: Session, user: User) -> Institution:
    """The small company this person applies for, or why they cannot."""
    if user.role not in APPLICANT_ROLES or user.institution_id is None:
        raise Forbidden("vouchers are applied for by a small company's researchers or admins")
    company = session.get(Institution, user.institution_id)
    assert company is not None
    if not is_small_company(company):
        raise Invalid(
            f"{company.name} is not registered as a small company: innovation vouchers are "
            "for small tech companies"
        )
    return company


def _open_on(programme: VoucherProgramme, day: date) -> bool:
    return programme.starts_on <= day <= programme.ends_on


@dataclass(frozen=True)
class Standing:
    """A company's standing in a programme's year: what its vouchers were approved for and
    what is left of its cap."""

    cap: int
    approved: int

    @property
    def left(self) -> int:
        return max(0, self.cap - self.approved)


def standing(
    session: Session, programme: VoucherProgramme, institution_id: int, year: int
) -> Standing:
    approved = session.execute(
        text(
            "SELECT approved FROM voucher_allowance "
            "WHERE programme_id = :p AND institution_id = :i AND year = :y"
        ),
        {"p": programme.id, "i": institution_id, "y": year},
    ).scalar_one_or_none()
    return Standing(programme.company_yearly_cap, int(approved or 0))


def application_submit(
    session: Session,
    *,
    user: User,
    programme_id: int,
    amount: int,
    needs: str,
    credit_code: str,
    today: date | None = None,
) -> Voucher:
    """Apply for a voucher: 422 with the reason when the company, code, programme or amount
    cannot be, 409 when the company already has an application waiting."""
    today = today or utcnow().date()
    company = _company_of(session, user)
    code = normalise(credit_code)
    problem = credit_code_problem(code)
    if problem:
        raise Invalid(problem)
    if company.credit_code and company.credit_code != code:
        raise Invalid(
            f"{company.name} is registered with the credit code {company.credit_code}, not {code}"
        )
    taken = session.exec(
        select(Institution.name).where(
            Institution.credit_code == code, col(Institution.id) != company.id
        )
    ).first()
    if taken:
        raise Invalid(f"the credit code {code} is registered to {taken}")
    programme = programme_get(session, programme_id)
    if not _open_on(programme, today):
        raise Invalid(
            f"{programme.name} takes applications from {programme.starts_on} to {programme.ends_on}"
        )
    needs = needs.strip()
    if not needs:
        raise Invalid("say what the company needs tested")
    if amount <= 0:
        raise Invalid("the amount must be positive")
    left = standing(session, programme, company.id or 0, today.year).left
    if amount > left:
        raise Invalid(
            f"the amount is over the company's cap: {_money(left, programme)} of "
            f"{_money(programme.company_yearly_cap, programme)} is left for {today.year}"
        )
    waiting = session.exec(
        select(Voucher.id).where(
            Voucher.institution_id == company.id,
            Voucher.programme_id == programme.id,
            Voucher.status == VoucherStatus.pending,
        )
    ).first()
    if waiting:
        raise Conflict(f"{company.name} already has application {waiting} waiting for review")
    if not company.credit_code:
        company.credit_code = code
        session.add(company)
        audit_record(
            session,
            actor_id=user.id,
            action="institution.credit_code",
            entity="institution",
            entity_id=company.id,
            after={"credit_code": code},
        )
    voucher = Voucher(
        programme_id=programme.id or 0,
        institution_id=company.id or 0,
        applicant_id=user.id or 0,
        year=today.year,
        requested=amount,
        needs=needs,
    )
    session.add(voucher)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="voucher.apply",
        entity="voucher",
        entity_id=voucher.id,
        after={"programme": programme.code, "requested": amount, "institution": company.code},
    )
    _voucher_event(session, "voucher.applied", voucher)
    return voucher


def _voucher_event(session: Session, type: str, voucher: Voucher) -> None:
    emit(
        session,
        type,
        lab_id=None,
        data={
            "voucher_id": voucher.id,
            "programme_id": voucher.programme_id,
            "institution_id": voucher.institution_id,
            "status": voucher.status.value,
            "requested": voucher.requested,
            "amount": voucher.amount,
            "expires_on": voucher.expires_on.isoformat() if voucher.expires_on else None,
        },
    )


def _lock(session: Session, statement: str, params: Mapping[str, object]) -> None:
    if is_postgres(session):
        session.execute(text(statement + " FOR UPDATE"), params)


def _hold(session: Session, params: Mapping[str, object], amount: int) -> None:
    """Move what approvals hold of the programme's budget and the company's cap by
    `amount` (negative: given back); the CHECKs refuse a total past its limit."""
    session.execute(
        text("UPDATE voucher_programme SET committed = committed + :a WHERE id = :p"),
        {**params, "a": amount},
    )
    session.execute(
        text(
            "UPDATE voucher_allowance SET approved = approved + :a "
            "WHERE programme_id = :p AND institution_id = :i AND year = :y"
        ),
        {**params, "a": amount},
    )


def voucher_get(session: Session, *, user: User, voucher_id: int) -> Voucher:
    """A voucher its company's people or a network administrator may see."""
    voucher = session.get(Voucher, voucher_id)
    if voucher is None or not (
        user.role == Role.network_admin or user.institution_id == voucher.institution_id
    ):
        raise NotFound(f"no voucher {voucher_id}")
    return voucher


def _pending_for_review(session: Session, actor: User, voucher_id: int) -> Voucher:
    if actor.role != Role.network_admin:
        raise Forbidden("only network administrators review voucher applications")
    voucher = session.get(Voucher, voucher_id, with_for_update=is_postgres(session))
    if voucher is None:
        raise NotFound(f"no voucher {voucher_id}")
    if voucher.status != VoucherStatus.pending:
        raise Conflict(f"voucher {voucher_id} was already {voucher.status.value}")
    return voucher


def application_approve(
    session: Session,
    *,
    actor: User,
    voucher_id: int,
    amount: int | None = None,
    note: str = "",
    today: date | None = None,
) -> Voucher:
    """Approve an amount (what was asked, or less): 409 when the programme's budget or the
    company's cap has too little left."""
    today = today or utcnow().date()
    voucher = _pending_for_review(session, actor, voucher_id)
    amount = voucher.requested if amount is None else amount
    if not 0 < amount <= voucher.requested:
        programme = programme_get(session, voucher.programme_id)
        raise Invalid(
            f"approve an amount above zero, at most the {_money(voucher.requested, programme)} "
            "asked for"
        )
    params = {"p": voucher.programme_id, "i": voucher.institution_id, "y": voucher.year}
    # The programme first, then the company's allowance: concurrent decisions queue here.
    _lock(session, "SELECT committed FROM voucher_programme WHERE id = :p", params)
    programme = programme_get(session, voucher.programme_id)
    session.refresh(programme)
    if programme.ends_on < today:
        raise Conflict(f"{programme.name} ended on {programme.ends_on}")
    if programme.committed + amount > programme.budget:
        raise Conflict(
            f"{programme.name} has {_money(programme.budget - programme.committed, programme)} "
            f"of its budget left, less than {_money(amount, programme)}"
        )
    session.execute(
        text(
            "INSERT INTO voucher_allowance (programme_id, institution_id, year, cap, used, "
            "approved) VALUES (:p, :i, :y, :cap, 0, 0) ON CONFLICT DO NOTHING"
        ),
        {**params, "cap": programme.company_yearly_cap},
    )
    _lock(
        session,
        "SELECT approved FROM voucher_allowance "
        "WHERE programme_id = :p AND institution_id = :i AND year = :y",
        params,
    )
    left = standing(session, programme, voucher.institution_id, voucher.year).left
    if amount > left:
        raise Conflict(
            f"the company has {_money(left, programme)} of its "
            f"{_money(programme.company_yearly_cap, programme)} cap left for {voucher.year}, "
            f"less than {_money(amount, programme)}"
        )
    _hold(session, params, amount)
    session.expire(programme)
    voucher.status = VoucherStatus.approved
    voucher.amount = amount
    voucher.reason = note.strip()
    voucher.expires_on = min(programme.ends_on, today + VALIDITY)
    voucher.decided_by_id = actor.id
    voucher.decided_at = utcnow()
    session.add(voucher)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="voucher.approve",
        entity="voucher",
        entity_id=voucher.id,
        before={"status": "pending", "requested": voucher.requested},
        after={"status": "approved", "amount": amount, "expires_on": str(voucher.expires_on)},
    )
    _voucher_event(session, "voucher.approved", voucher)
    return voucher


def application_reject(session: Session, *, actor: User, voucher_id: int, reason: str) -> Voucher:
    """Reject with a reason the company reads (422 without one)."""
    reason = reason.strip()
    if not reason:
        raise Invalid("say why the application is rejected: the company reads it")
    voucher = _pending_for_review(session, actor, voucher_id)
    voucher.status = VoucherStatus.rejected
    voucher.reason = reason
    voucher.decided_by_id = actor.id
    voucher.decided_at = utcnow()
    session.add(voucher)
    session.flush()
    audit_record(
        session,
        actor_id=actor.id,
        action="voucher.reject",
        entity="voucher",
        entity_id=voucher.id,
        before={"status": "pending"},
        after={"status": "rejected", "reason": reason},
    )
    _voucher_event(session, "voucher.rejected", voucher)
    return voucher


def vouchers_expire(session: Session, *, today: date | None = None) -> tuple[int, int]:
    """Expire the approved vouchers past their day; what they left unused goes back to the
    programme's budget and the company's cap. Returns (vouchers, amount returned)."""
    today = today or utcnow().date()
    due = session.exec(
        select(Voucher)
        .where(Voucher.status == VoucherStatus.approved, col(Voucher.expires_on) < today)
        .order_by(col(Voucher.programme_id), col(Voucher.id))
    ).all()
    returned = 0
    for voucher in due:
        params = {"p": voucher.programme_id, "i": voucher.institution_id, "y": voucher.year}
        _lock(session, "SELECT committed FROM voucher_programme WHERE id = :p", params)
        unused = voucher.amount - voucher.used
        _hold(session, params, -unused)
        voucher.status = VoucherStatus.expired
        session.add(voucher)
        audit_record(
            session,
            actor_id=None,
            action="voucher.expire",
            entity="voucher",
            entity_id=voucher.id,
            before={"status": "approved", "balance": unused},
            after={"status": "expired", "returned": unused},
        )
        returned += unused
    session.flush()
    return len(due), returned


def vouchers_list(
    session: Session,
    *,
    user: User,
    status: VoucherStatus | None = None,
    limit: int = 200,
) -> list[Voucher]:
    """A company's vouchers, newest first; for a network administrator every company's, a
    status's oldest first (the review queue)."""
    query = select(Voucher)
    if status is not None:
        query = query.where(Voucher.status == status)
    if user.role == Role.network_admin:
        order = col(Voucher.id) if status == VoucherStatus.pending else col(Voucher.id).desc()
        return list(session.exec(query.order_by(order).limit(limit)))
    if user.institution_id is None:
        return []
    query = query.where(Voucher.institution_id == user.institution_id)
    return list(session.exec(query.order_by(col(Voucher.id).desc()).limit(limit)))


@dataclass(frozen=True)
class History:
    """What a reviewer sees of a company beside its application."""

    applications: int
    approved_total: int
    used_total: int
    rejected: int


def company_history(session: Session, institution_ids: list[int]) -> dict[int, History]:
    """Per company: its applications, what was approved and used, how many were rejected."""
    if not institution_ids:
        return {}
    rows = session.execute(
        sa_select(
            col(Voucher.institution_id),
            func.count(),
            func.coalesce(func.sum(Voucher.amount), 0),
            func.coalesce(func.sum(Voucher.used), 0),
            func.sum(case((col(Voucher.status) == VoucherStatus.rejected, 1), else_=0)),
        )
        .where(col(Voucher.institution_id).in_(institution_ids))
        .group_by(col(Voucher.institution_id))
    ).all()
    return {
        i: History(int(n), int(approved), int(used), int(rejected or 0))
        for i, n, approved, used, rejected in rows
    }


def open_programmes(session: Session, today: date | None = None) -> list[VoucherProgramme]:
    """Programmes taking applications today."""
    today = today or utcnow().date()
    return list(
        session.exec(
            select(VoucherProgramme)
            .where(VoucherProgramme.starts_on <= today, VoucherProgramme.ends_on >= today)
            .order_by(col(VoucherProgramme.id))
        )
    )


@dataclass(frozen=True)
class Use:
    """One use of a voucher: the part of an invoice it paid."""

    voucher_id: int
    invoice_id: int
    invoice_number: str
    period: str
    eligible: int
    amount: int
    at: datetime


def voucher_uses(
    session: Session, *, user: User, voucher_id: int | None = None, limit: int = 200
) -> list[Use]:
    """What the company's vouchers paid, invoice by invoice, newest first (a network
    administrator: any company's)."""
    query = (
        select(VoucherRedemption, Invoice.number, Invoice.period)
        .join(Invoice, col(Invoice.id) == VoucherRedemption.invoice_id)
        .where(col(VoucherRedemption.voucher_id).is_not(None))
    )
    if voucher_id is not None:
        voucher_get(session, user=user, voucher_id=voucher_id)  # 404 unless theirs
        query = query.where(VoucherRedemption.voucher_id == voucher_id)
    elif user.role != Role.network_admin:
        query = query.where(VoucherRedemption.institution_id == user.institution_id)
    rows = session.exec(query.order_by(col(VoucherRedemption.id).desc()).limit(limit)).all()
    return [
        Use(r.voucher_id or 0, r.invoice_id, number, period, r.eligible_amount, r.amount,
            r.created_at)
        for r, number, period in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class Cover:
    """What a company's vouchers of one programme would pay of its use at a provider."""

    programme: str
    coverage_bp: int
    balance: int
    currency: str


def voucher_cover(
    session: Session, *, user: User | None, provider_institution_id: int, today: date | None = None
) -> list[Cover]:
    """For a person about to book: per programme, the share its company's approved vouchers
    pay of use at this provider, and their balance. Nothing for use at one's own
    institution, for a company not flagged small, or without a voucher with a balance."""
    if user is None or user.institution_id in (None, provider_institution_id):
        return []
    company = session.get(Institution, user.institution_id)
    if company is None or not is_small_company(company):
        return []
    today = today or utcnow().date()
    rows = session.exec(
        select(VoucherProgramme, func.sum(Voucher.amount - Voucher.used))
        .join(Voucher, col(Voucher.programme_id) == VoucherProgramme.id)
        .where(
            Voucher.institution_id == company.id,
            Voucher.status == VoucherStatus.approved,
            col(Voucher.expires_on) >= today,
            Voucher.year == today.year,
        )
        .group_by(col(VoucherProgramme.id))
        .order_by(col(VoucherProgramme.id))
    ).all()
    return [
        Cover(p.name, p.coverage_bp, int(balance), p.currency)
        for p, balance in rows
        if balance and int(balance) > 0
    ]


@dataclass(frozen=True)
class Split:
    """A quote shared between a company's vouchers and the company."""

    total: int
    voucher_pays: int
    company_pays: int
    programme: str | None


def voucher_split(
    session: Session, *, user: User | None, provider_institution_id: int, total: int
) -> Split:
    """How a cost of `total` would be shared: the programme's share of it, up to the
    vouchers' balance (the first programme that covers this use), and the rest."""
    for cover in voucher_cover(session, user=user, provider_institution_id=provider_institution_id):
        pays = min(total * cover.coverage_bp // 10000, cover.balance)
        return Split(total, pays, total - pays, cover.programme)
    return Split(total, 0, total, None)


def voucher_choose(
    session: Session, *, user: User, booking_id: int, voucher_id: int, today: date | None = None
) -> BookingVoucher:
    """Pay a booking's voucher share with this voucher: the person's own booking at another
    institution, and their company's approved voucher, unexpired, with a balance. 403 for
    someone else's booking or voucher; 409 for an expired, used-up or unapproved one."""
    today = today or utcnow().date()
    booking = session.get(Booking, booking_id)
    if booking is None or booking.user_id != user.id:
        raise Forbidden(f"booking {booking_id} is not yours")
    if booking.status not in (*ACTIVE_STATUSES, BookingStatus.completed):
        raise Conflict(f"booking {booking_id} is {booking.status.value}: nothing to pay")
    voucher = session.get(Voucher, voucher_id)
    if voucher is None or voucher.institution_id != user.institution_id:
        raise Forbidden(f"voucher {voucher_id} is not your company's")
    if voucher.status != VoucherStatus.approved:
        raise Conflict(f"voucher {voucher_id} is {voucher.status.value}, not approved")
    if voucher.expires_on is not None and voucher.expires_on < today:
        raise Conflict(f"voucher {voucher_id} expired on {voucher.expires_on}")
    if voucher.balance <= 0:
        raise Conflict(f"voucher {voucher_id} is used up")
    instrument = session.get(Instrument, booking.instrument_id)
    assert instrument is not None
    lab = session.get(Lab, instrument.lab_id)
    assert lab is not None
    if lab.institution_id == user.institution_id:
        raise Invalid("vouchers pay for use at other institutions, not at your own")
    chosen = session.get(BookingVoucher, booking_id)
    if chosen is None:
        chosen = BookingVoucher(booking_id=booking_id, voucher_id=voucher_id, chosen_by_id=user.id)
    else:
        chosen.voucher_id = voucher_id
    session.add(chosen)
    session.flush()
    audit_record(
        session,
        actor_id=user.id,
        action="voucher.choose",
        entity="booking",
        entity_id=booking_id,
        after={"voucher": voucher_id},
    )
    emit(
        session,
        "voucher.used",
        lab_id=lab.id,
        data={
            "voucher_id": voucher_id,
            "booking_id": booking_id,
            "institution_id": voucher.institution_id,
        },
    )
    return chosen


def vouchers_usable(session: Session, *, user: User, today: date | None = None) -> list[Voucher]:
    """The person's company's vouchers a booking can choose: approved, unexpired, with a
    balance, the soonest to expire first."""
    if user.institution_id is None:
        return []
    today = today or utcnow().date()
    return [
        v
        for v in session.exec(
            select(Voucher)
            .where(
                Voucher.institution_id == user.institution_id,
                Voucher.status == VoucherStatus.approved,
                col(Voucher.expires_on) >= today,
            )
            .order_by(col(Voucher.expires_on), col(Voucher.id))
        )
        if v.balance > 0
    ]
