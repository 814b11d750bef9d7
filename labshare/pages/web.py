"""What every page shares: templates, language, CSRF, the signed-in person, local time, money."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from sqlmodel import Session, col, select

from booking.attendance import booking_pin
from booking.notifications.service import notification_unread_count
from core.deps import oauth2_scheme, wanted_user
from core.errors import AppError, Forbidden, Invalid
from core.models import Role, User
from core.money import format_money
from core.routing import request_session
from core.settings import CURRENCY_EXPONENTS, get_settings
from instruments.models import Institution
from labshare import i18n

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES)

SESSION_COOKIE = "labshare_session"  # core.deps reads the access token from it
CSRF_COOKIE = "labshare_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


# --- time and money -------------------------------------------------------------------------


def local(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time (aware, or RFC 3339 text as the API writes it) shown in the network's zone."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(get_settings().zone).strftime(fmt)


def local_span(start: datetime | str, end: datetime | str) -> str:
    """A time range in the network's zone: the end's date only when it differs."""
    first, last = local(start), local(end)
    if first[:10] == last[:10]:
        return f"{first}–{last[11:]}"  # noqa: RUF001  (an en dash, as pages write ranges)
    return f"{first} – {last}"  # noqa: RUF001


def local_input(value: datetime | str | None) -> str:
    """A time as a `datetime-local` input value in the network's zone."""
    return local(value, "%Y-%m-%dT%H:%M")


def parse_local(value: str, *, field: str = "time") -> datetime:
    """A `datetime-local` form value (wall clock in the network's zone) as an aware UTC time."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(f"{field}: {value!r} is not a date and time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=get_settings().zone)
    return parsed.astimezone(UTC)


# The most minor units an amount holds: what the database's 64-bit integers hold.
MONEY_LIMIT = 2**63 - 1


def read_decimal(text: str) -> Decimal | None:
    """A number typed in a form; None when it is not one, or not a finite one ("NaN" and
    "Infinity" Decimal reads, and comparing them raised)."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def parse_money(value: str, *, field: str = "amount", currency: str | None = None) -> int:
    """`"300.50"` typed in a form, as minor units of the currency (30050 fen)."""
    exponent = CURRENCY_EXPONENTS[(currency or get_settings().currency).lower()]
    amount = read_decimal(value.replace(",", ""))
    if amount is None:
        raise Invalid(f"{field}: {value!r} is not an amount")
    minor = amount.scaleb(exponent)
    if amount < 0 or minor != minor.to_integral_value():
        raise Invalid(f"{field}: {value!r} is not an amount in {exponent} decimals or fewer")
    if minor > MONEY_LIMIT:
        raise Invalid(f"{field}: {value!r} is more than an amount can be")
    return int(minor)


def money(amount: int | None, currency: str | None = None) -> str:
    if amount is None:
        return ""
    return format_money(amount, currency or get_settings().currency)


def money_input(amount: int, currency: str | None = None) -> str:
    """Minor units as a form's amount field takes them back (parse_money): "1000.00"."""
    exponent = CURRENCY_EXPONENTS[(currency or get_settings().currency).lower()]
    return f"{Decimal(amount).scaleb(-exponent):.{exponent}f}"


@pass_context
def duration(context: Any, minutes: int) -> str:
    """Minutes as people say them, in the page's language: "30 min", "24 h", "1 h 30 min"."""
    _ = context["_"]
    hours, rest = divmod(int(minutes), 60)
    if not hours:
        return str(_("{n} min", n=rest))
    if not rest:
        return str(_("{n} h", n=hours))
    return str(_("{h} h {m} min", h=hours, m=rest))


def weekly_hours(intervals: list[Any]) -> list[tuple[list[int], list[tuple[str, str]]]]:
    """Opening hours as a compact table: runs of weekdays that keep the same hours
    ([0..4] Mon-Fri, 08:00-18:00), in week order."""
    by_day: dict[int, list[tuple[str, str]]] = {}
    for o in sorted(intervals, key=lambda o: (o.weekday, o.opens)):
        closes = (
            "24:00" if o.closes.hour == 23 and o.closes.minute == 59 else o.closes.strftime("%H:%M")
        )
        by_day.setdefault(o.weekday, []).append((o.opens.strftime("%H:%M"), closes))
    runs: list[tuple[list[int], list[tuple[str, str]]]] = []
    for day in range(7):
        spans = by_day.get(day)
        if spans is None:
            continue
        if runs and runs[-1][0][-1] == day - 1 and runs[-1][1] == spans:
            runs[-1][0].append(day)
        else:
            runs.append(([day], spans))
    return runs


