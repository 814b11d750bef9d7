"""Which domain services exist in this build, so a page shows only what can work."""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache

# A feature is there when its module imports and has the functions the pages call.
FEATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "booking": ("booking.service", ()),
    "availability": ("booking.api", ()),
    "waitlist": ("booking.service", ()),
    "calendars": ("booking.calendars.feeds", ()),
    "telemetry": ("telemetry.service", ()),
    "billing": ("billing.views", ("invoices_list",)),
    "admin": ("admin.settlement", ("settlement_preview", "settlement_finalize")),
    "rates": ("billing.rates", ("rate_cards_list", "rate_card_create")),
    "calendar_import": (
        "booking.calendars.imports",
        ("calendar_import_body", "calendar_source_list", "calendar_source_add_url"),
    ),
}


@cache
def available(feature: str) -> bool:
    """True when the feature's service module imports and offers what the pages need."""
    module_name, functions = FEATURES[feature]
    if importlib.util.find_spec(module_name) is None:
        return False
    module = importlib.import_module(module_name)
    return all(hasattr(module, name) for name in functions)
