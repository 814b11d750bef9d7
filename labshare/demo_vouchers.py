"""The demo's programme at work: voucher applications in every state, so both sides have
something to look at (the small firm's engineer holds an approved voucher; the bureau's
queue has applications waiting), and the city's subsidy policy for settlements."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, select

from billing.models import Voucher, VoucherProgramme
from billing.voucher_applications import (
    application_approve,
    application_reject,
    application_submit,
    vouchers_expire,
)
from core.models import Role, User
from core.timeutil import utcnow
from instruments.credit_code import check_character
from instruments.models import Institution, InstitutionKind
from instruments.seed import DEMO_DOMAIN

NEEDS = (
    "XRD phase analysis of 12 cathode powder samples",
    "SEM-EDS of solder joints on 6 boards",
    "LC-MS screening of 20 water samples for PFAS",
    "NMR of 4 batches of a pharmaceutical intermediate",
    "Particle size distribution of ceramic slurries",
    "Thermal analysis (DSC/TGA) of polymer blends",
)


def _credit_code(n: int) -> str:
    """A well-formed code for the demo's n-th firm (Xi'an's area code, 610100)."""
    first17 = f"91610100{n:09d}"
    return first17 + check_character(first17)


def seed_subsidy_policy(session: Session) -> str:
    """The city's sharing-reward policy, so `labshare settle --period <last month>` and the
    settlements page work on a fresh demo: instruments worth 500,000 or more that served
    outsiders, scored on external hours, revenue and outside users; vouchers reimbursed
    in full."""
    from decimal import Decimal

    from admin.policies import policy_find_or_create
    from admin.subsidy import Eligibility, PolicyDocument, Weights

    document = PolicyDocument(
        name="City sharing rewards",
        budget=2_000_000_00,
        point_value=100,
        eligibility=Eligibility(min_asset_value=500_000_00, min_external_hours=Decimal(1)),
        weights=Weights(
            external_hours=Decimal(10),
            external_revenue=Decimal("0.5"),
            outside_users=Decimal(20),
        ),
        institution_cap=300_000_00,
        voucher_reimbursement_percent=100,
    )
    return policy_find_or_create(session, document=document, actor_id=None).name


