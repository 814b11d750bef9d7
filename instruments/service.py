"""The catalog's operations: search, read, create and edit instruments, publish opening hours."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, String, bindparam, case, delete, func, literal_column, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from core.audit import audit_record, audit_value
from core.db import is_postgres, plain_rows
from core.errors import Conflict
from core.models import Role, User
from core.settings import get_settings
from core.timeutil import utcnow
from instruments.errors import InstrumentNotFound, NotYourLab, UnknownCode
from instruments.models import (
    Category,
    Institution,
    Instrument,
    InstrumentStatus,
    Lab,
    OpeningHours,
    Rate,
)
from instruments.schemas import (
    BookingRules,
    CategoryPublic,
    InstrumentCreate,
    InstrumentPublic,
    InstrumentSummary,
    InstrumentUpdate,
    OpeningInterval,
    RatePublic,
    Ref,
)

RULE_FIELDS = tuple(BookingRules.model_fields)


WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class SearchFilters:
    q: str | None = None
    category: str | None = None
    institution: str | None = None
    lab: str | None = None
    status: InstrumentStatus | None = None
    # Retired instruments cannot be booked: the pages leave them out unless asked for.
    exclude_retired: bool = False


def _ref(obj: Lab | Institution) -> Ref:
    assert obj.id is not None
    return Ref(id=obj.id, code=obj.code, name=obj.name)


def _id_by_code(
    session: Session, table: type[Category] | type[Lab] | type[Institution], code: str, kind: str
) -> int:
    found = session.exec(select(table.id).where(table.code == code)).first()
    if found is None:
        raise UnknownCode(kind, code)
    return found


def category_ids(session: Session, code: str) -> list[int]:
    """The category and, for a group, its leaves (one statement; none: an unknown code)."""
    named = sa_select(col(Category.id)).where(col(Category.code) == code).scalar_subquery()
    found = session.exec(
        select(Category.id)
        .where(or_(col(Category.id) == named, col(Category.parent_id) == named))
        .order_by(col(Category.parent_id).is_not(None), col(Category.id))
    ).all()
    if not found:
        raise UnknownCode("category", code)
    return [c for c in found if c is not None]


def _like_pattern(q: str) -> str:
    """`%q%` with LIKE's own wildcards in `q` escaped, so they are taken literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _contains(session: Session, q: str) -> Callable[[Any], ColumnElement[bool]]:
    """Case-insensitive substring match for the small tables."""
    pattern = _like_pattern(q)
    if is_postgres(session):
        return lambda column: col(column).ilike(pattern, escape="\\")
    # SQLite's LIKE already ignores ASCII case; lower() would only cost time.
    return lambda column: col(column).like(pattern, escape="\\")


def _document() -> ColumnElement[str]:
    """An instrument's own searchable text on PostgreSQL: lower(name, code, model,
    manufacturer), stored by the database in a generated column with a trigram index
    (migration 0012), so `LIKE '%q%'` reads it rather than computing it per row."""
    return literal_column("instrument.search_document", type_=String())


def _text_match(session: Session, q: str) -> ColumnElement[bool]:
    """Instruments whose own text, category (or its group), lab or institution match `q`.

    The small tables are searched first, so the instrument scan is one indexable LIKE
    plus, when some matched, lists of category and lab ids.
    """
    match = _contains(session, q)
    groups = select(Category.id).where(or_(match(Category.name), match(Category.name_zh)))
    category_ids = session.exec(
        select(Category.id).where(
            or_(
                match(Category.name),
                match(Category.name_zh),
                match(Category.code),
                col(Category.parent_id).in_(groups),
            )
        )
    ).all()
    institutions = select(Institution.id).where(match(Institution.name))
    lab_ids = session.exec(
        select(Lab.id).where(or_(match(Lab.name), col(Lab.institution_id).in_(institutions)))
    ).all()
    arms: list[ColumnElement[bool]]
    if is_postgres(session):
        arms = [_document().like(_like_pattern(q.lower()), escape="\\")]
    else:  # four LIKEs beat one over a concatenation that SQLite would build per row
        own = (Instrument.name, Instrument.code, Instrument.model, Instrument.manufacturer)
        arms = [match(column) for column in own]
    if category_ids:
        arms.append(col(Instrument.category_id).in_(category_ids))
    if lab_ids:
        arms.append(col(Instrument.lab_id).in_(lab_ids))
    return or_(*arms)


