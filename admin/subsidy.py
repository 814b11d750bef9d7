"""Subsidy policy (its shape and YAML file) and the pure arithmetic of a settlement: the
reward formula, caps, pro rata scaling and largest-remainder rounding.

Everything here is exact (Fractions) until the last step, which turns amounts into integer
minor units by largest-remainder rounding with fixed tie-breaks, so the same inputs always
give the same numbers to the cent, whatever order the database returned them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import Invalid
from core.settings import CURRENCY_EXPONENTS, get_settings

Weight = Decimal


class Eligibility(BaseModel):
    """Which instruments can earn a reward at all."""

    model_config = ConfigDict(extra="forbid")

    min_asset_value: int = Field(
        default=0, ge=0, description="purchase value at least this (minor units)"
    )
    min_external_hours: Decimal = Field(
        default=Decimal(0), ge=0, description="external service hours in the period"
    )
    exclude_failed_evaluation: bool = Field(
        default=True, description="an instrument whose evaluation failed earns nothing"
    )


class Weights(BaseModel):
    """Points per unit of each part of the score; none may be negative."""

    model_config = ConfigDict(extra="forbid")

    external_hours: Weight = Field(default=Decimal(0), ge=0, description="per external hour")
    external_revenue: Weight = Field(
        default=Decimal(0), ge=0, description="per major currency unit of external revenue"
    )
    outside_users: Weight = Field(default=Decimal(0), ge=0, description="per distinct outsider")
    utilisation: Weight = Field(
        default=Decimal(0), ge=0, description="per percentage point of utilisation"
    )

    @model_validator(mode="after")
    def _some_positive(self) -> Weights:
        if not any(getattr(self, name) > 0 for name in type(self).model_fields):
            raise ValueError("at least one weight must be positive")
        return self


class PolicyDocument(BaseModel):
    """A subsidy policy as written in the API body or the YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(default_factory=lambda: get_settings().currency)
    budget: int = Field(gt=0, le=10**15, description="reward budget, minor units")
    point_value: int = Field(
        default=100, ge=1, le=10**9, description="minor units one score point is worth"
    )
    eligibility: Eligibility = Field(default_factory=Eligibility)
    weights: Weights
    institution_cap: int | None = Field(
        default=None, gt=0, le=10**15, description="most one institution earns, minor units"
    )
    voucher_reimbursement_percent: int = Field(default=100, ge=0, le=100)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        value = value.lower()
        if value not in CURRENCY_EXPONENTS:
            raise ValueError(f"unknown currency {value!r}")
        return value

    def canonical(self) -> dict[str, Any]:
        """A JSON-ready form with decimals as strings: what is stored and hashed."""
        return self.model_dump(mode="json")


def validation_reason(exc: ValidationError) -> str:
    """One line naming each bad field and why."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "policy"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def policy_parse(data: object) -> PolicyDocument:
    """Validate a policy given as plain data; Invalid (422) with the reason otherwise."""
    if not isinstance(data, dict):
        raise Invalid("a policy is a mapping of fields (name, budget, weights, ...)")
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        raise Invalid(f"bad policy: {validation_reason(exc)}")


def policy_load(path: Path) -> PolicyDocument:
    """Read and validate a policy YAML file; Invalid with the reason otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"{path}: {exc.strerror or exc}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Invalid(f"{path}: not YAML: {str(exc).splitlines()[0]}")
    try:
        return policy_parse(data)
    except Invalid as exc:
        raise Invalid(f"{path}: {exc.message}")


# --- the arithmetic -------------------------------------------------------------------------


@dataclass(frozen=True)
class InstrumentFigures:
    """What went into one instrument's share of a settlement."""

    instrument_id: int
    institution_id: int
    asset_value: int
    evaluation_failed: bool
    used_seconds: int
    open_seconds: int
    external_seconds: int
    external_revenue: int
    outside_users: int
    vouchers_redeemed: int

    def as_list(self) -> list[int]:
        return [
            self.instrument_id,
            self.institution_id,
            self.asset_value,
            int(self.evaluation_failed),
            self.used_seconds,
            self.open_seconds,
            self.external_seconds,
            self.external_revenue,
            self.outside_users,
            self.vouchers_redeemed,
        ]


@dataclass
class InstrumentResult:
    figures: InstrumentFigures
    eligible: bool
    reason: str | None
    utilisation: Fraction
    score: Fraction
    claim: Fraction  # minor units before cap and scaling
    reward: int = 0
    voucher_reimbursement: int = 0


@dataclass
class InstitutionResult:
    institution_id: int
    claim: Fraction = Fraction(0)
    capped: bool = False
    reward: int = 0
    voucher_reimbursement: int = 0
    instruments: list[InstrumentResult] = field(default_factory=list)


@dataclass
class Allocation:
    institutions: list[InstitutionResult]
    total_claim: Fraction
    scale: Fraction  # 1 when the budget covers every claim
    total_reward: int
    total_voucher_reimbursement: int


