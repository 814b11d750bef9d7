"""The yearly sharing assessment: hours split own / external / training, units served,
outside users, people trained, revenue and voucher revenue; CSV and XLSX from the CLI."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer
from openpyxl import load_workbook
from sqlmodel import Session
from typer.testing import CliRunner

from admin.assessment import assessment
from admin.cli import mount
from instruments.models import Qualification
from tests.admin.helpers import at, build_network

runner = CliRunner()
root = typer.Typer()
mount(root)


def test_the_years_figures_per_instrument_and_institution(session: Session) -> None:
    net = build_network(session)
    # I3 needs a qualification; only B's researcher held one before using it.
    net.i3.qualification_required = True
    session.add(net.i3)
    session.add(Qualification(user_id=net.ub.id, instrument_id=net.i3.id, granted_at=at(1, 0)))
    session.commit()
    lines, totals = assessment(session, year=2026, currency="cny", min_value=0)
    by_code = {line.instrument_code: line for line in lines}
    i1, i3 = by_code["I1"], by_code["I3"]
    # I1: 2 h by B, 3 h by the small company, 1 h by A itself.
    assert (i1.effective_hours, i1.own_hours, i1.external_hours, i1.training_hours) == (
        6.0, 1.0, 5.0, 0.0,
    )  # fmt: skip
    assert (i1.units_served, i1.outside_users, i1.revenue, i1.voucher_revenue) == (
        2, 2, 60_000, 25_000,
    )  # fmt: skip
    # I3 (B's): A's 4 h and the small company's 8 h + 2 h unqualified are training; B's
    # qualified 2 h are its own use.
    assert (i3.effective_hours, i3.training_hours, i3.external_hours, i3.own_hours) == (
        16.0, 14.0, 0.0, 2.0,
    )  # fmt: skip
    assert i3.people_trained == 1
    ua = next(t for t in totals if t.institution_code == "UA")
    assert (ua.instruments, ua.effective_hours, ua.external_hours, ua.voucher_revenue) == (
        2, 8.0, 5.0, 25_000,
    )  # fmt: skip
    # The national threshold (500,000 CNY) leaves these small instruments out.
    assert assessment(session, year=2026, currency="cny") == ([], [])


def test_the_command_writes_csv_and_xlsx(session: Session, tmp_path: Path) -> None:
    build_network(session)
    r = runner.invoke(root, ["reports", "assessment", "--year", "2026", "--out", str(tmp_path),
                             "--min-value", "0"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "3 instruments" in r.output
    rows = list(csv.DictReader(io.StringIO(
        (tmp_path / "assessment-2026-instruments.csv").read_text())))  # fmt: skip
    assert {row["instrument_code"] for row in rows} == {"I1", "I2", "I3"}
    book = load_workbook(tmp_path / "assessment-2026.xlsx")
    assert book.sheetnames == ["Instruments", "Institutions"]
    assert book["Institutions"].max_row == 3  # the header and UA, UB
    bad = runner.invoke(root, ["reports", "assessment", "--year", "26"])
    assert bad.exit_code != 0


def test_a_lab_records_when_an_instrument_entered_service_and_its_class(
    client, session: Session
) -> None:
    from core.models import Role
    from tests.factories import auth, create_instrument, create_lab, create_user
    from tests.labshare.pages_helpers import csrf_of, page_sign_in

    lab = create_lab(session)
    instrument = create_instrument(session, lab=lab)
    manager = create_user(session, role=Role.lab_manager, lab=lab)
    url = f"/api/v1/instruments/{instrument.id}"
    r = client.patch(url, json={"commissioned_on": "2019-06-01", "classification_code": "0301"},
                     headers=auth(manager))  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["commissioned_on"], r.json()["classification_code"]) == ("2019-06-01", "0301")
    bad = client.patch(url, json={"classification_code": "3A"}, headers=auth(manager))
    assert bad.status_code == 422
    # The editor's form takes them too, and says which field is wrong.
    page_sign_in(client, manager.email)
    editor = f"/lab/instruments/{instrument.id}"
    page = client.get(editor).text
    assert 'value="2019-06-01"' in page and 'value="0301"' in page
    form = {"name": instrument.name, "status": "active", "slot_step_minutes": "30",
            "min_minutes": "30", "max_minutes": "480", "lead_minutes": "60",
            "horizon_days": "90", "commissioned_on": "2020-01-15",
            "classification_code": "030102", "csrf_token": csrf_of(client, editor)}  # fmt: skip
    assert client.post(editor, data=form, follow_redirects=False).status_code == 303
    assert client.get(url).json()["classification_code"] == "030102"
    refused = client.post(editor, data={**form, "classification_code": "3"})
    assert refused.status_code == 422 and 'id="classification_code"' in refused.text
