"""A service request from draft to result (送样检测).

    draft -> submitted -> quoted -> accepted -> received -> in_progress -> completed
    the requester cancels before the samples are received; the lab rejects, with a reason,
    any time before the work starts; the lab may quote again while a quote is open.

Each step is allowed from named statuses to named people (the requester, or the lab: its
managers and its staff); any other is a 409 that says the status. Each step is audited,
told to the other side, and recorded as a `service_request.changed` event. Steps lock the
request's row (PostgreSQL FOR UPDATE; SQLite's writers take turns), so two clicks at once
move it once. The charge comes from the charge run, at the accepted quote's total.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from billing.projects.accounts import account_usable
from billing.projects.links import link_charge, link_of, link_release, on_decided
from billing.projects.models import AccountLink, LinkKind, LinkStatus, ProjectAccount
from billing.services.catalog import price_of, service_get
from billing.services.forms import answers_checked, missing_files
from billing.services.models import (
    FileKind,
    RequestStatus,
    ServiceFile,
    ServiceRequest,
)
from billing.voucher_applications import voucher_split
from booking.access import lab_managers, manages_lab
from booking.notifications.outbox import notify
from core.audit import audit_record
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.events import emit
from core.models import User
from core.timeutil import local_text, utcnow
from instruments.models import Lab

S = RequestStatus


class RequestNotFound(NotFound):
    def __init__(self, request_id: int) -> None:
        super().__init__(f"service request {request_id} not found")


class WrongStatus(Conflict):
    def __init__(self, request: ServiceRequest, action: str) -> None:
        super().__init__(
            f"cannot {action} a request that is {request.status.value.replace('_', ' ')}",
            status=request.status.value,
        )


def is_lab_side(user: User, lab_id: int) -> bool:
    """The lab's managers and staff (and the network's administrators) act for the lab."""
    return manages_lab(user, lab_id) or (user.lab_id == lab_id and user.is_active)


def can_see(session: Session, user: User, request: ServiceRequest) -> bool:
    """The requester, the lab, and the PI of the account it is charged to."""
    if request.requester_id == user.id or is_lab_side(user, request.lab_id):
        return True
    account = session.get(ProjectAccount, request.account_id) if request.account_id else None
    return account is not None and account.owner_id == user.id


def request_get(
    session: Session, *, user: User, request_id: int, for_update: bool = False
) -> ServiceRequest:
    """The request, to its requester and its lab; anyone else gets a 404 (not a 403: a
    request's existence is nobody else's business)."""
    request = session.get(ServiceRequest, request_id, with_for_update=for_update or None)
    if request is None or not can_see(session, user, request):
        raise RequestNotFound(request_id)
    return request


def _as_requester(user: User, request: ServiceRequest, action: str) -> None:
    if request.requester_id != user.id:
        raise Forbidden(f"only the requester may {action}")


def as_lab(user: User, request: ServiceRequest, action: str) -> None:
    if not is_lab_side(user, request.lab_id):
        raise Forbidden(f"only the lab may {action}")


def expect_status(request: ServiceRequest, action: str, *allowed: RequestStatus) -> None:
    if request.status not in allowed:
        raise WrongStatus(request, action)


def moved(
    session: Session,
    request: ServiceRequest,
    *,
    actor: User,
    to: RequestStatus,
    subject: str,
    body: str = "",
    tell_lab: bool = False,
    extra: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Move the request to `to` (or keep it there), then audit, tell and record it."""
    now = now or utcnow()
    before = request.status.value
    request.status = to
    request.updated_at = now
    request.version += 1
    session.add(request)
    session.flush()
    audit_record(session, actor_id=actor.id, action=f"service_request.{to.value}",
                 entity="service_request", entity_id=request.id,
                 before={"status": before}, after={"status": to.value, **(extra or {})})  # fmt: skip
    targets = (
        [m.id for m in lab_managers(session, request.lab_id)] if tell_lab
        else [request.requester_id]
    )  # fmt: skip
    for user_id in targets:
        if user_id is not None and user_id != actor.id:
            notify(session, user_id=user_id, kind=f"service_request_{to.value}",
                   subject=f"SR-{request.id}: {subject}", body=body,
                   data={"service_request_id": request.id})  # fmt: skip
    emit(session, "service_request.changed", lab_id=request.lab_id, now=now,
         data={"service_request_id": request.id, "from": before, "to": to.value,
               "requester_id": request.requester_id})  # fmt: skip


# ---------------------------------------------------------------------------- requester