def utilisation_of(figures: InstrumentFigures) -> Fraction:
    """Used time over open time, at most 1; zero for an instrument never open."""
    if figures.open_seconds <= 0:
        return Fraction(0)
    return min(Fraction(figures.used_seconds, figures.open_seconds), Fraction(1))


def _per_unit(policy: PolicyDocument) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """Points per external second, per minor unit, per outsider, per unit of utilisation."""
    w = policy.weights
    major = 10 ** CURRENCY_EXPONENTS[policy.currency]
    return (
        Fraction(w.external_hours) / 3600,
        Fraction(w.external_revenue) / major,
        Fraction(w.outside_users),
        Fraction(w.utilisation) * 100,
    )


def score_of(
    policy: PolicyDocument,
    figures: InstrumentFigures,
    per_unit: tuple[Fraction, Fraction, Fraction, Fraction] | None = None,
) -> Fraction:
    """The weighted sum of the parts, in points."""
    hours, revenue, users, utilisation = per_unit or _per_unit(policy)
    score = Fraction(0)
    # Skipping zero parts keeps the arithmetic cheap for the many quiet instruments.
    if figures.external_seconds and hours:
        score += hours * figures.external_seconds
    if figures.external_revenue and revenue:
        score += revenue * figures.external_revenue
    if figures.outside_users and users:
        score += users * figures.outside_users
    if figures.used_seconds and utilisation:
        score += utilisation * utilisation_of(figures)
    return score


def ineligibility(policy: PolicyDocument, figures: InstrumentFigures) -> str | None:
    """Why the instrument earns nothing, or None when it is eligible."""
    rule = policy.eligibility
    if figures.asset_value < rule.min_asset_value:
        return "asset value below the minimum"
    if Fraction(figures.external_seconds, 3600) < Fraction(rule.min_external_hours):
        return "too few external service hours"
    if rule.exclude_failed_evaluation and figures.evaluation_failed:
        return "evaluation failed"
    return None


def largest_remainder(targets: list[tuple[Any, Fraction]], total: int) -> dict[Any, int]:
    """Split the integer `total` in proportion to exact `targets` (which sum to about `total`).

    Each key gets the floor of its target; the cents left over go one each to the largest
    remainders, ties broken by key, so the result never depends on input order.
    """
    floors = {key: target.numerator // target.denominator for key, target in targets}
    left = total - sum(floors.values())
    if left > 0:
        order = sorted(targets, key=lambda kt: (-(kt[1] - floors[kt[0]]), kt[0]))
        for key, _ in order[:left]:
            floors[key] += 1
    return floors


def allocate(policy: PolicyDocument, figures: list[InstrumentFigures]) -> Allocation:
    """Score, cap per institution, scale to the budget, and round to integer minor units."""
    by_institution: dict[int, InstitutionResult] = {}
    per_unit = _per_unit(policy)
    for f in sorted(figures, key=lambda f: f.instrument_id):
        reason = ineligibility(policy, f)
        score = score_of(policy, f, per_unit) if reason is None else Fraction(0)
        result = InstrumentResult(
            figures=f,
            eligible=reason is None,
            reason=reason,
            utilisation=utilisation_of(f),
            score=score,
            claim=score * policy.point_value,
        )
        result.voucher_reimbursement = (
            f.vouchers_redeemed * policy.voucher_reimbursement_percent // 100
        )
        inst = by_institution.setdefault(f.institution_id, InstitutionResult(f.institution_id))
        inst.instruments.append(result)
        inst.claim += result.claim
        inst.voucher_reimbursement += result.voucher_reimbursement

    capped: dict[int, Fraction] = {}
    for inst in by_institution.values():
        claim = inst.claim
        if policy.institution_cap is not None and claim > policy.institution_cap:
            claim = Fraction(policy.institution_cap)
            inst.capped = True
        capped[inst.institution_id] = claim
    total_capped = sum(capped.values(), Fraction(0))
    scale = (
        min(Fraction(1), Fraction(policy.budget) / total_capped) if total_capped else Fraction(1)
    )
    targets = [(key, value * scale) for key, value in sorted(capped.items())]
    # Scaled: the targets sum to the budget exactly. Unscaled: to the claims, rounded down.
    total = sum((t for _, t in targets), Fraction(0))
    rewards = largest_remainder(targets, total.numerator // total.denominator)

    for inst in by_institution.values():
        inst.reward = rewards[inst.institution_id]
        if inst.claim:
            shares = [
                (r.figures.instrument_id, r.claim * inst.reward / inst.claim)
                for r in inst.instruments
                if r.claim
            ]
            split = largest_remainder(shares, inst.reward)
            for r in inst.instruments:
                r.reward = split.get(r.figures.instrument_id, 0)
    institutions = [by_institution[key] for key in sorted(by_institution)]
    return Allocation(
        institutions=institutions,
        total_claim=sum((i.claim for i in institutions), Fraction(0)),
        scale=scale,
        total_reward=sum(i.reward for i in institutions),
        total_voucher_reimbursement=sum(i.voucher_reimbursement for i in institutions),
    )
