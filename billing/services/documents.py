"""A request's files: the requester attaches what the form asks for (before the lab has the
samples), the lab uploads results (while the work is in progress). Only the requester and
the lab read them; a file is found through its request, never by its storage key."""

from __future__ import annotations

from typing import BinaryIO

from sqlmodel import Session, col, select

from billing.services import files
from billing.services.catalog import service_get
from billing.services.models import FileKind, RequestStatus, ServiceFile, ServiceRequest
from billing.services.requests import WrongStatus, is_lab_side, request_get
from core.audit import audit_record
from core.errors import Invalid, NotFound
from core.models import User

ATTACH_WHILE = (RequestStatus.draft, RequestStatus.submitted, RequestStatus.quoted,
                RequestStatus.accepted)  # fmt: skip
RESULTS_WHILE = (RequestStatus.in_progress,)
MAX_FILES = 50


def file_add(
    session: Session,
    *,
    user: User,
    request_id: int,
    stream: BinaryIO,
    name: str | None,
    content_type: str | None,
    field: str = "",
) -> ServiceFile:
    """Store one file on the request: an attachment from its requester (for one of the
    form's file fields, or none), or a result from its lab. 413 past the size limit."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    if request.requester_id == user.id and not is_lab_side(user, request.lab_id):
        kind = FileKind.attachment
        if request.status not in ATTACH_WHILE:
            raise WrongStatus(request, "attach files to")
        field = field.strip()
        if field:
            form = service_get(session, request.service_id, include_withdrawn=True).form
            if not any(f["name"] == field and f["type"] == "file" for f in form):
                raise Invalid(f"field: the form has no file field {field}")
    else:
        kind = FileKind.result
        field = ""
        if request.status not in RESULTS_WHILE:
            raise WrongStatus(request, "upload results to")
    count = len(
        session.exec(select(ServiceFile.id).where(ServiceFile.request_id == request_id)).all()
    )
    if count >= MAX_FILES:
        raise Invalid(f"file: a request holds at most {MAX_FILES} files")
    safe_name = files.clean_name(name)
    key, size, digest = files.store(stream)
    try:
        record = ServiceFile(
            request_id=request_id, kind=kind, field=field, name=safe_name,
            content_type=files.content_type_of(content_type), size=size, sha256=digest,
            storage_key=key, uploaded_by_id=user.id or 0,
        )  # fmt: skip
        session.add(record)
        session.flush()
        audit_record(session, actor_id=user.id, action=f"service_file.{kind.value}",
                     entity="service_request", entity_id=request_id,
                     after={"file_id": record.id, "name": safe_name, "size": size,
                            "sha256": digest})  # fmt: skip
    except BaseException:
        files.discard(key)
        raise
    return record


def files_of(session: Session, *, user: User, request_id: int) -> list[ServiceFile]:
    request_get(session, user=user, request_id=request_id)
    return list(
        session.exec(
            select(ServiceFile)
            .where(ServiceFile.request_id == request_id)
            .order_by(col(ServiceFile.id))
        ).all()
    )


def file_get(session: Session, *, user: User, request_id: int, file_id: int) -> ServiceFile:
    """The file, to the requester and the lab; 404 to anyone else, or for a file of another
    request, or one whose bytes are gone."""
    request: ServiceRequest = request_get(session, user=user, request_id=request_id)
    record = session.get(ServiceFile, file_id)
    if record is None or record.request_id != request.id or not files.exists(record.storage_key):
        raise NotFound(f"file {file_id} not found")
    return record


def file_remove(session: Session, *, user: User, request_id: int, file_id: int) -> None:
    """Take back a file its uploader added, while it may still be changed."""
    request = request_get(session, user=user, request_id=request_id, for_update=True)
    record = session.get(ServiceFile, file_id)
    if record is None or record.request_id != request_id or record.uploaded_by_id != user.id:
        raise NotFound(f"file {file_id} not found")
    allowed = ATTACH_WHILE if record.kind == FileKind.attachment else RESULTS_WHILE
    if request.status not in allowed:
        raise WrongStatus(request, "remove files from")
    session.delete(record)
    session.flush()
    audit_record(session, actor_id=user.id, action="service_file.remove",
                 entity="service_request", entity_id=request_id,
                 before={"file_id": file_id, "name": record.name})  # fmt: skip
    files.discard(record.storage_key)
