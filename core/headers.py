"""Headers every answer carries: what a browser may load, sniff and frame.

The pages load scripts and styles only from labshare itself (vendored, no CDN), so the
Content-Security-Policy allows no inline script. Inline styles stay allowed: FullCalendar
and htmx insert their own. The interactive API docs (`/docs`, `/redoc`) are FastAPI's own
pages, with an inline script, so they get the other headers but not the policy.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        # FullCalendar's arrows are an icon font it embeds as a data: URL.
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Feed addresses carry a secret token: never send a page's address to another site.
    (b"referrer-policy", b"same-origin"),
]
_POLICY = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
_DOCS = ("/docs", "/redoc")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_ALWAYS)
        if not scope["path"].startswith(_DOCS):
            extra.append(_POLICY)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in extra if name not in present
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