_SUMMARY_COLUMNS = (
    col(Instrument.id),
    col(Instrument.code),
    col(Instrument.name),
    col(Category.code),
    col(Instrument.model),
    col(Instrument.manufacturer),
    col(Instrument.status),
    col(Lab.id),
    col(Lab.code),
    col(Lab.name),
    col(Institution.id),
    col(Institution.code),
    col(Institution.name),
)


def _where(session: Session, filters: SearchFilters) -> list[ColumnElement[bool]]:
    """The conditions on the instrument table that the filters make."""
    where: list[ColumnElement[bool]] = []
    if filters.q and filters.q.strip():
        where.append(_text_match(session, filters.q.strip()))
    if filters.category:
        where.append(col(Instrument.category_id).in_(category_ids(session, filters.category)))
    if filters.institution:
        institution_id = _id_by_code(session, Institution, filters.institution, "institution")
        where.append(
            col(Instrument.lab_id).in_(select(Lab.id).where(Lab.institution_id == institution_id))
        )
    if filters.lab:
        where.append(col(Instrument.lab_id) == _id_by_code(session, Lab, filters.lab, "lab"))
    if filters.status:
        where.append(col(Instrument.status) == filters.status)
    elif filters.exclude_retired:
        where.append(col(Instrument.status) != InstrumentStatus.retired)
    return where


def _with_summary_columns(query: Any) -> Any:
    """`query` (on the instrument table) reading the catalog's view of each instrument."""
    return (
        query.join(Category, col(Category.id) == Instrument.category_id)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .join(Institution, col(Institution.id) == Lab.institution_id)
    )


def _summary(row: Any) -> InstrumentSummary:
    """A row of _SUMMARY_COLUMNS as the catalog shows it."""
    return InstrumentSummary(
        id=row[0],
        code=row[1],
        name=row[2],
        category=row[3],
        model=row[4],
        manufacturer=row[5],
        status=row[6],
        lab=Ref(id=row[7], code=row[8], name=row[9]),
        institution=Ref(id=row[10], code=row[11], name=row[12]),
    )


def _summaries(session: Session, ids: list[int]) -> list[InstrumentSummary]:
    """The catalog's view of these instruments, in the order of `ids`."""
    if not ids:
        return []
    # Plain columns rather than ORM objects: a page is read-only and this is the hot path.
    query = _with_summary_columns(sa_select(*_SUMMARY_COLUMNS)).where(col(Instrument.id).in_(ids))
    by_id = {row[0]: _summary(row) for row in plain_rows(session, query)}
    return [by_id[i] for i in ids if i in by_id]


def instrument_search(
    session: Session, *, filters: SearchFilters, after: int | None, limit: int
) -> tuple[list[InstrumentSummary], int | None]:
    """One page of the catalog, ordered by id; returns the items and the last id if more follow."""
    # The page and its details in one statement: the joins reach only the page's rows.
    page = _with_summary_columns(sa_select(*_SUMMARY_COLUMNS)).where(*_where(session, filters))
    if after is not None:
        page = page.where(col(Instrument.id) > after)
    rows = plain_rows(session, page.order_by(col(Instrument.id)).limit(limit + 1))
    items = [_summary(row) for row in rows[:limit]]
    more = len(rows) > limit
    return items, (items[-1].id if more and items else None)


