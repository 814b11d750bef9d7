"""The service desk over HTTP: a lab's services, requests from draft to result, quotes,
the run, files and ratings. Thin: each route parses, calls one service function, answers."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import StreamingResponse

from billing.projects.links import link_of
from billing.projects.models import LinkKind
from billing.services import catalog, documents, files, lists, runs
from billing.services import requests as desk
from billing.services.models import RequestStatus, ServiceRequest
from billing.services.schemas import (
    Estimate,
    QuoteIn,
    RatingIn,
    ReasonIn,
    RunIn,
    ScheduleIn,
    ServiceChange,
    ServiceFilePublic,
    ServiceIn,
    ServicePublic,
    ServiceRequestChange,
    ServiceRequestIn,
    ServiceRequestPublic,
    file_public,
    request_public,
    service_public,
)
from billing.voucher_applications import voucher_split
from core.deps import CurrentUser, SessionDep
from core.params import only_params
from core.routing import UnitOfWorkRoute
from instruments.models import CODE_PATTERN, Lab
from instruments.service import lab_by_code

router = APIRouter(route_class=UnitOfWorkRoute, tags=["services"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
LabCode = Annotated[str, Path(pattern=CODE_PATTERN)]


def _full(session: SessionDep, user: CurrentUser, request: ServiceRequest) -> ServiceRequestPublic:
    link = link_of(session, LinkKind.service_request, request.id or 0)
    return request_public(
        request,
        documents.files_of(session, user=user, request_id=request.id or 0),
        approval=link.status.value if link and request.account_id else None,
    )


# ------------------------------------------------------------------------------ services


@router.get(
    "/services",
    response_model=list[ServicePublic],
    dependencies=[Depends(only_params("lab", "instrument_id"))],
)
def list_services(
    session: SessionDep,
    lab: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    instrument_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> list[ServicePublic]:
    """The services on offer (of one lab, or one instrument)."""
    lab_id = lab_by_code(session, lab).id if lab else None
    return [service_public(s) for s in
            catalog.services_list(session, lab_id=lab_id, instrument_id=instrument_id)]  # fmt: skip


@router.post("/services", response_model=ServicePublic, status_code=201)
def create_service(session: SessionDep, user: CurrentUser, data: ServiceIn) -> ServicePublic:
    """Publish a service on one of your lab's instruments (the lab's managers)."""
    return service_public(
        catalog.service_create(
            session, user=user, instrument_id=data.instrument_id, data=data.changes()
        )
    )


@router.get("/services/{service_id}", response_model=ServicePublic)
def get_service(session: SessionDep, service_id: Id) -> ServicePublic:
    return service_public(catalog.service_get(session, service_id))


@router.patch("/services/{service_id}", response_model=ServicePublic)
def change_service(
    session: SessionDep, user: CurrentUser, service_id: Id, data: ServiceChange
) -> ServicePublic:
    """Change a service, or withdraw it (`active: false`); quotes already given stand."""
    return service_public(
        catalog.service_update(session, user=user, service_id=service_id, data=data.changes())
    )


@router.get(
    "/services/{service_id}/estimate",
    response_model=Estimate,
    dependencies=[Depends(only_params("units"))],
)
def estimate_service(
    session: SessionDep,
    user: CurrentUser,
    service_id: Id,
    units: Annotated[int, Query(ge=1, le=10000)] = 1,
) -> Estimate:
    """What this many units would cost you, and the part your company's voucher would pay."""
    service = catalog.service_get(session, service_id)
    price = catalog.price_of(session, service, user)
    total = price.unit_amount * units
    lab = session.get(Lab, service.lab_id)
    assert lab is not None
    split = voucher_split(session, user=user, provider_institution_id=lab.institution_id,
                          total=total)  # fmt: skip
    return Estimate(payer_class=price.payer_class, unit_amount=price.unit_amount, units=units,
                    total=total, voucher_pays=split.voucher_pays, you_pay=split.company_pays,
                    currency=price.currency)  # fmt: skip


# ------------------------------------------------------------------------------ requests


@router.post("/service-requests", response_model=ServiceRequestPublic, status_code=201)
def create_request(
    session: SessionDep, user: CurrentUser, data: ServiceRequestIn
) -> ServiceRequestPublic:
    """Request a service: a draft (attach files, then submit), or submitted at once."""
    created = desk.request_create(
        session, user=user, service_id=data.service_id, units=data.units,
        answers=data.answers, note=data.note, submit=data.submit, account_id=data.account_id,
    )  # fmt: skip
    return _full(session, user, created)


@router.get(
    "/service-requests",
    response_model=list[ServiceRequestPublic],
    dependencies=[Depends(only_params("lab", "status"))],
)
def list_requests(
    session: SessionDep,
    user: CurrentUser,
    lab: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    status: RequestStatus | None = None,
) -> list[ServiceRequestPublic]:
    """Your requests; with `lab`, that lab's queue (its managers and staff)."""
    if lab:
        rows = lists.requests_of_lab(
            session, user=user, lab_id=lab_by_code(session, lab).id or 0, status=status
        )
    else:
        rows = [r for r in lists.requests_mine(session, user=user)
                if status is None or r.status == status]  # fmt: skip
    return [request_public(r) for r in rows]


@router.get("/service-requests/{request_id}", response_model=ServiceRequestPublic)
def get_request(session: SessionDep, user: CurrentUser, request_id: Id) -> ServiceRequestPublic:
    return _full(session, user, desk.request_get(session, user=user, request_id=request_id))


