"""The demo network: a realistic city of shared instruments, generated repeatably from a seed.

`seed_network` loads the category taxonomy, institutions modelled on Xi'an, about 130 key
labs plus shared centres, N instruments with rules, opening hours and rates, and users of
every role with fixed demo logins. It refuses a database that already holds data. Rows go
in with bulk statements and one password hash for all accounts, so 12,600 instruments load
in seconds on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import func, text
from sqlmodel import Session, select

from core.models import Role, User
from core.progress import NULL_REPORTER, Reporter
from core.security import hash_password
from core.settings import CURRENCY_EXPONENTS, get_settings
from core.timeutil import utcnow
from instruments.bulk import InstrumentRecord, insert_plain, insert_rows, instruments_insert
from instruments.errors import DatabaseNotEmpty
from instruments.models import (
    Category,
    Institution,
    InstitutionKind,
    Instrument,
    InstrumentStatus,
    Lab,
    PayerClass,
    Qualification,
    RateUnit,
)
from instruments.seed_network import INSTITUTIONS, InstitutionSpec, LabSpec, labs, small_companies
from instruments.seed_taxonomy import LEAVES, TAXONOMY, Leaf

DEFAULT_INSTRUMENTS = 12_600
DEFAULT_SEED = 2018  # the year of Xi'an's science plan
DEMO_PASSWORD = "labshare-demo"
DEMO_LAB = "XJTU-ATC"
DEMO_DOMAIN = "demo.labshare"
# (email, role, who)
DEMO_LOGINS: tuple[tuple[str, str, str], ...] = (
    (f"researcher@{DEMO_DOMAIN}", "researcher", "at NWPU"),
    (f"engineer@{DEMO_DOMAIN}", "researcher", "at a small tech firm (vouchers)"),
    (f"manager@{DEMO_DOMAIN}", "lab_manager", f"manages {DEMO_LAB} (XJTU)"),
    (f"instadmin@{DEMO_DOMAIN}", "institution_admin", "of XJTU"),
    (f"admin@{DEMO_DOMAIN}", "network_admin", "the whole network"),
)

# Booking-rule profiles: (slot step, min, max minutes, lead minutes, horizon days,
# P(approval), P(qualification), P(quota)).
PROFILES: dict[str, tuple[int, int, int, int, int, float, float, float]] = {
    "self": (30, 30, 240, 60, 30, 0.05, 0.25, 0.10),
    "expert": (30, 60, 480, 24 * 60, 60, 0.30, 0.80, 0.35),
    "service": (60, 60, 480, 24 * 60, 60, 0.50, 0.30, 0.10),
    "nmr": (15, 15, 720, 30, 14, 0.10, 0.70, 0.30),
    "flagship": (60, 120, 1440, 48 * 60, 90, 0.90, 0.95, 0.50),
}
_O = time  # opening-hours shorthand
HOUR_PATTERNS: dict[str, list[tuple[int, time, time]]] = {
    "office": [
        (d, _O(h1, m1), _O(h2, m2))
        for d in range(5)
        for h1, m1, h2, m2 in ((8, 30, 12, 0), (14, 0, 17, 30))
    ],
    "day": [(d, _O(8), _O(18)) for d in range(5)],
    "extended": [(d, _O(8), _O(21)) for d in range(5)] + [(5, _O(9), _O(17))],
    "long": [(d, _O(7), _O(23)) for d in range(7)],
}


@dataclass(frozen=True)
class SeedSummary:
    institutions: int
    labs: int
    categories: int
    instruments: int
    users: int
    qualifications: int


def database_is_empty(session: Session) -> bool:
    """True when no catalog rows and no accounts exist."""
    return not any(
        session.exec(select(func.count()).select_from(model)).one()
        for model in (Institution, Lab, Category, Instrument, User)
    )


def seed_network(
    session: Session,
    *,
    instruments: int = DEFAULT_INSTRUMENTS,
    seed: int = DEFAULT_SEED,
    researchers: int = 400,
    reporter: Reporter = NULL_REPORTER,
) -> SeedSummary:
    """Load the demo network into an empty database; the same seed gives the same network."""
    if instruments < 0 or researchers < 0:
        raise ValueError("counts must not be negative")
    if not database_is_empty(session):
        n = session.exec(select(func.count()).select_from(Instrument)).one()
        u = session.exec(select(func.count()).select_from(User)).one()
        raise DatabaseNotEmpty(n, u)
    rng = random.Random(seed)
    now = utcnow()

    reporter.start("categories", len(LEAVES))
    leaf_ids = _insert_taxonomy(session)
    reporter.advance(len(LEAVES))

    firms = small_companies(rng, 160)
    specs = [*INSTITUTIONS, *firms]
    reporter.start("institutions and labs", len(specs))
    inst_rows = [
        {
            "code": s.code,
            "name": s.name,
            "kind": s.kind,
            "is_small_company": s.kind == InstitutionKind.small_company,
            "created_at": now,
        }
        for s in specs
    ]
    inst_ids = dict(
        zip([s.code for s in specs], insert_rows(session, Institution, inst_rows), strict=True)
    )
    lab_specs = labs(rng, specs, hosting_firms=30)
    lab_rows = [
        {
            "code": lab.code,
            "name": lab.name,
            "institution_id": inst_ids[lab.institution],
            "is_key_lab": lab.is_key_lab,
            "no_show_grace_minutes": rng.choice((15, 30, 30, 60)),
            "created_at": now,
        }
        for lab in lab_specs
    ]
    lab_ids = insert_rows(session, Lab, lab_rows)
    reporter.advance(len(specs))

    records = _instruments(rng, instruments, lab_specs, lab_ids, leaf_ids, specs)
    instrument_ids = instruments_insert(session, records, reporter=reporter)

    users = _users(rng, specs, lab_specs, lab_ids, inst_ids, researchers)
    reporter.start("users", len(users))
    password_hash = hash_password(DEMO_PASSWORD)  # once: argon2 is slow on purpose
    user_rows = [
        {
            **u,
            "password_hash": password_hash,
            "is_active": True,
            "created_at": now,
        }
        for u in users
    ]
    user_ids = insert_rows(session, User, user_rows)
    reporter.advance(len(user_rows))

    qualifications = _qualifications(rng, records, instrument_ids, users, user_ids, now)
    insert_plain(session, Qualification, qualifications)
    session.flush()
    # Fresh statistics, so both planners know the catalog's shape from the first search.
    session.execute(text("ANALYZE"))
    return SeedSummary(
        institutions=len(specs),
        labs=len(lab_specs),
        categories=len(LEAVES) + len(TAXONOMY),
        instruments=len(records),
        users=len(user_rows),
        qualifications=len(qualifications),
    )


def _insert_taxonomy(session: Session) -> dict[str, int]:
    group_ids = insert_rows(
        session,
        Category,
        [
            {"code": g.code, "name": g.name, "name_zh": g.name_zh, "parent_id": None}
            for g in TAXONOMY
        ],
    )
    leaves = [
        (leaf, gid) for gid, group in zip(group_ids, TAXONOMY, strict=True) for leaf in group.leaves
    ]
    leaf_rows = [
        {"code": leaf.code, "name": leaf.name, "name_zh": leaf.name_zh, "parent_id": gid}
        for leaf, gid in leaves
    ]
    leaf_ids = insert_rows(session, Category, leaf_rows)
    return {leaf.code: leaf_id for (leaf, _), leaf_id in zip(leaves, leaf_ids, strict=True)}


def _allocate(rng: random.Random, total: int, lab_specs: list[LabSpec]) -> list[int]:
    """How many instruments each lab gets: proportional to weight, remainder at random."""
    weights = [lab.weight * rng.uniform(0.6, 1.4) for lab in lab_specs]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for index in rng.choices(range(len(lab_specs)), weights=weights, k=total - sum(counts)):
        counts[index] += 1
    # The demo manager's lab always has something to manage.
    demo = next(i for i, lab in enumerate(lab_specs) if lab.code == DEMO_LAB)
    while counts[demo] < min(8, total):
        donor = max((i for i in range(len(counts)) if i != demo), key=counts.__getitem__)
        if counts[donor] == 0:
            break
        counts[donor] -= 1
        counts[demo] += 1
    return counts


def _instruments(
    rng: random.Random,
    total: int,
    lab_specs: list[LabSpec],
    lab_ids: list[int],
    leaf_ids: dict[str, int],
    institutions: list[InstitutionSpec],
) -> list[InstrumentRecord]:
    campuses = {s.code: s.campuses for s in institutions}
    currency = get_settings().currency
    minor = 10 ** CURRENCY_EXPONENTS[currency]
    records: list[InstrumentRecord] = []
    for lab, lab_id, count in zip(
        lab_specs, lab_ids, _allocate(rng, total, lab_specs), strict=True
    ):
        leaves = [
            leaf for leaf in LEAVES if not lab.groups or leaf.code.split("-")[0] in lab.groups
        ]
        weights = [leaf.frequency for leaf in leaves]
        campus = rng.choice(campuses[lab.institution])
        building = f"Building {rng.choice('ABCDEFGH')}{rng.randint(1, 9)}"
        pattern = rng.choice(("office", "office", "day", "day", "extended", "long"))
        for n in range(1, count + 1):
            leaf = rng.choices(leaves, weights=weights)[0]
            records.append(
                _instrument(
                    rng, leaf, lab, lab_id, leaf_ids[leaf.code], n, pattern, minor, currency
                )
            )
            records[
                -1
            ].location = f"{campus}, {building}, Room {rng.randint(1, 6)}{rng.randint(1, 40):02d}"
    return records


def _instrument(
    rng: random.Random,
    leaf: Leaf,
    lab: LabSpec,
    lab_id: int,
    category_id: int,
    n: int,
    pattern: str,
    minor: int,
    currency: str,
) -> InstrumentRecord:
    model = rng.choice(leaf.models)
    value_cny = round(model.value_wan * 10_000 * rng.uniform(0.85, 1.15), -2)
    step, shortest, longest, lead, horizon, p_approval, p_qual, p_quota = PROFILES[leaf.profile]
    expensive = model.value_wan >= 500
    roll = rng.random()
    status = (
        InstrumentStatus.maintenance
        if roll < 0.04
        else InstrumentStatus.retired
        if roll < 0.055
        else InstrumentStatus.active
    )
    if leaf.profile in ("nmr", "flagship"):
        pattern = "long"
    # Price follows the machine's value, gently; rounded to 10 CNY (5 for cheap samples).
    mean_value = sum(m.value_wan for m in leaf.models) / len(leaf.models)
    academic = leaf.rate * (model.value_wan / mean_value) ** 0.4 * rng.uniform(0.9, 1.1)
    step_cny = 5 if leaf.rate < 100 else 10
    unit = RateUnit(leaf.unit)

    def price(factor: float) -> int:
        return max(step_cny, round(academic * factor / step_cny) * step_cny) * minor

    company = price(1.6)
    year = rng.randint(2012, 2025)
    return InstrumentRecord(
        code=f"{lab.code}-{n:03d}",
        name=f"{model.model} {leaf.kind}",
        category_id=category_id,
        lab_id=lab_id,
        model=model.model,
        manufacturer=model.manufacturer,
        description=(
            f"{leaf.name} ({leaf.name_zh}): {model.manufacturer} {model.model}, "
            f"commissioned {year}, shared through the network by {lab.name}."
        ),
        asset_value=int(value_cny) * minor,
        commissioned_on=date(year, 1 + n % 12, 1 + n % 28),
        status=status,
        slot_step_minutes=step,
        min_minutes=shortest,
        max_minutes=longest,
        lead_minutes=lead,
        horizon_days=horizon,
        approval_required=expensive or rng.random() < p_approval,
        qualification_required=rng.random() < p_qual,
        weekly_quota_hours=rng.choice((4, 8, 10, 16, 20)) if rng.random() < p_quota else None,
        opening_hours=list(HOUR_PATTERNS[pattern]),
        rates=[
            (PayerClass.internal, unit, price(0.5), currency),
            (PayerClass.academic, unit, price(1.0), currency),
            (PayerClass.company, unit, company, currency),
            (PayerClass.small_company, unit, company, currency),
        ],
    )


_GIVEN = ("Wei", "Fang", "Jing", "Lei", "Min", "Jun", "Yan", "Hao", "Xin", "Li", "Tao", "Ying",
          "Qiang", "Hui", "Peng", "Rui", "Ning", "Bo", "Chen", "Yu")  # fmt: skip
_FAMILY = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu",
           "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Gao", "Lin", "Luo")  # fmt: skip


def _users(
    rng: random.Random,
    institutions: list[InstitutionSpec],
    lab_specs: list[LabSpec],
    lab_ids: list[int],
    inst_ids: dict[str, int],
    researchers: int,
) -> list[dict]:
    def person() -> str:
        return f"{rng.choice(_FAMILY)} {rng.choice(_GIVEN)}"

    lab_id = dict(zip([lab.code for lab in lab_specs], lab_ids, strict=True))
    firm = next(s.code for s in institutions if s.kind == InstitutionKind.small_company)

    def user(email: str, role: Role, name: str, inst: str | None, lab: str | None = None) -> dict:
        return {
            "email": email,
            "role": role,
            "name": name,
            "institution_id": inst_ids[inst] if inst else None,
            "lab_id": lab_id[lab] if lab else None,
            "feed_token": f"{rng.getrandbits(128):032x}",
        }

    users = [
        user(f"researcher@{DEMO_DOMAIN}", Role.researcher, "Demo Researcher", "NWPU"),
        user(f"engineer@{DEMO_DOMAIN}", Role.researcher, "Demo Engineer", firm),
        user(f"manager@{DEMO_DOMAIN}", Role.lab_manager, "Demo Lab Manager", "XJTU", DEMO_LAB),
        user(f"instadmin@{DEMO_DOMAIN}", Role.institution_admin, "Demo Institution Admin", "XJTU"),
        user(f"admin@{DEMO_DOMAIN}", Role.network_admin, "Demo Network Admin", None),
    ]
    for lab in lab_specs:
        if lab.code != DEMO_LAB:
            email = f"manager.{lab.code.lower()}@{DEMO_DOMAIN}"
            users.append(user(email, Role.lab_manager, person(), lab.institution, lab.code))
    for spec in institutions:
        if spec.kind != InstitutionKind.small_company and spec.code != "XJTU":
            email = f"admin.{spec.code.lower()}@{DEMO_DOMAIN}"
            users.append(user(email, Role.institution_admin, person(), spec.code))
    # Researchers: mostly academics, a quarter from small firms (the vouchers' audience).
    academic = [s.code for s in institutions if s.kind != InstitutionKind.small_company]
    firms = [s.code for s in institutions if s.kind == InstitutionKind.small_company]
    for n in range(1, researchers + 1):
        home = rng.choice(firms) if rng.random() < 0.25 else rng.choice(academic)
        users.append(user(f"researcher{n:03d}@{DEMO_DOMAIN}", Role.researcher, person(), home))
    return users


def _qualifications(
    rng: random.Random,
    records: list[InstrumentRecord],
    instrument_ids: list[int],
    users: list[dict],
    user_ids: list[int],
    now: datetime,
) -> list[dict]:
    """The demo researchers hold the demo lab's qualifications; others a few at random."""
    needing = [
        (iid, r) for iid, r in zip(instrument_ids, records, strict=True) if r.qualification_required
    ]
    if not needing:
        return []
    pairs: set[tuple[int, int]] = set()
    demo_people = [
        uid
        for uid, u in zip(user_ids, users, strict=True)
        if u["email"].split("@")[0] in ("researcher", "engineer")
    ]
    for iid, record in needing:
        if record.code.startswith(f"{DEMO_LAB}-"):
            pairs.update((uid, iid) for uid in demo_people)
    researchers = [
        uid for uid, u in zip(user_ids, users, strict=True) if u["role"] == Role.researcher
    ]
    for uid in researchers:
        for iid, _ in rng.sample(needing, k=min(len(needing), rng.randint(0, 4))):
            pairs.add((uid, iid))
    return [
        {"user_id": uid, "instrument_id": iid, "granted_at": now, "granted_by_id": None}
        for uid, iid in sorted(pairs)
    ]