def _relevance(q: str) -> ColumnElement[int]:
    """How well an instrument's own text matches `q`: its code exactly, then a name that
    starts with it, a name that holds it, its maker or model; last, instruments found
    through their category, lab or institution."""
    text = q.strip().lower()
    holds = _like_pattern(text)
    starts = holds[1:]  # the same escaped text, anchored at the start
    name = func.lower(col(Instrument.name))
    return case(
        (func.lower(col(Instrument.code)) == text, 0),
        (name.like(starts, escape="\\"), 1),
        (name.like(holds, escape="\\"), 2),
        (func.lower(col(Instrument.manufacturer)).like(holds, escape="\\"), 3),
        (func.lower(col(Instrument.model)).like(holds, escape="\\"), 3),
        else_=4,
    )


def catalog_page(
    session: Session, *, filters: SearchFilters, page: int, size: int
) -> tuple[list[InstrumentSummary], int]:
    """One numbered page of the catalog as people browse it, and how many match in all: the
    best matches for `q` first, else by name."""
    where = _where(session, filters)
    order: list[Any] = [func.lower(col(Instrument.name)), col(Instrument.id)]
    offset = (page - 1) * size
    if not (filters.q and filters.q.strip()):
        # By name: the index in that order (ix_instrument_name_order) reads one page.
        total = session.exec(select(func.count()).select_from(Instrument).where(*where)).one()
        ids = session.exec(
            select(Instrument.id).where(*where).order_by(*order).offset(offset).limit(size)
        ).all()
        return _summaries(session, [i for i in ids if i is not None]), total
    # By relevance, which every match must be ranked for: the page and the count of all
    # matches in that one pass.
    order.insert(0, _relevance(filters.q))
    rows = session.execute(
        sa_select(col(Instrument.id), func.count().over())
        .where(*where)
        .order_by(*order)
        .offset(offset)
        .limit(size)
    ).all()
    if rows:
        total = int(rows[0][1])
    elif page == 1:
        total = 0
    else:  # past the last page: say how many there are
        total = session.exec(select(func.count()).select_from(Instrument).where(*where)).one()
    return _summaries(session, [int(i) for i, _ in rows]), total


def locking_instrument(query: Any, *, skip_locked: bool = False) -> Any:
    """`query` taking the lock instrument_get(for_update=True) takes on the instrument it
    reads (FOR NO KEY UPDATE OF instrument), its row read afresh. `skip_locked`: an
    instrument another transaction holds is left out of the rows instead of waited for."""
    return query.with_for_update(
        of=Instrument, key_share=True, skip_locked=skip_locked
    ).execution_options(populate_existing=True)


_LOCKED = locking_instrument(select(Instrument).where(col(Instrument.id) == bindparam("id")))


def instrument_get(session: Session, instrument_id: int, *, for_update: bool = False) -> Instrument:
    """The instrument, or InstrumentNotFound.

    `for_update` holds the instrument's row until the transaction ends (PostgreSQL's FOR NO
    KEY UPDATE, which booking inserts referencing it do not wait for), so the changes to one
    instrument's calendar happen one transaction at a time and each sees the last one's
    commit. SQLite needs no row lock: its writers already take turns.
    """
    if for_update:
        # A statement built once: Session.get builds and keys its FOR UPDATE query anew.
        instrument = session.exec(_LOCKED, params={"id": instrument_id}).first()  # type: ignore[call-overload]
    else:
        instrument = session.get(Instrument, instrument_id)
    if instrument is None:
        raise InstrumentNotFound(instrument_id)
    return instrument


def instrument_by_code(session: Session, code: str) -> Instrument:
    instrument = session.exec(select(Instrument).where(Instrument.code == code)).first()
    if instrument is None:
        raise InstrumentNotFound(code)
    return instrument


