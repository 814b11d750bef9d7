"""Query-string helpers shared by the routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from core.errors import Invalid


def only_params(*allowed: str) -> Callable[[Request], None]:
    """A dependency that turns an unknown query parameter into a 422 rather than ignoring it."""
    allowed_set = set(allowed)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed_set)
        if unknown:
            raise Invalid(
                f"unknown query parameter {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed_set)) or 'none'}"
            )

    return check