def seed_voucher_applications(session: Session, *, programme_code: str) -> dict[str, int]:
    """Applications from the demo's small firms: approved (the engineer's among them),
    waiting, rejected and expired. Nothing when the programme is not open today."""
    programme = session.exec(
        select(VoucherProgramme).where(VoucherProgramme.code == programme_code)
    ).one()
    today = utcnow().date()
    if not programme.starts_on <= today <= programme.ends_on:
        return {}
    admin = session.exec(select(User).where(User.email == f"admin@{DEMO_DOMAIN}")).one()
    engineer = session.exec(select(User).where(User.email == f"engineer@{DEMO_DOMAIN}")).one()
    others = session.exec(
        select(User)
        .join(Institution, col(Institution.id) == User.institution_id)
        .where(
            User.role == Role.researcher,
            Institution.kind == InstitutionKind.small_company,
            col(User.institution_id) != engineer.institution_id,
        )
        .order_by(col(User.institution_id), col(User.id))
    ).all()
    applicants = [engineer]
    seen = {engineer.institution_id}
    for user in others:  # one applicant per firm
        if user.institution_id not in seen:
            seen.add(user.institution_id)
            applicants.append(user)
    # Round amounts in major units, as companies ask (fen: CNY has two decimals).
    asked: tuple[int, ...] = (50_000_00, 30_000_00, 25_000_00, 40_000_00, 20_000_00, 25_000_00)
    # The six stories first; every other firm that uses the network holds a voucher
    # approved earlier in the year, so its invoices show the programme paying.
    plan = ["approved", "pending", "pending", "rejected", "expired", "pending"]
    plan += ["approved"] * max(0, len(applicants) - len(plan))
    asked += (40_000_00,) * max(0, len(applicants) - len(asked))
    counts: dict[str, int] = {}
    for n, (user, outcome) in enumerate(zip(applicants, plan, strict=False)):
        if outcome == "approved" and asked[n] > programme.budget - programme.committed:
            break  # the budget is committed: the rest did not apply this year
        voucher = application_submit(
            session,
            user=user,
            programme_id=programme.id or 0,
            amount=min(asked[n], programme.company_yearly_cap),
            needs=NEEDS[n % len(NEEDS)],
            credit_code=_credit_code(n + 1),
            today=today,
        )
        if outcome in ("approved", "expired"):
            application_approve(session, actor=admin, voucher_id=voucher.id or 0, today=today)
        if outcome == "rejected":
            application_reject(
                session,
                actor=admin,
                voucher_id=voucher.id or 0,
                reason="The tests asked for are routine quality control, not research and "
                "development: the programme does not cover them.",
            )
        if outcome == "expired":
            # A voucher from earlier in the year that lapsed unused.
            expiring = session.get(Voucher, voucher.id)
            assert expiring is not None
            expiring.expires_on = today - timedelta(days=1)
            session.add(expiring)
            session.flush()
            vouchers_expire(session, today=today)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def seed_voucher_claims(session: Session, *, programme_code: str, period: str) -> dict[str, int]:
    """Redemption at work on a closed month: the month is invoiced and closed, the small
    companies' invoices paid, and three providers claim what vouchers paid of their
    services: one claim on a published notice, one reviewed, one waiting for review."""
    from billing.invoices import invoice_close, invoice_mark_paid
    from billing.models import Charge, Invoice
    from billing.voucher_claims import claim_submit, line_decide, notice_publish, uses_of

    programme = session.exec(
        select(VoucherProgramme).where(VoucherProgramme.code == programme_code)
    ).one()
    if int(period[:4]) != programme.starts_on.year:
        return {}
    invoice_close(session, period=period)
    for invoice in session.exec(
        select(Invoice).where(Invoice.period == period, col(Invoice.voucher_total) > 0)
    ).all():
        invoice_mark_paid(session, invoice=invoice, via="bank", ref="demo")
    admin = session.exec(select(User).where(User.email == f"admin@{DEMO_DOMAIN}")).one()
    providers = session.exec(
        select(Charge.provider_institution_id)
        .where(Charge.period == period, col(Charge.voucher_eligible).is_(True))
        .group_by(col(Charge.provider_institution_id))
        .order_by(col(Charge.provider_institution_id))
    ).all()
    # The demo's own institution first, so its manager and admin see a claim on notice.
    home = session.exec(select(User).where(User.email == f"manager@{DEMO_DOMAIN}")).one()
    providers = sorted(providers, key=lambda p: (p != home.institution_id, p))
    claimants = []
    for provider in providers:
        if not uses_of(
            session, provider_id=provider, programme_id=programme.id or 0, period=period
        ):
            continue
        person = session.exec(
            select(User)
            .where(
                User.institution_id == provider,
                col(User.role).in_((Role.lab_manager, Role.institution_admin)),
            )
            .order_by(col(User.id))
        ).first()
        if person is not None:
            claimants.append(person)
        if len(claimants) == 3:
            break
    counts: dict[str, int] = {}
    for n, person in enumerate(claimants):
        claim = claim_submit(session, user=person, programme_id=programme.id or 0, period=period)
        if n < 2:
            line_decide(session, actor=admin, claim_id=claim.id or 0, line_ids=None, approve=True)
        if n == 0:
            # Published last week and run its seven days: the next settlement pays it.
            notice_publish(
                session, actor=admin, programme_id=programme.id or 0, days=7,
                today=utcnow().date() - timedelta(days=8),
            )  # fmt: skip
        state = ("on a notice that has run", "reviewed", "submitted")[n]
        counts[state] = counts.get(state, 0) + 1
    return counts
