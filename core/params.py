"""Query-string helpers shared by the routers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from core.errors import Invalid


def only_params(
    *allowed: str, repeatable: tuple[str, ...] = ()
) -> Callable[[Request], Awaitable[None]]:
    """A dependency that turns an unknown or repeated query parameter into a 422.

    Silently using one of `lab=A&lab=B` would answer a question nobody asked.
    """
    allowed_set = set(allowed)

    # async: it does no I/O, so it runs on the event loop instead of a threadpool hop.
    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed_set)
        if unknown:
            raise Invalid(
                f"unknown query parameter {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed_set)) or 'none'}"
            )
        params = request.query_params
        repeated = sorted(
            k for k in set(params) if k not in repeatable and len(params.getlist(k)) > 1
        )
        if repeated:
            raise Invalid(f"query parameter {', '.join(repeated)} given more than once")

    return check
