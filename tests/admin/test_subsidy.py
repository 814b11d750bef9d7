"""The pure arithmetic of a settlement: scores, eligibility, caps, pro-rata, rounding."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from admin.subsidy import (
    InstrumentFigures,
    PolicyDocument,
    allocate,
    largest_remainder,
    policy_load,
    policy_parse,
)
from core.errors import Invalid
from core.money import largest_remainder_int

HOUR = 3600


def figures(instrument_id: int, institution_id: int, **kw: int | bool) -> InstrumentFigures:
    base = dict(
        instrument_id=instrument_id,
        institution_id=institution_id,
        asset_value=1_000_000,
        evaluation_failed=False,
        used_seconds=0,
        open_seconds=100 * HOUR,
        external_seconds=0,
        external_revenue=0,
        outside_users=0,
        vouchers_redeemed=0,
    )
    base.update(kw)
    return InstrumentFigures(**base)  # type: ignore[arg-type]


def policy(**kw: object) -> PolicyDocument:
    data: dict[str, object] = {
        "name": "test",
        "currency": "cny",
        "budget": 1_000_000,
        "point_value": 100,
        "weights": {"external_hours": 10},
    }
    data.update(kw)
    return policy_parse(data)


def test_score_is_the_weighted_sum_of_parts() -> None:
    p = policy(
        weights={
            "external_hours": 10,
            "external_revenue": "0.5",
            "outside_users": 20,
            "utilisation": 2,
        }
    )
    f = figures(
        1,
        1,
        external_seconds=3 * HOUR,
        external_revenue=40_000,
        outside_users=2,
        used_seconds=25 * HOUR,
    )
    # 10*3 + 0.5*400 + 20*2 + 2*25 = 30 + 200 + 40 + 50
    alloc = allocate(p, [f])
    assert alloc.institutions[0].instruments[0].score == 320
    assert alloc.total_reward == 32_000  # 320 points at 100 minor units each, within budget
    assert alloc.scale == 1


def test_eligibility_rules() -> None:
    p = policy(eligibility={"min_asset_value": 500_000, "min_external_hours": 2})
    rows = [
        figures(1, 1, external_seconds=5 * HOUR),
        figures(2, 1, external_seconds=5 * HOUR, asset_value=100),
        figures(3, 1, external_seconds=1 * HOUR),
        figures(4, 1, external_seconds=5 * HOUR, evaluation_failed=True, vouchers_redeemed=700),
    ]
    results = {r.figures.instrument_id: r for r in allocate(p, rows).institutions[0].instruments}
    assert results[1].eligible and results[1].reward == 5_000
    assert results[2].reason == "asset value below the minimum" and results[2].reward == 0
    assert results[3].reason == "too few external service hours"
    assert results[4].reason == "evaluation failed" and results[4].reward == 0
    assert results[4].voucher_reimbursement == 700  # vouchers are reimbursed regardless


def test_cap_then_pro_rata_with_exact_budget() -> None:
    p = policy(budget=10_000, institution_cap=6_000)
    rows = [
        figures(1, 1, external_seconds=20 * HOUR),  # claims 20,000 -> capped at 6,000
        figures(2, 2, external_seconds=3 * HOUR),  # 3,000
        figures(3, 3, external_seconds=3 * HOUR),  # 3,000
    ]
    alloc = allocate(p, rows)
    by_inst = {i.institution_id: i for i in alloc.institutions}
    assert by_inst[1].capped
    assert alloc.scale == Fraction(10_000, 12_000)
    assert [by_inst[k].reward for k in (1, 2, 3)] == [5_000, 2_500, 2_500]
    assert alloc.total_reward == 10_000


def test_rounding_hands_out_every_cent_and_is_order_independent() -> None:
    p = policy(budget=100, weights={"external_hours": 1})
    rows = [figures(i, i % 7, external_seconds=HOUR + i * 37) for i in range(1, 30)]
    first = allocate(p, rows)
    assert first.total_reward == 100
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    second = allocate(p, shuffled)

    def flat(a: object) -> list[tuple[int, int]]:
        return [(r.figures.instrument_id, r.reward) for i in a.institutions for r in i.instruments]  # type: ignore[attr-defined]

    assert flat(first) == flat(second)
    for inst in first.institutions:
        assert sum(r.reward for r in inst.instruments) == inst.reward


def test_cap_holds_after_rounding() -> None:
    p = policy(budget=10**9, institution_cap=1_001, weights={"external_hours": 1}, point_value=1)
    rows = [figures(i, 1, external_seconds=HOUR * 400 + i) for i in range(1, 4)]
    alloc = allocate(p, rows)
    assert alloc.institutions[0].reward == 1_001
    assert sum(r.reward for r in alloc.institutions[0].instruments) == 1_001


def test_largest_remainder_ties_go_to_the_smallest_key() -> None:
    third = Fraction(1, 3)
    assert largest_remainder([(2, third), (1, third), (3, third)], 1) == {1: 1, 2: 0, 3: 0}


def test_no_claims_gives_nothing() -> None:
    alloc = allocate(policy(), [figures(1, 1)])
    assert alloc.total_reward == 0 and alloc.scale == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"budget": None}, "budget"),
        ({"weights": {"external_hours": -1}}, "weights.external_hours"),
        ({"weights": {}}, "at least one weight must be positive"),
        ({"currency": "xxx"}, "unknown currency"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_policies_say_why(change: dict[str, object], reason: str) -> None:
    data: dict[str, object] = {"name": "p", "budget": 1, "weights": {"external_hours": 1}}
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(Invalid) as info:
        policy_parse(data)
    assert reason in info.value.message


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "name: 2026 sharing reward\nbudget: 50000000\ncurrency: cny\n"
        "weights:\n  external_hours: 1.5\n  outside_users: 10\n"
        "institution_cap: 10000000\neligibility:\n  min_asset_value: 50000000\n"
    )
    doc = policy_load(path)
    assert doc.weights.external_hours == Decimal("1.5")
    assert doc.canonical()["weights"]["external_hours"] == "1.5"
    path.write_text("name: x\nweights: {external_hours: 1}\n")
    with pytest.raises(Invalid, match="budget: Field required"):
        policy_load(path)
    with pytest.raises(Invalid, match="No such file"):
        policy_load(tmp_path / "missing.yaml")


def test_decimal_weights_are_exact() -> None:
    p = policy(weights={"external_hours": 0.1}, point_value=1, budget=10**9)
    r = allocate(p, [figures(1, 1, external_seconds=30 * HOUR)])
    assert r.total_reward == 3


def test_integer_largest_remainder_matches_the_exact_one() -> None:
    rng = random.Random(7)
    for _ in range(200):
        amounts = [(key, rng.randint(1, 10**6)) for key in rng.sample(range(1000), 20)]
        base, total = sum(a for _, a in amounts), rng.randint(0, 10**5)
        exact = largest_remainder([(k, Fraction(a * total, base)) for k, a in amounts], total)
        assert largest_remainder_int([(k, a * total) for k, a in amounts], base, total) == exact
        assert sum(exact.values()) == total
