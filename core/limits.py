"""Request bodies have a size limit, enforced before the body is read.

JSON and forms: LABSHARE_MAX_BODY_BYTES (1 MiB); calendars, CSV and file uploads:
LABSHARE_MAX_UPLOAD_BYTES (2 MiB); a service request's files: LABSHARE_MAX_FILE_BYTES
(20 MiB). A declared Content-Length over the limit is refused
at once; a body that grows past it while streaming is cut off there. Either way the
answer is a 413 (in the API's shape, or as a page for people: the app says which), and
nothing behind this middleware (authentication, parsing, the database) has spent anything
on it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import get_settings

UPLOAD_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar", "text/csv",
                "multipart/form-data")  # fmt: skip


class _TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on (it turns other errors
    into a 400) and the app's handler answers it as a 413 in the API's shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")


# A service request's files (a form's attachments, a lab's result): their own, larger limit
# for the whole upload, plus room for the multipart envelope and the form's other fields;
# each file is also held to the limit as it is stored.
FILE_PATHS = ("/api/v1/service-requests/", "/requests/", "/services/")
ENVELOPE = 64 * 1024


def body_limit(headers: Headers, path: str = "") -> int:
    """The limit for a request with these headers (to this path)."""
    settings = get_settings()
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data" and path.startswith(FILE_PATHS):
        return settings.max_file_bytes + ENVELOPE
    return settings.max_upload_bytes if kind in UPLOAD_TYPES else settings.max_body_bytes


# The answer to a body past its limit: given the request's scope and the limit.
Refusal = Callable[[Scope, int], Response]


def json_refusal(_scope: Scope, limit: int) -> Response:
    """The 413 in the API's shape. The rest of the body is not read: the connection closes."""
    return JSONResponse(
        {"detail": f"the request body is larger than {limit:,} bytes", "limit": limit},
        status_code=413,
        headers={"Connection": "close"},
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, refusal: Refusal = json_refusal) -> None:
        self.app = app
        self.refusal = refusal

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        await self.refusal(scope, limit)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = body_limit(headers, scope.get("path", ""))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, limit)
        except BaseExceptionGroup as group:  # anyio task groups wrap what a task raised
            if started or not group.subgroup(_TooLarge):
                raise
            await self._refuse(scope, receive, send, limit)
