"""Network KPIs for a month: size, hours, external share, utilisation, money, no-shows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from threading import Thread

import sqlalchemy as sa
from sqlmodel import Session, col

from admin import figure_cache
from admin import figures as fig
from billing.models import Invoice, VoucherRedemption
from core.errors import Invalid
from core.kept import warm_in_background
from core.periods import Period, last_month, months_back, months_range
from core.settings import get_settings
from instruments.models import Category, Institution, Lab

HOUR = 3600
# The longest range the trend answers: two years of months.
TREND_MAX_MONTHS = 24


@dataclass(frozen=True)
class InstrumentKpi:
    """One instrument's figures for the period."""

    row: fig.InstrumentRow
    open_seconds: int
    used_seconds: int
    external_seconds: int
    booked_seconds: int
    bookings: int
    no_shows: int
    revenue: int
    external_revenue: int
    trained: int

    @property
    def idle(self) -> bool:
        return self.used_seconds == 0

    @property
    def utilisation(self) -> float:
        return round(self.used_seconds / self.open_seconds, 4) if self.open_seconds else 0.0


def instrument_kpis(session: Session, period: Period, currency: str) -> list[InstrumentKpi]:
    """Every instrument's figures, in id order (a handful of grouped queries)."""
    use = fig.usage(session, period)
    hours = fig.open_seconds(session, period)
    booked = fig.bookings(session, period)
    money = fig.revenue(session, period, currency)
    people = fig.trained(session, period)
    no_use, no_bookings, no_money = fig.Usage(0, 0, 0, 0), fig.Bookings(0, 0, 0), fig.Revenue(0, 0)
    out = []
    for row in fig.instruments_all(session):
        u, b, m = (
            use.get(row.id, no_use),
            booked.get(row.id, no_bookings),
            money.get(row.id, no_money),
        )
        out.append(
            InstrumentKpi(
                row=row,
                open_seconds=hours.get(row.id, 0),
                used_seconds=u.used_seconds,
                external_seconds=u.external_seconds,
                booked_seconds=b.booked_seconds,
                bookings=b.count,
                no_shows=b.no_shows,
                revenue=m.total,
                external_revenue=m.external,
                trained=people.get(row.id, 0),
            )
        )
    return out


def _hours(seconds: int) -> float:
    return round(seconds / HOUR, 2)


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _groups(session: Session, items: list[InstrumentKpi], key: str) -> list[dict[str, object]]:
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for k in items:
        group = getattr(k.row, key)
        acc = sums[group]
        acc[0] += 1
        acc[1] += k.open_seconds
        acc[2] += k.used_seconds
        acc[3] += k.external_seconds
    table = {"category_id": Category, "lab_id": Lab, "institution_id": Institution}[key]
    names = {
        i: (code, name)
        for i, code, name in session.execute(sa.select(table.id, table.code, table.name))  # type: ignore[attr-defined]
    }
    out = []
    for group_id in sorted(sums):
        n, open_s, used_s, ext_s = sums[group_id]
        code, name = names.get(group_id, ("", ""))
        out.append(
            {
                "id": group_id,
                "code": code,
                "name": name,
                "instruments": n,
                "open_hours": _hours(open_s),
                "used_hours": _hours(used_s),
                "external_hours": _hours(ext_s),
                "utilisation": _ratio(used_s, open_s),
            }
        )
    return out


def vouchers_used(session: Session, period: Period, currency: str) -> int:
    """Voucher money redeemed on the period's invoices."""
    total = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(col(VoucherRedemption.amount)), 0))
        .join(Invoice, col(Invoice.id) == VoucherRedemption.invoice_id)
        .where(col(Invoice.period).in_(period.months), col(Invoice.currency) == currency)
    ).scalar_one()
    return int(total)


def network_kpis(session: Session, *, period: str) -> dict[str, object]:
    """The network's KPIs for the month `YYYY-MM` (kept a while: admin.figure_cache), with
    `computed_at`."""
    month = Period.parse(period)
    figures, at = figure_cache.kept(session, "kpis", month, lambda: _kpis(session, month))
    return {**figures, "computed_at": at}


def _kpis(session: Session, month: Period) -> dict[str, object]:
    currency = get_settings().currency
    items = instrument_kpis(session, month, currency)
    total = lambda attr: sum(getattr(k, attr) for k in items)  # noqa: E731
    used, external, open_s = total("used_seconds"), total("external_seconds"), total("open_seconds")
    bookings, no_shows = total("bookings"), total("no_shows")
    idle = [k for k in items if k.idle]
    return {
        "period": month.label,
        "currency": currency,
        "instruments": len(items),
        "idle_instruments": len(idle),
        "idle_share": _ratio(len(idle), len(items)),
        "booked_hours": _hours(total("booked_seconds")),
        "used_hours": _hours(used),
        "open_hours": _hours(open_s),
        "external_hours": _hours(external),
        "external_share": _ratio(external, used),
        "utilisation": _ratio(used, open_s),
        "revenue": total("revenue"),
        "external_revenue": total("external_revenue"),
        "vouchers_used": vouchers_used(session, month, currency),
        "bookings": bookings,
        "no_shows": no_shows,
        "no_show_rate": _ratio(no_shows, bookings),
        "people_trained": total("trained"),
        "by_category": _groups(session, items, "category_id"),
        "by_institution": _groups(session, items, "institution_id"),
        "by_lab": _groups(session, items, "lab_id"),
    }


def network_trend(session: Session, *, first: str, last: str) -> list[dict[str, object]]:
    """Month by month from `first` to `last` (`YYYY-MM`, inclusive): the hours and utilisation
    `network_kpis` gives for each month, from one grouped pass over the range."""
    start, end = Period.parse(first), Period.parse(last)
    if end.start < start.start:
        raise Invalid(f"the range ends ({last}) before it starts ({first})")
    months = months_range(first, last)
    if len(months) > TREND_MAX_MONTHS:
        raise Invalid(f"the range has {len(months)} months; at most {TREND_MAX_MONTHS}")
    figures, _at = figure_cache.months_kept(session, months)
    out: list[dict[str, object]] = []
    for month in months:
        f = figures[month.label]
        out.append(
            {
                "period": month.label,
                "booked_hours": _hours(f.booked_seconds),
                "used_hours": _hours(f.used_seconds),
                "open_hours": _hours(f.open_seconds),
                "external_hours": _hours(f.external_seconds),
                "utilisation": _ratio(f.used_seconds, f.open_seconds),
            }
        )
    return out


def warm_dashboard(open_session: Callable[[], Session], *, trend_months: int = 6) -> Thread:
    """Compute, in a background thread, what the dashboard opens with (last month's KPIs
    and the trend of the `trend_months` months up to it), so its first viewer is served
    from admin.figure_cache too."""

    def work() -> None:
        month = last_month()
        months = months_back(month, trend_months)
        with open_session() as session:
            network_kpis(session, period=month)
            network_trend(session, first=months[0], last=months[-1])

    return warm_in_background("labshare-kpi-warm", "the dashboard's figures", work)