@router.patch("/service-requests/{request_id}", response_model=ServiceRequestPublic)
def change_request(
    session: SessionDep, user: CurrentUser, request_id: Id, data: ServiceRequestChange
) -> ServiceRequestPublic:
    """Change a draft."""
    changed = desk.request_update(session, user=user, request_id=request_id, units=data.units,
                                  answers=data.answers, note=data.note)  # fmt: skip
    return _full(session, user, changed)


@router.post("/service-requests/{request_id}/submit", response_model=ServiceRequestPublic)
def submit_request(session: SessionDep, user: CurrentUser, request_id: Id) -> ServiceRequestPublic:
    return _full(session, user, desk.request_submit(session, user=user, request_id=request_id))


@router.post("/service-requests/{request_id}/quote", response_model=ServiceRequestPublic)
def quote_request(
    session: SessionDep, user: CurrentUser, request_id: Id, data: QuoteIn
) -> ServiceRequestPublic:
    """The lab's quote (again, to replace it while it is open)."""
    lines = [line.model_dump() for line in data.lines] if data.lines else None
    quoted = desk.request_quote(session, user=user, request_id=request_id, lines=lines,
                                note=data.note, valid_days=data.valid_days)  # fmt: skip
    return _full(session, user, quoted)


@router.post("/service-requests/{request_id}/accept", response_model=ServiceRequestPublic)
def accept_request(session: SessionDep, user: CurrentUser, request_id: Id) -> ServiceRequestPublic:
    return _full(session, user, desk.request_accept(session, user=user, request_id=request_id))


@router.post("/service-requests/{request_id}/cancel", response_model=ServiceRequestPublic)
def cancel_request(
    session: SessionDep, user: CurrentUser, request_id: Id, data: ReasonIn
) -> ServiceRequestPublic:
    """Withdraw, or decline the quote (the requester, before the samples are received)."""
    cancelled = desk.request_cancel(session, user=user, request_id=request_id, reason=data.reason)
    return _full(session, user, cancelled)


@router.post("/service-requests/{request_id}/reject", response_model=ServiceRequestPublic)
def reject_request(
    session: SessionDep, user: CurrentUser, request_id: Id, data: ReasonIn
) -> ServiceRequestPublic:
    rejected = desk.request_reject(session, user=user, request_id=request_id, reason=data.reason)
    return _full(session, user, rejected)


@router.post("/service-requests/{request_id}/receive", response_model=ServiceRequestPublic)
def receive_samples(session: SessionDep, user: CurrentUser, request_id: Id) -> ServiceRequestPublic:
    return _full(session, user, desk.request_receive(session, user=user, request_id=request_id))


@router.post("/service-requests/{request_id}/schedule", response_model=ServiceRequestPublic)
def schedule_run(
    session: SessionDep, user: CurrentUser, request_id: Id, data: ScheduleIn
) -> ServiceRequestPublic:
    """Hold the instrument for the work (409 with alternatives when the time is taken)."""
    scheduled = runs.request_schedule(session, user=user, request_id=request_id,
                                      start=data.start, end=data.end,
                                      operator_email=data.operator_email)  # fmt: skip
    return _full(session, user, scheduled)


@router.post("/service-requests/{request_id}/run", response_model=ServiceRequestPublic)
def record_run(
    session: SessionDep, user: CurrentUser, request_id: Id, data: RunIn
) -> ServiceRequestPublic:
    recorded = runs.request_record_run(session, user=user, request_id=request_id,
                                       started=data.started, ended=data.ended)  # fmt: skip
    return _full(session, user, recorded)


@router.post("/service-requests/{request_id}/complete", response_model=ServiceRequestPublic)
def complete_request(
    session: SessionDep, user: CurrentUser, request_id: Id
) -> ServiceRequestPublic:
    """Done, with results attached (409 without them)."""
    return _full(session, user, runs.request_complete(session, user=user, request_id=request_id))


@router.post("/service-requests/{request_id}/rating", response_model=ServiceRequestPublic)
def rate_request(
    session: SessionDep, user: CurrentUser, request_id: Id, data: RatingIn
) -> ServiceRequestPublic:
    rated = desk.request_rate(session, user=user, request_id=request_id, rating=data.rating,
                              comment=data.comment)  # fmt: skip
    return _full(session, user, rated)


# --------------------------------------------------------------------------------- files


@router.post(
    "/service-requests/{request_id}/files", response_model=ServiceFilePublic, status_code=201
)
def upload_file(
    session: SessionDep,
    user: CurrentUser,
    request_id: Id,
    file: Annotated[UploadFile, File()],
    field: Annotated[str, Form(max_length=64)] = "",
) -> ServiceFilePublic:
    """Attach a file (the requester: for a form's file field) or upload a result (the lab);
    413 past LABSHARE_MAX_FILE_BYTES."""
    record = documents.file_add(session, user=user, request_id=request_id, stream=file.file,
                                name=file.filename, content_type=file.content_type,
                                field=field)  # fmt: skip
    return file_public(record)


@router.get("/service-requests/{request_id}/files/{file_id}", response_class=StreamingResponse)
def download_file(
    session: SessionDep, user: CurrentUser, request_id: Id, file_id: Id
) -> StreamingResponse:
    """The file, to the requester and the lab only."""
    record = documents.file_get(session, user=user, request_id=request_id, file_id=file_id)
    return StreamingResponse(
        files.chunks(record.storage_key),
        media_type=record.content_type,
        headers=download_headers(record.name, record.size),
    )


def download_headers(name: str, size: int) -> dict[str, str]:
    return {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "Content-Length": str(size),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }


@router.delete("/service-requests/{request_id}/files/{file_id}", status_code=204)
def remove_file(session: SessionDep, user: CurrentUser, request_id: Id, file_id: Id) -> None:
    documents.file_remove(session, user=user, request_id=request_id, file_id=file_id)