def instrument_public(session: Session, instrument: Instrument) -> InstrumentPublic:
    """The full public view: lab, institution, rules, rates and opening hours."""
    lab = session.get(Lab, instrument.lab_id)
    category = session.get(Category, instrument.category_id)
    assert lab is not None and category is not None and instrument.id is not None
    institution = session.get(Institution, lab.institution_id)
    assert institution is not None
    rates = session.exec(
        select(Rate).where(Rate.instrument_id == instrument.id).order_by(col(Rate.id))
    ).all()
    return InstrumentPublic(
        id=instrument.id,
        code=instrument.code,
        name=instrument.name,
        category=category.code,
        category_name=category.name,
        model=instrument.model,
        manufacturer=instrument.manufacturer,
        status=instrument.status,
        lab=_ref(lab),
        institution=_ref(institution),
        description=instrument.description,
        location=instrument.location,
        asset_value=instrument.asset_value,
        commissioned_on=instrument.commissioned_on,
        classification_code=instrument.classification_code,
        currency=get_settings().currency,
        rules=BookingRules.model_validate(instrument, from_attributes=True),
        rates=[RatePublic.model_validate(r, from_attributes=True) for r in rates],
        opening_hours=opening_hours_get(session, instrument.id),
        updated_at=instrument.updated_at,
    )


def can_manage(user: User, instrument: Instrument) -> bool:
    """Only a manager of the instrument's own lab edits it."""
    return user.role == Role.lab_manager and user.lab_id == instrument.lab_id


def require_manager(user: User, instrument: Instrument) -> None:
    if not can_manage(user, instrument):
        raise NotYourLab()


def _leaf_category_id(session: Session, code: str) -> int:
    category = session.exec(select(Category).where(Category.code == code)).first()
    if category is None:
        raise UnknownCode("category", code)
    if category.parent_id is None:
        raise UnknownCode("leaf category", code)
    assert category.id is not None
    return category.id


def instrument_create(session: Session, *, user: User, data: InstrumentCreate) -> Instrument:
    """Add an instrument to the manager's own lab."""
    lab_id = _id_by_code(session, Lab, data.lab, "lab") if data.lab else user.lab_id
    if user.role != Role.lab_manager or lab_id is None or lab_id != user.lab_id:
        raise NotYourLab()
    if session.exec(select(Instrument.id).where(Instrument.code == data.code)).first():
        raise Conflict(f"an instrument with the code {data.code!r} exists")
    fields = data.model_dump(exclude={"lab", "category", "rules"})
    rules = data.rules.model_dump() if data.rules else {}
    instrument = Instrument(
        **fields, **rules, lab_id=lab_id, category_id=_leaf_category_id(session, data.category)
    )
    session.add(instrument)
    session.flush()
    return instrument


def instrument_update(
    session: Session, *, user: User, instrument_id: int, data: InstrumentUpdate
) -> Instrument:
    """Edit an instrument of the manager's own lab."""
    instrument = instrument_get(session, instrument_id)
    require_manager(user, instrument)
    changes = data.model_dump(exclude_unset=True, exclude={"category", "rules"})
    if data.rules is not None:
        changes.update(data.rules.model_dump())
    if data.category is not None:
        changes["category_id"] = _leaf_category_id(session, data.category)
    before = {name: audit_value(getattr(instrument, name)) for name in changes}
    for name, value in changes.items():
        setattr(instrument, name, value)
    after = {name: audit_value(getattr(instrument, name)) for name in changes}
    changed = {k for k in after if after[k] != before[k]}
    if changed:
        audit_record(
            session,
            actor_id=user.id,
            action="instrument.update",
            entity="instrument",
            entity_id=instrument.id,
            before={k: before[k] for k in sorted(changed)},
            after={k: after[k] for k in sorted(changed)},
        )
    instrument.updated_at = utcnow()
    session.add(instrument)
    session.flush()
    return instrument


def opening_hours_get(session: Session, instrument_id: int) -> list[OpeningInterval]:
    rows = session.exec(
        select(OpeningHours)
        .where(OpeningHours.instrument_id == instrument_id)
        .order_by(col(OpeningHours.weekday), col(OpeningHours.opens))
    ).all()
    return [OpeningInterval(weekday=r.weekday, opens=r.opens, closes=r.closes) for r in rows]


