"""The service desk as pages: a service and its request form (/services/{id}), a person's
requests (/me/requests), one request for either side with the actions its status allows
(/requests/{id}), and the lab's services and queue (/lab/services, /lab/requests)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlmodel import Session, col, select
from starlette.datastructures import FormData, UploadFile

from billing.projects.accounts import accounts_chargeable
from billing.projects.links import link_of
from billing.projects.models import LinkKind, ProjectAccount
from billing.services import catalog, documents, files, lists, runs
from billing.services import requests as desk
from billing.services.api import download_headers
from billing.services.models import OPEN_STATUSES, RequestStatus, Service, ServiceRequest
from billing.voucher_applications import voucher_split
from core.deps import SessionDep
from core.errors import AppError, Invalid
from core.models import User
from core.routing import UnitOfWorkRoute
from instruments.models import Instrument, Lab, PayerClass
from labshare.pages.lab import my_lab, people
from labshare.pages.web import (
    Csrf,
    PageManager,
    PageUser,
    back_to,
    parse_local,
    parse_money,
    render,
)

router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
CLASSES = [c.value for c in PayerClass]


async def form_data(request: Request) -> FormData:
    """The posted form, fields and files, read once (the CSRF check has read it already)."""
    return await request.form()


Posted = Annotated[FormData, Depends(form_data)]


def _text(form: FormData, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _uploads(form: FormData) -> list[tuple[str, UploadFile]]:
    """Each non-empty file of the form, with the field it was posted under."""
    out = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile) and value.filename:
            out.append((key.removeprefix("file_"), value))
    return out


# --------------------------------------------------------------------- request a service


def _service_page(
    request: Request, session: Session, user: User, service: Service, *,
    values: dict[str, str] | None = None, problem: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    instrument = session.get(Instrument, service.instrument_id)
    lab = session.get(Lab, service.lab_id)
    assert instrument is not None and lab is not None
    price = split = None
    try:
        price = catalog.price_of(session, service, user)
        split = voucher_split(session, user=user, provider_institution_id=lab.institution_id,
                              total=price.unit_amount)  # fmt: skip
    except AppError as exc:
        problem = problem or exc.message
    return render(request, "services/service.html", {
        "service": service, "instrument": instrument, "lab": lab, "price": price,
        "split": split, "values": values or {}, "problem": problem,
        "chargeable": accounts_chargeable(session, user=user)}, user=user,
        status_code=status)  # fmt: skip


@router.get("/services/{service_id}", response_class=HTMLResponse)
def service_page(
    request: Request, session: SessionDep, user: PageUser, service_id: Id
) -> HTMLResponse:
    """A service: what it is, what it costs you, and its request form."""
    return _service_page(request, session, user, catalog.service_get(session, service_id))


@router.post("/services/{service_id}/request", dependencies=[Csrf])
def request_service(
    request: Request, session: SessionDep, user: PageUser, service_id: Id, form: Posted
) -> Response:
    """Send the form with its files (or keep it as a draft): one transaction, so a refusal
    leaves nothing behind."""
    service = catalog.service_get(session, service_id)
    answers = {f["name"]: _text(form, f"answer_{f['name']}") for f in service.form
               if f["type"] != "file"}  # fmt: skip
    units_text = _text(form, "units", 10) or "1"
    stored: list[str] = []
    try:
        if not units_text.isdigit():
            raise Invalid("units: a whole number")
        account = _text(form, "account_id", 12)
        if account and not account.isdigit():
            raise Invalid(f"account: {account!r} is not an account id")
        created = desk.request_create(session, user=user, service_id=service_id,
                                      units=int(units_text), answers=answers,
                                      note=_text(form, "note"),
                                      account_id=int(account) if account else None)  # fmt: skip
        for field, upload in _uploads(form):
            record = documents.file_add(session, user=user, request_id=created.id or 0,
                                        stream=upload.file, name=upload.filename,
                                        content_type=upload.content_type, field=field)  # fmt: skip
            stored.append(record.storage_key)
        sent = _text(form, "action", 10) != "draft"
        if sent:
            desk.request_submit(session, user=user, request_id=created.id or 0)
    except AppError as exc:
        session.rollback()
        for key in stored:
            files.discard(key)
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        return _service_page(request, session, user, service, values=values,
                             problem=exc.message, status=exc.status_code)  # fmt: skip
    return back_to(f"/requests/{created.id}", "request-sent" if sent else "request-saved")


# ------------------------------------------------------------------------------ requests


@router.get("/me/requests", response_class=HTMLResponse)
def my_requests(request: Request, session: SessionDep, user: PageUser) -> HTMLResponse:
    """Your service requests, newest first."""
    rows = lists.requests_mine(session, user=user)
    return render(request, "services/requests.html",
                  {"rows": rows, "about": lists.describe(session, rows), "lab_view": False},
                  user=user)  # fmt: skip


@router.get("/lab/requests", response_class=HTMLResponse)
def lab_requests(request: Request, session: SessionDep, user: PageManager) -> HTMLResponse:
    """The lab's queue: open requests oldest first, then the rest."""
    lab = my_lab(session, user)
    rows = lists.requests_of_lab(session, user=user, lab_id=lab.id or 0)
    return render(request, "services/requests.html",
                  {"rows": rows, "about": lists.describe(session, rows), "lab_view": True,
                   "lab": lab, "open": OPEN_STATUSES}, user=user)  # fmt: skip


