"""`labshare settle` and `labshare admin ...` with real files and databases."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlmodel import Session
from typer.testing import CliRunner

from admin.cli import mount
from tests.admin.helpers import PERIOD, build_network

runner = CliRunner()
root = typer.Typer()
mount(root)

POLICY_YAML = """\
name: October rewards
currency: cny
budget: 7001
point_value: 100
institution_cap: 4000
weights:
  external_hours: 10
eligibility:
  min_asset_value: 100000
  min_external_hours: 1
"""


def test_settle_preview_then_finalize(session: Session, tmp_path: Path) -> None:
    build_network(session)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_YAML)
    out = tmp_path / "s.csv"
    preview = runner.invoke(root, ["settle", "--period", PERIOD, "--policy", str(policy),
                                   "--csv", str(out)])  # fmt: skip
    assert preview.exit_code == 0, preview.output
    assert "(preview)" in preview.output and "35.01 CNY" in preview.output
    assert "UA" in out.read_text()
    rerun = runner.invoke(root, ["settle", "--period", PERIOD, "--policy", str(policy)])
    policy_of = lambda out: out.split("; ")[1]  # noqa: E731
    assert policy_of(rerun.output) == policy_of(preview.output)  # the same file, the same policy
    final = runner.invoke(root, ["settle", "--period", PERIOD, "--finalize"])
    assert final.exit_code == 0, final.output
    assert "(finalized)" in final.output
    again = runner.invoke(root, ["settle", "--period", PERIOD, "--finalize"])
    assert again.exit_code == 1 and "already settled" in again.output
    settlement_id = final.output.split()[1]
    paid = runner.invoke(root, ["admin", "pay", "--settlement", settlement_id])
    assert paid.exit_code == 0, paid.output
    assert "285.01 CNY recorded" in paid.output  # A: reward 35.01 + vouchers 250.00


def test_bad_policies_and_periods_exit_1(session: Session, tmp_path: Path) -> None:
    build_network(session)
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY_YAML.replace("external_hours: 10", "external_hours: -10"))
    r = runner.invoke(root, ["settle", "--period", PERIOD, "--policy", str(bad)])
    assert r.exit_code == 1 and "weights.external_hours" in r.output
    bad.write_text(POLICY_YAML.replace("budget: 7001\n", ""))
    r = runner.invoke(root, ["admin", "policy-check", str(bad)])
    assert r.exit_code == 1 and "budget: Field required" in r.output
    r = runner.invoke(root, ["settle", "--period", PERIOD])
    assert r.exit_code == 1 and "no subsidy policy" in r.output
    good = tmp_path / "good.yaml"
    good.write_text(POLICY_YAML)
    r = runner.invoke(root, ["settle", "--period", "2025-02", "--policy", str(good)])
    assert r.exit_code == 1 and "nothing to settle" in r.output
    r = runner.invoke(root, ["settle", "--period", "Oct", "--policy", str(good)])
    assert r.exit_code == 1 and "YYYY-MM" in r.output


def test_kpis_and_assessment_commands(session: Session, tmp_path: Path) -> None:
    import json

    build_network(session)
    r = runner.invoke(root, ["admin", "kpis", "--period", PERIOD])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["external_hours"] == 10.0
    out = tmp_path / "assessment.csv"
    r = runner.invoke(root, ["admin", "assessment", "--period", "2026", "--out", str(out)])
    assert r.exit_code == 0 and "3 instruments" in r.output
    assert out.read_text().splitlines()[0].startswith("instrument_code,instrument_name")
    assert runner.invoke(root, ["admin", "kpis", "--period", "2026-13"]).exit_code == 1