templates.env.filters["duration"] = duration
templates.env.globals["weekly_hours"] = weekly_hours
templates.env.filters["local"] = local
templates.env.filters["money"] = money
templates.env.filters["money_input"] = money_input
templates.env.filters["local_input"] = local_input
templates.env.globals["local_span"] = local_span
# The PIN that checks a booking in at its instrument's kiosk (booking.attendance).
templates.env.globals["kiosk_pin"] = booking_pin


# --- loading what a page shows about many rows --------------------------------------------


def preload(session: Session, model: type[Any], ids: Iterable[int | None]) -> dict[int, Any]:
    """The rows with these ids in one query; later `session.get()`s (ours or a service's)
    then find them in the session instead of asking the database once per row. Keep the
    returned dict while they are needed: the session holds its rows only weakly."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.exec(select(model).where(col(model.id).in_(wanted))).all()
    return {row.id: row for row in rows}


# --- CSRF: a random cookie, and a form/header token that is an HMAC of it and the session ---


def _csrf_seed(request: Request) -> str:
    seed = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "csrf_seed", None)
    if not seed:
        seed = secrets.token_urlsafe(24)
        request.state.csrf_seed = seed  # render() sets the cookie
    return seed


def csrf_token(request: Request) -> str:
    """The token forms carry: bound to the browser's CSRF cookie and to its session."""
    message = f"{_csrf_seed(request)}|{request.cookies.get(SESSION_COOKIE, '')}"
    key = get_settings().signing_key().encode()
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def csrf_valid(request: Request, sent: str | None) -> bool:
    if not sent or not request.cookies.get(CSRF_COOKIE):
        return False
    return hmac.compare_digest(sent, csrf_token(request))


class CsrfFailed(Forbidden):
    def __init__(self) -> None:
        super().__init__("the form expired or came from another site: reload the page and retry")


async def check_csrf(request: Request) -> None:
    """Every page POST carries the token, in the form (`csrf_token`) or htmx's header."""
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not csrf_valid(request, sent):
        raise CsrfFailed()


Csrf = Depends(check_csrf)


def cookie_secure(request: Request) -> bool:
    # Secure wherever the page is served over HTTPS (uvicorn --proxy-headers behind a proxy).
    return request.url.scheme == "https"


# --- the signed-in person ------------------------------------------------------------------


class SignInRequired(Exception):
    """Raised by page dependencies; the handler redirects to the sign-in page."""