def request_create(
    session: Session,
    *,
    user: User,
    service_id: int,
    units: int,
    answers: dict[str, Any],
    note: str = "",
    submit: bool = False,
    account_id: int | None = None,
) -> ServiceRequest:
    """A draft (or, with `submit`, a submitted request) with its estimate at the person's
    price, charged to a project account if one is named (one the person may charge today).
    Required answers are checked now; required files when it is submitted."""
    service = service_get(session, service_id)
    if account_id is not None:
        account_usable(session, user=user, account_id=account_id)
    if not 1 <= units <= service.max_units:
        raise Invalid(f"units: between 1 and {service.max_units}")
    kept = answers_checked(service.form, answers)
    price = price_of(session, service, user)
    request = ServiceRequest(
        service_id=service_id,
        lab_id=service.lab_id,
        instrument_id=service.instrument_id,
        requester_id=user.id or 0,
        units=units,
        answers=kept,
        note=note.strip()[:2000],
        payer_class=price.payer_class,
        currency=price.currency,
        estimate_total=price.unit_amount * units,
        account_id=account_id,
    )
    session.add(request)
    session.flush()
    audit_record(session, actor_id=user.id, action="service_request.draft",
                 entity="service_request", entity_id=request.id,
                 after={"service_id": service_id, "units": units})  # fmt: skip
    if submit:
        return request_submit(session, user=user, request_id=request.id or 0)
    return request


def request_update(
    session: Session,
    *,
    user: User,
    request_id: int,
    units: int | None = None,
    answers: dict[str, Any] | None = None,
    note: str | None = None,
) -> ServiceRequest:
    """Change a draft: its units, answers or note; the estimate follows."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    _as_requester(user, request, "change the request")
    expect_status(request, "change", S.draft)
    service = service_get(session, request.service_id, include_withdrawn=True)
    if units is not None:
        if not 1 <= units <= service.max_units:
            raise Invalid(f"units: between 1 and {service.max_units}")
        request.units = units
    if answers is not None:
        request.answers = answers_checked(service.form, answers)
    if note is not None:
        request.note = note.strip()[:2000]
    request.estimate_total = price_of(session, service, user).unit_amount * request.units
    request.updated_at = utcnow()
    request.version += 1
    session.add(request)
    session.flush()
    return request


def attached_fields(session: Session, request_id: int) -> set[str]:
    return set(
        session.exec(
            select(ServiceFile.field).where(
                ServiceFile.request_id == request_id, ServiceFile.kind == FileKind.attachment
            )
        ).all()
    )


def request_submit(session: Session, *, user: User, request_id: int) -> ServiceRequest:
    """Send a draft to the lab: the service must still be offered, every required answer
    and file given. The lab's managers are told."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    _as_requester(user, request, "submit the request")
    expect_status(request, "submit", S.draft)
    service = service_get(session, request.service_id)
    answers_checked(service.form, request.answers)
    missing = missing_files(service.form, attached_fields(session, request_id))
    if missing:
        raise Invalid(f"answers.{missing[0]}: required: attach the file")
    request.submitted_at = utcnow()
    moved(session, request, actor=user, to=S.submitted, tell_lab=True,
           subject=f"{service.name}: {request.units} {service.unit}(s) requested",
           body=f"From {user.name or user.email}; estimate {request.estimate_total / 100:.2f} "
           f"{request.currency.upper()}. Quote it, or reject it with a reason.")  # fmt: skip
    return request


def request_accept(
    session: Session, *, user: User, request_id: int, now: datetime | None = None
) -> ServiceRequest:
    """Accept the lab's quote (before it lapses)."""
    now = now or utcnow()
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    _as_requester(user, request, "accept the quote")
    expect_status(request, "accept", S.quoted)
    if request.quote_valid_until is not None and request.quote_valid_until < now:
        raise Conflict(
            f"the quote lapsed on {local_text(request.quote_valid_until)}; ask the lab for another",
            status=request.status.value,
        )
    if request.account_id is not None:
        held = link_of(session, LinkKind.service_request, request.id or 0)
        if held is not None and held.status == LinkStatus.pending:
            raise Conflict("the quote waits for the PI's approval of the account",
                           status=request.status.value)  # fmt: skip
        link = link_charge(session, user=user, account_id=request.account_id,
                           kind=LinkKind.service_request, source_id=request.id or 0,
                           amount=request.quote_total or 0, now=now,
                           what=f"Service request SR-{request.id}")  # fmt: skip
        if link.status == LinkStatus.pending:
            return request  # accepted when the PI approves (see _account_decided)
    _accepted(session, request, actor=user, now=now)
    return request


def _accepted(session: Session, request: ServiceRequest, *, actor: User, now: datetime) -> None:
    request.accepted_at = now
    moved(session, request, actor=actor, to=S.accepted, tell_lab=True, now=now,
           subject="quote accepted: send the samples",
           body=f"{request.quote_total or 0:,} (minor units, {request.currency.upper()}) "
           "accepted.", extra={"quote_total": request.quote_total})  # fmt: skip


def _account_decided(session: Session, link: AccountLink, pi: User) -> None:
    """The PI approved the account's charge: the quote is accepted; declined: the request
    stays quoted, off the account, for its requester to accept (or not) otherwise."""
    request = session.get(ServiceRequest, link.source_id, with_for_update=True)
    if request is None or request.status != S.quoted:
        return
    if link.status == LinkStatus.approved:
        _accepted(session, request, actor=pi, now=utcnow())
    else:
        request.account_id = None
        request.updated_at = utcnow()
        session.add(request)
        session.flush()