def _request_page(
    request: Request, session: Session, user: User, request_id: int, *,
    problem: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    sr = desk.request_get(session, user=user, request_id=request_id)
    service, instrument, requester = lists.describe(session, [sr])[sr.id or 0]
    lab_side = desk.is_lab_side(user, sr.lab_id)
    staff = session.exec(select(User).where(User.lab_id == sr.lab_id, col(User.is_active).is_(True))
                         .order_by(col(User.name))).all() if lab_side else []  # fmt: skip
    return render(request, "services/request.html", {
        "sr": sr, "service": service, "instrument": instrument, "requester": requester,
        "files": documents.files_of(session, user=user, request_id=request_id),
        "lab_side": lab_side, "mine": sr.requester_id == user.id, "S": RequestStatus,
        "staff": staff, "who": people(session, {sr.operator_id} if sr.operator_id else set()),
        "account": session.get(ProjectAccount, sr.account_id) if sr.account_id else None,
        "link": link_of(session, LinkKind.service_request, sr.id or 0),
        "problem": problem}, user=user, status_code=status)  # fmt: skip


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request: Request, session: SessionDep, user: PageUser, request_id: Id
) -> HTMLResponse:
    return _request_page(request, session, user, request_id)


def _quote_lines(form: FormData, currency: str) -> list[dict[str, Any]]:
    lines = []
    for n in range(5):
        description = _text(form, f"line{n}_description", 200)
        if not description:
            continue
        quantity = _text(form, f"line{n}_quantity", 10)
        if not quantity.isdigit():
            raise Invalid(f"lines[{n}].quantity: a whole number, 0 or more")
        lines.append({"description": description, "quantity": int(quantity),
                      "unit_amount": parse_money(_text(form, f"line{n}_unit_amount", 20),
                                                 field=f"lines[{n}].unit_amount",
                                                 currency=currency)})  # fmt: skip
    return lines


def _act(session: Session, user: User, sr_id: int, action: str, form: FormData) -> str:
    """Do one step named by the form's button; the flash message key to show after it."""
    kw: dict[str, Any] = {"user": user, "request_id": sr_id}
    if action == "submit":
        desk.request_submit(session, **kw)
    elif action == "accept":
        desk.request_accept(session, **kw)
    elif action == "cancel":
        desk.request_cancel(session, reason=_text(form, "reason", 1000), **kw)
    elif action == "reject":
        desk.request_reject(session, reason=_text(form, "reason", 1000), **kw)
    elif action == "quote":
        sr = desk.request_get(session, **kw)
        desk.request_quote(session, lines=_quote_lines(form, sr.currency) or None,
                           note=_text(form, "note"), **kw)  # fmt: skip
    elif action == "receive":
        desk.request_receive(session, **kw)
    elif action == "schedule":
        runs.request_schedule(session, start=parse_local(_text(form, "start", 40), field="start"),
                              end=parse_local(_text(form, "end", 40), field="end"),
                              operator_email=_text(form, "operator_email", 254), **kw)  # fmt: skip
    elif action == "run":
        runs.request_record_run(session, started=parse_local(_text(form, "started", 40), field="started"),
                                ended=parse_local(_text(form, "ended", 40), field="ended"), **kw)  # fmt: skip
    elif action == "complete":
        runs.request_complete(session, **kw)
    elif action == "rate":
        rating = _text(form, "rating", 2)
        desk.request_rate(session, rating=int(rating) if rating.isdigit() else 0,
                          comment=_text(form, "comment"), **kw)  # fmt: skip
    elif action == "upload":
        uploads = _uploads(form)
        if not uploads:
            raise Invalid("file: choose a file")
        for field, upload in uploads:
            documents.file_add(session, user=user, request_id=sr_id, stream=upload.file,
                               name=upload.filename, content_type=upload.content_type,
                               field=_text(form, "field", 64) or (field if field != "file" else ""))  # fmt: skip
        return "file-added"
    else:
        raise Invalid("action: unknown")
    return "saved"