async def require_user(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    found = wanted_user(request, token, missing=SignInRequired)
    if found is None:
        raise SignInRequired()
    return found  # type: ignore[return-value]


def require_roles(*roles: Role):  # type: ignore[no-untyped-def]
    wanted = tuple(roles)

    async def guard(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
        found = wanted_user(
            request, token, roles=wanted, missing=SignInRequired, wrong_role=_other_role
        )
        if found is None:
            raise SignInRequired()
        return found  # type: ignore[return-value]

    return guard


def _other_role() -> Exception:
    return Forbidden("this page is for another role")


PageUser = Annotated[User, Depends(require_user)]
PageManager = Annotated[User, Depends(require_roles(Role.lab_manager))]
PageAdmin = Annotated[User, Depends(require_roles(Role.network_admin))]


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)


# --- rendering -----------------------------------------------------------------------------

# Messages a redirect may ask the next page to show (`?msg=key`); English is the i18n key.
FLASH = {
    "policy-saved": "The policy is stored: previews can use it now.",
    "claim-submitted": "Claim submitted: the bureau reviews it line by line.",
    "claim-decided": "Decision saved.",
    "notice-published": "Published: the notice is open to anyone until it ends.",
    "voucher-applied": "Applied: the bureau reviews your application.",
    "voucher-approved": "Approved: the company can use its voucher.",
    "voucher-rejected": "Rejected: the company reads your reason.",
    "notifications-read": "All notifications are marked read.",
    "signed-out": "You are signed out.",
    "saved": "Saved.",
    "cancelled": "The booking is cancelled.",
    "moved": "The booking is moved.",
    "booked": "Booked.",
    "waitlisted": "You are on the waitlist; we will tell you if the time frees up.",
    "approved": "Approved.",
    "rejected": "Rejected.",
    "imported": "Calendar imported.",
    "blackout-added": "Blackout added.",
    "finalized": "The settlement is finalized.",
    "feed-rotated": "Your calendar feed has a new link; the old one no longer works.",
    "usage-confirmed": "Confirmed: the session will be billed to that person.",
    "usage-dismissed": "Dismissed: the session will never be billed.",
    "checked-in": "Checked in. Check out here when you are done.",
    "checked-out": "Checked out. Thank you.",
    "reported": "Sent: the lab has been told.",
    "training-requested": "Asked: the lab will offer you a session.",
    "seat-taken": "You have a seat; we will remind you.",
    "seat-given-up": "Seat given up: someone else can take it.",
    "seat-given-back": "The seat is free again; its holder is told.",
    "training-scheduled": "Session scheduled: it holds the instrument's time.",
    "attendance-saved": "Attendance saved: passing grants the qualification.",
    "training-cancelled": "Cancelled: seat holders are told why, and the time is free again.",
    "request-declined": "Declined: the person reads your reason.",
    "incident-closed": "Closed: the reporter reads your note.",
    "incident-blocked": "The instrument is blocked; bookings in the way were displaced.",
    "endpoint-added": "Endpoint added. Copy its signing secret now.",
    "endpoint-saved": "Endpoint saved.",
    "endpoint-removed": "Endpoint removed.",
    "replayed": "Queued: it is sent again at the next pass.",
    "reminders-saved": "Your reminders are saved.",
    "request-saved": "Kept as a draft: send it when it is ready.",
    "request-sent": "Sent: the lab answers with a quote.",
    "file-added": "The file is added.",
}


def nav_for(user: User | None, *, small_company: bool = False) -> list[dict[str, str]]:
    """The header's links for this person."""
    if user is None:
        return []
    items = [
        {"href": "/me/bookings", "label": "My bookings"},
        {"href": "/me/invoices", "label": "Invoices"},
    ]
    if user.role in (Role.researcher, Role.institution_admin):
        items.append({"href": "/me/training", "label": "Training"})
        items.append({"href": "/me/requests", "label": "Requests"})
        items.append({"href": "/me/accounts", "label": "Accounts"})
    if user.role == Role.lab_manager:
        items.append({"href": "/lab", "label": "My lab"})
    if user.role in (Role.lab_manager, Role.institution_admin):
        items.append({"href": "/lab/claims", "label": "Voucher claims"})
    if small_company:
        items.append({"href": "/me/vouchers", "label": "Vouchers"})
    if user.role == Role.network_admin:
        items.append({"href": "/admin", "label": "Network"})
        items.append({"href": "/admin/vouchers", "label": "Vouchers"})
    return items


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _at_small_company(request: Request, user: User | None) -> bool:
    """Whether the header links to vouchers: for people of a small company only."""
    if user is None or user.institution_id is None or is_htmx(request):
        return False
    if user.role not in (Role.researcher, Role.institution_admin):
        return False
    institution = request_session(request).get(Institution, user.institution_id)
    return institution is not None and institution.is_small_company


def _unread(request: Request, user: User | None) -> int:
    """The header's unread count: the signed-in person's unread notifications."""
    if user is None or is_htmx(request):
        return 0  # a fragment has no header to show it in: spare the query
    return notification_unread_count(request_session(request), user=user)


def page_address(request: Request) -> str:
    """Where "this page" is, for the language switch and sign-in to come back to: the
    address itself for a page one can open; for the answer to a form (an error shown where
    the form was posted) the page the form was on, as the browser says it (same site), or
    the catalog. Coming back to a form's address by GET was a 405."""
    if request.method in ("GET", "HEAD"):
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")
    came_from = urlsplit(request.headers.get("referer", ""))
    if came_from.netloc != request.url.netloc:
        return "/"
    return safe_path(came_from.path + (f"?{came_from.query}" if came_from.query else ""))


def safe_path(target: str | None) -> str:
    """`target` if it is a path on this site, else the catalog: never send a person on to
    another site (`//host` and backslashes are other sites to browsers)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    user: User | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a template with the language, CSRF token, user and flash message filled in."""
    lang = i18n.pick_language(request)
    ctx: dict[str, Any] = {
        "lang": lang,
        "html_lang": i18n.HTML_LANG[lang],
        "languages": i18n.LANGUAGES,
        "_": i18n.translator(lang),
        "csrf_token": csrf_token(request),
        "here": page_address(request),
        "user": user,
        "zone": get_settings().timezone,
        "currency": get_settings().currency,
        "msg": request.query_params.get("msg"),
        "flash": FLASH,
        "nav": nav_for(user, small_company=_at_small_company(request, user)),
        "unread": _unread(request, user),
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    seed = getattr(request.state, "csrf_seed", None)
    if seed and not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, seed, httponly=True, samesite="lax", secure=cookie_secure(request)
        )
    return response


def error_page(request: Request, exc: AppError, *, user: User | None = None) -> HTMLResponse:
    """A domain error as a page (or an htmx fragment) with its status."""
    name = "_error_fragment.html" if is_htmx(request) else "error.html"
    return render(
        request,
        name,
        {"message": exc.message, "extra": exc.extra},
        user=user,
        status_code=exc.status_code,
    )


def back_to(url: str, msg: str | None = None) -> Response:
    """Post/redirect/get: back to a page, with a message key to show there."""
    if msg:
        url += ("&" if "?" in url else "?") + f"msg={quote(msg)}"
    return RedirectResponse(url, status_code=303)