def opening_hours_set(
    session: Session, *, user: User, instrument_id: int, intervals: Sequence[OpeningInterval]
) -> list[OpeningInterval]:
    """Replace the weekly opening hours; intervals of one day must not overlap."""
    instrument = instrument_get(session, instrument_id)
    require_manager(user, instrument)
    ordered = sorted(intervals, key=lambda i: (i.weekday, i.opens))
    for before, after in pairwise(ordered):
        if before.weekday == after.weekday and after.opens < before.closes:
            raise Conflict(f"opening intervals overlap on weekday {before.weekday}")

    def spans(items: Sequence[OpeningInterval]) -> list[str]:
        return [f"{WEEKDAY_NAMES[i.weekday]} {i.opens:%H:%M}-{i.closes:%H:%M}" for i in items]

    audit_record(
        session,
        actor_id=user.id,
        action="opening_hours.set",
        entity="instrument",
        entity_id=instrument_id,
        before={"hours": spans(opening_hours_get(session, instrument_id))},
        after={"hours": spans(ordered)},
    )
    session.execute(delete(OpeningHours).where(col(OpeningHours.instrument_id) == instrument_id))
    session.add_all(
        OpeningHours(instrument_id=instrument_id, weekday=i.weekday, opens=i.opens, closes=i.closes)
        for i in ordered
    )
    instrument.updated_at = utcnow()
    session.flush()
    return list(ordered)


def categories_list(session: Session) -> list[CategoryPublic]:
    """Every category with its parent and how many instruments it holds."""
    counts = dict(
        session.exec(
            select(Instrument.category_id, func.count()).group_by(col(Instrument.category_id))
        ).all()
    )
    categories = session.exec(select(Category).order_by(col(Category.id))).all()
    codes = {c.id: c.code for c in categories}
    return [
        CategoryPublic(
            code=c.code,
            name=c.name,
            name_zh=c.name_zh,
            parent=codes.get(c.parent_id) if c.parent_id else None,
            instruments=counts.get(c.id or 0, 0),
        )
        for c in categories
    ]


class Named(NamedTuple):
    """A code and a name: what a picker lists."""

    code: str
    name: str


def directory(session: Session) -> list[tuple[Named, list[Named]]]:
    """Institutions with their labs, by name: what the catalog's pickers list. Only labs
    that hold an instrument, and institutions with such a lab. (Plain columns: every
    catalog page reads it.)"""
    rows = session.execute(
        sa_select(
            col(Institution.id),
            col(Institution.code),
            col(Institution.name),
            col(Lab.code),
            col(Lab.name),
        )
        .join(Lab, col(Lab.institution_id) == Institution.id)
        .where(col(Lab.id).in_(sa_select(col(Instrument.lab_id)).distinct()))
        .order_by(col(Institution.name), col(Lab.name))
    ).all()
    out: dict[int, tuple[Named, list[Named]]] = {}
    for institution_id, code, name, lab_code, lab_name in rows:
        out.setdefault(institution_id, (Named(code, name), []))[1].append(Named(lab_code, lab_name))
    return list(out.values())


def lab_by_code(session: Session, code: str) -> Lab:
    """The lab with this code, or UnknownCode (404)."""
    lab = session.exec(select(Lab).where(Lab.code == code)).first()
    if lab is None:
        raise UnknownCode("lab", code)
    return lab


def lab_names(session: Session, instrument_ids: Sequence[int]) -> dict[int, str]:
    """Each instrument's lab name: lists of slots and alternatives tell equal names apart."""
    if not instrument_ids:
        return {}
    rows = session.exec(
        select(Instrument.id, Lab.name)
        .join(Lab, col(Lab.id) == Instrument.lab_id)
        .where(col(Instrument.id).in_(list(instrument_ids)))
    ).all()
    return {i: name for i, name in rows if i is not None}


def instrument_names(session: Session, *, lab_id: int) -> dict[int, str]:
    """The names of a lab's instruments by id."""
    rows = session.exec(select(Instrument.id, Instrument.name).where(Instrument.lab_id == lab_id))
    return {i: name for i, name in rows.all() if i is not None}