on_decided[LinkKind.service_request] = _account_decided


def request_cancel(
    session: Session, *, user: User, request_id: int, reason: str = ""
) -> ServiceRequest:
    """The requester withdraws (or declines the quote) before the samples are received."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    _as_requester(user, request, "cancel the request")
    expect_status(request, "cancel", S.draft, S.submitted, S.quoted, S.accepted)
    request.reason = reason.strip()[:1000]
    link_release(session, LinkKind.service_request, request.id or 0)
    moved(session, request, actor=user, to=S.cancelled, tell_lab=request.submitted_at is not None,
           subject="cancelled by the requester", body=request.reason,
           extra={"reason": request.reason})  # fmt: skip
    return request


def request_rate(
    session: Session, *, user: User, request_id: int, rating: int, comment: str = ""
) -> ServiceRequest:
    """Rate a completed request, 1 to 5 with a comment (again to change it)."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    _as_requester(user, request, "rate the service")
    expect_status(request, "rate", S.completed)
    if not 1 <= rating <= 5:
        raise Invalid("rating: 1 to 5")
    request.rating = rating
    request.rating_comment = comment.strip()[:2000]
    moved(session, request, actor=user, to=S.completed, tell_lab=True,
           subject=f"rated {rating}/5", body=request.rating_comment,
           extra={"rating": rating})  # fmt: skip
    return request


# ---------------------------------------------------------------------------------- lab


def _lines_checked(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, line in enumerate(lines[:50]):
        description = str(line.get("description", "")).strip()[:200]
        quantity, unit_amount = line.get("quantity"), line.get("unit_amount")
        if not description:
            raise Invalid(f"lines[{i}].description: required")
        for name, value in (("quantity", quantity), ("unit_amount", unit_amount)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
                raise Invalid(f"lines[{i}].{name}: a whole number, 0 or more")
        assert isinstance(quantity, int) and isinstance(unit_amount, int)
        out.append({"description": description, "quantity": quantity,
                    "unit_amount": unit_amount, "amount": quantity * unit_amount})  # fmt: skip
    if not out:
        raise Invalid("lines: a quote has at least one line")
    return out


def request_quote(
    session: Session,
    *,
    user: User,
    request_id: int,
    lines: list[dict[str, Any]] | None = None,
    note: str = "",
    valid_days: int = 30,
    now: datetime | None = None,
) -> ServiceRequest:
    """The lab's quote: its lines (by default the service at the requester's price for the
    units asked), the total, and what the requester's voucher is expected to pay of it."""
    now = now or utcnow()
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    as_lab(user, request, "quote")
    expect_status(request, "quote", S.submitted, S.quoted)
    if not 1 <= valid_days <= 365:
        raise Invalid("valid_days: 1 to 365")
    service = service_get(session, request.service_id, include_withdrawn=True)
    if lines is None:
        lines = [{"description": service.name, "quantity": request.units,
                  "unit_amount": request.estimate_total // max(request.units, 1)}]  # fmt: skip
    request.quote_lines = _lines_checked(lines)
    total = sum(line["amount"] for line in request.quote_lines)
    requester = session.get(User, request.requester_id)
    lab = session.get(Lab, request.lab_id)
    assert requester is not None and lab is not None
    split = voucher_split(session, user=requester, provider_institution_id=lab.institution_id,
                          total=total)  # fmt: skip
    request.quote_total = total
    request.quote_voucher = split.voucher_pays
    request.quote_note = note.strip()[:2000]
    request.quote_valid_until = now + timedelta(days=valid_days)
    pays = (
        f"; your voucher is expected to pay {split.voucher_pays / 100:.2f}"
        if split.voucher_pays
        else ""
    )
    moved(session, request, actor=user, to=S.quoted, now=now,
           subject=f"quoted {total / 100:.2f} {request.currency.upper()}",
           body=f"Valid until {local_text(request.quote_valid_until)}{pays}. Accept it to go on.",
           extra={"quote_total": total, "voucher": split.voucher_pays})  # fmt: skip
    return request


def request_reject(session: Session, *, user: User, request_id: int, reason: str) -> ServiceRequest:
    """The lab turns the request down, with a reason, before the work starts."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    as_lab(user, request, "reject the request")
    expect_status(request, "reject", S.submitted, S.quoted, S.accepted, S.received)
    if not reason.strip():
        raise Invalid("reason: say why, the requester reads it")
    request.reason = reason.strip()[:1000]
    link_release(session, LinkKind.service_request, request.id or 0)
    moved(session, request, actor=user, to=S.rejected, subject="rejected by the lab",
           body=request.reason, extra={"reason": request.reason})  # fmt: skip
    return request


def request_receive(session: Session, *, user: User, request_id: int) -> ServiceRequest:
    """The samples arrived."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    as_lab(user, request, "record the samples received")
    expect_status(request, "receive samples for", S.accepted)
    request.received_at = utcnow()
    moved(session, request, actor=user, to=S.received, subject="samples received")
    return request