@router.post("/requests/{request_id}", dependencies=[Csrf])
def request_act(
    request: Request, session: SessionDep, user: PageUser, request_id: Id, form: Posted
) -> Response:
    """One step on the request (the button says which); a refusal shows the page with why."""
    try:
        message = _act(session, user, request_id, _text(form, "action", 20), form)
    except AppError as exc:
        session.rollback()
        return _request_page(request, session, user, request_id, problem=exc.message,
                             status=exc.status_code)  # fmt: skip
    return back_to(f"/requests/{request_id}", message)


@router.get("/requests/{request_id}/files/{file_id}")
def request_file(
    session: SessionDep, user: PageUser, request_id: Id, file_id: Id
) -> StreamingResponse:
    """A request's file, to its requester and its lab only."""
    record = documents.file_get(session, user=user, request_id=request_id, file_id=file_id)
    return StreamingResponse(files.chunks(record.storage_key), media_type=record.content_type,
                             headers=download_headers(record.name, record.size))  # fmt: skip


# ----------------------------------------------------------------------- lab's services


def parse_form_spec(text: str) -> list[dict[str, Any]]:
    """The form as a lab types it, one field per line: `name; label; type; required;
    choice, choice` (all but the name optional)."""
    fields = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(";")]
        if not parts[0]:
            continue
        parts += [""] * (5 - len(parts))
        fields.append({"name": parts[0], "label": parts[1], "type": parts[2] or "text",
                       "required": parts[3].lower() in ("required", "yes", "true", "1", "必填"),
                       "choices": [c.strip() for c in parts[4].split(",") if c.strip()]})  # fmt: skip
    return fields


def form_spec_text(form: list[dict[str, Any]]) -> str:
    return "\n".join(
        "; ".join([f["name"], f["label"], f["type"], "required" if f["required"] else "optional",
                   ", ".join(f["choices"])]).rstrip("; ")
        for f in form
    )  # fmt: skip


def _services_page(
    request: Request, session: Session, user: User, *, problem: str | None = None,
    status: int = 200,
) -> HTMLResponse:  # fmt: skip
    lab = my_lab(session, user)
    services = catalog.services_list(session, lab_id=lab.id, include_withdrawn=True)
    instruments = session.exec(select(Instrument).where(Instrument.lab_id == lab.id)
                               .order_by(col(Instrument.name)).limit(1000)).all()  # fmt: skip
    waiting = session.exec(select(ServiceRequest.id).where(
        ServiceRequest.lab_id == lab.id,
        col(ServiceRequest.status).in_([RequestStatus.submitted, RequestStatus.accepted]))).all()  # fmt: skip
    return render(request, "services/lab_services.html", {
        "lab": lab, "services": services, "instruments": instruments, "classes": CLASSES,
        "spec": form_spec_text, "waiting": len(waiting), "problem": problem}, user=user,
        status_code=status)  # fmt: skip


@router.get("/lab/services", response_class=HTMLResponse)
def lab_services(request: Request, session: SessionDep, user: PageManager) -> HTMLResponse:
    """The lab's services: publish one, change or withdraw it."""
    return _services_page(request, session, user)


def _service_fields(form: FormData) -> dict[str, Any]:
    prices = {c: parse_money(_text(form, f"price_{c}", 20), field=f"prices.{c}")
              for c in CLASSES if _text(form, f"price_{c}", 20)}  # fmt: skip
    turnaround, max_units = _text(form, "turnaround_days", 4), _text(form, "max_units", 6)
    return {
        "name": _text(form, "name", 200), "description": _text(form, "description", 4000),
        "unit": _text(form, "unit", 40) or "sample", "prices": prices,
        "turnaround_days": int(turnaround) if turnaround.isdigit() else 10,
        "max_units": int(max_units) if max_units.isdigit() and int(max_units) >= 1 else 500,
        "sample_types": _text(form, "sample_types", 500),
        "form": parse_form_spec(_text(form, "form_spec", 6000)),
        "active": _text(form, "active", 5) != "no",
    }  # fmt: skip


@router.post("/lab/services", dependencies=[Csrf])
def lab_service_save(
    request: Request, session: SessionDep, user: PageManager, form: Posted
) -> Response:
    """Publish a new service, or save changes to one (`service_id`)."""
    try:
        data = _service_fields(form)
        service_id = _text(form, "service_id", 12)
        if service_id.isdigit():
            catalog.service_update(session, user=user, service_id=int(service_id), data=data)
        else:
            instrument_id = _text(form, "instrument_id", 12)
            catalog.service_create(session, user=user,
                                   instrument_id=int(instrument_id) if instrument_id.isdigit() else 0,
                                   data=data)  # fmt: skip
    except AppError as exc:
        session.rollback()
        return _services_page(request, session, user, problem=exc.message, status=exc.status_code)
    return back_to("/lab/services", "saved")
