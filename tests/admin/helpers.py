"""A small network with a hand-computable October 2026 for the admin tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlmodel import Session

from billing.models import (
    Charge,
    ChargeKind,
    ChargeUnit,
    ClaimStatus,
    Invoice,
    LineDecision,
    Voucher,
    VoucherClaim,
    VoucherClaimLine,
    VoucherNotice,
    VoucherProgramme,
    VoucherRedemption,
    VoucherStatus,
)
from core.models import Role, User
from instruments.models import Institution, InstitutionKind, Instrument, PayerClass
from telemetry.models import UsageSession
from tests.factories import create_institution, create_instrument, create_lab, create_user

PERIOD = "2026-10"


def at(day: int, hour: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def add_usage(
    session: Session, instrument: Instrument, user: User | None, start: datetime, end: datetime
) -> UsageSession:
    row = UsageSession(
        instrument_id=instrument.id,
        user_id=user.id if user else None,
        start_at=start,
        end_at=end,
        last_event_at=end,
    )
    session.add(row)
    session.commit()
    return row


_charges = iter(range(1, 10**6))


def add_charge(
    session: Session,
    instrument: Instrument,
    payer: Institution,
    provider: Institution,
    amount: int,
    *,
    invoice: Invoice | None = None,
    voucher: bool = False,
) -> Charge:
    row = Charge(
        kind=ChargeKind.walk_up,
        source_id=next(_charges),
        period=PERIOD,
        payer_institution_id=payer.id,
        provider_institution_id=provider.id,
        lab_id=instrument.lab_id,
        instrument_id=instrument.id,
        payer_class=PayerClass.internal if payer.id == provider.id else PayerClass.academic,
        unit=ChargeUnit.minute,
        quantity=60,
        unit_amount=amount,
        amount=amount,
        currency="cny",
        voucher_eligible=voucher,
        service_start_at=at(10, 1),
        service_end_at=at(10, 2),
        invoice_id=invoice.id if invoice else None,
    )
    session.add(row)
    session.commit()
    return row


@dataclass
class Network:
    a: Institution
    b: Institution
    c: Institution
    i1: Instrument
    i2: Instrument
    i3: Instrument
    ua: User
    ub: User
    uc: User
    admin: User


def build_network(session: Session, *, billing_closed: bool = True) -> Network:
    """A (two instruments), B (one), C a small company that only uses.

    October 2026, external use: I1 5 h by 2 outsiders; I3 5 h by 2 outsiders (one of them
    1 h clipped at the month's end, Shanghai time). I2 used 2 h internally only.
    External revenue: I1 50,000 (C, voucher 25,000 of it), I3 20,000 (A).
    """
    a = create_institution(session, code="UA", name="University A")
    b = create_institution(session, code="UB", name="University B")
    c = create_institution(
        session,
        code="SC",
        name="Small Co",
        kind=InstitutionKind.small_company,
        is_small_company=True,
    )
    la, lb = (
        create_lab(session, institution=a, code="LA"),
        create_lab(session, institution=b, code="LB"),
    )
    i1 = create_instrument(session, lab=la, code="I1", asset_value=1_000_000)
    i2 = create_instrument(session, lab=la, code="I2", asset_value=10)
    i3 = create_instrument(session, lab=lb, code="I3", asset_value=2_000_000)
    ua, ub, uc = (create_user(session, institution=x) for x in (a, b, c))
    admin = create_user(session, role=Role.network_admin)
    add_usage(session, i1, ub, at(5, 1), at(5, 3))
    add_usage(session, i1, uc, at(6, 1), at(6, 4))
    add_usage(session, i1, ua, at(7, 1), at(7, 2))
    add_usage(session, i2, ua, at(7, 1), at(7, 3))
    add_usage(session, i3, ua, at(8, 1), at(8, 5))
    add_usage(session, i3, ub, at(9, 1), at(9, 3))
    add_usage(session, i3, uc, at(31, 15), at(31, 17))  # 16:00Z is November in Shanghai
    add_usage(session, i3, uc, at(2, 1, month=9), at(2, 9, month=9))  # September: not counted
    invoice = Invoice(
        number="INV-SC-2026-10",
        payer_institution_id=c.id,
        period=PERIOD,
        currency="cny",
        subtotal=50_000,
        voucher_total=25_000,
        total=25_000,
    )
    session.add(invoice)
    session.commit()
    vouchered = add_charge(session, i1, c, a, 50_000, invoice=invoice, voucher=True)
    add_charge(session, i1, a, a, 10_000)
    add_charge(session, i3, a, b, 20_000)
    programme = VoucherProgramme(
        code="V2026",
        name="Vouchers 2026",
        currency="cny",
        budget=10**9,
        coverage_bp=5000,
        company_yearly_cap=10**8,
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
        spent=25_000,
    )
    session.add(programme)
    session.commit()
    voucher = Voucher(
        programme_id=programme.id, institution_id=c.id, applicant_id=uc.id, year=2026,
        requested=25_000, needs="MS", status=VoucherStatus.approved, amount=25_000,
        used=25_000, expires_on=date(2026, 12, 31),
    )  # fmt: skip
    session.add(voucher)
    session.commit()
    session.add(
        VoucherRedemption(
            programme_id=programme.id,
            invoice_id=invoice.id,
            institution_id=c.id,
            voucher_id=voucher.id,
            year=2026,
            eligible_amount=50_000,
            amount=25_000,
        )
    )
    # A wants the voucher's 25,000 back: its claim was approved, and its notice has run.
    notice = VoucherNotice(
        programme_id=programme.id, ends_on=date(2026, 11, 10), claims=1, approved=25_000,
        digest="0" * 64,
    )  # fmt: skip
    session.add(notice)
    session.commit()
    claim = VoucherClaim(
        programme_id=programme.id, provider_institution_id=a.id, period=PERIOD,
        status=ClaimStatus.noticed, lines=1, claimed=25_000, approved=25_000, digest="c" * 64,
        notice_id=notice.id,
    )  # fmt: skip
    session.add(claim)
    session.commit()
    session.add(
        VoucherClaimLine(
            claim_id=claim.id, charge_id=vouchered.id, voucher_id=voucher.id,
            invoice_id=invoice.id, amount=25_000, evidence_digest="e" * 64,
            decision=LineDecision.approved,
        )
    )  # fmt: skip
    session.commit()
    if billing_closed:  # its invoices are final, as a settlement requires
        from billing.models import BillingPeriod, PeriodStatus

        session.add(BillingPeriod(period=PERIOD, status=PeriodStatus.closed, runs=1))
        session.commit()
    return Network(a, b, c, i1, i2, i3, ua, ub, uc, admin)


POLICY = {
    "name": "October rewards",
    "currency": "cny",
    "budget": 7_001,
    "point_value": 100,
    "weights": {"external_hours": 10},
    "institution_cap": 4_000,
    "eligibility": {"min_asset_value": 100_000, "min_external_hours": 1},
}
