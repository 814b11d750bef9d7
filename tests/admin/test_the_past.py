"""The database keeps the past as it was, on SQLite as on PostgreSQL: the audit log, the
ledger, finalized settlements, and closed months' charges and invoices."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from core.audit import audit_record
from core.db import session_scope
from tests.admin.helpers import PERIOD, POLICY, build_network
from tests.factories import auth

API = "/api/v1/admin"


GUARDS = ("never", "finalized", "closed")


def _refused(engine: Engine, statement: str) -> None:
    """The statement is refused by a guard (not for some other reason, a typo say)."""
    with pytest.raises(DBAPIError) as refused, engine.begin() as conn:
        conn.execute(text(statement))
    assert any(word in str(refused.value) for word in GUARDS), (statement, refused.value)


def test_what_is_final_cannot_be_edited(client: TestClient, session, engine: Engine) -> None:
    net = build_network(session)
    h = auth(net.admin)
    client.post(f"{API}/policies", json=POLICY, headers=h)
    sid = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()["id"]
    assert client.post(f"{API}/settlements/{sid}/finalize", headers=h).status_code == 200
    with session_scope() as s:
        audit_record(s, actor_id=None, action="test.thing", entity="test")

    for statement in [
        "UPDATE audit_entry SET action = 'forged'",
        "DELETE FROM audit_entry",
        "DELETE FROM posting",
        "DELETE FROM journal_entry",
        "UPDATE posting SET amount = amount + 1",
        f"UPDATE settlement SET note = 'changed' WHERE id = {sid}",
        f"DELETE FROM settlement WHERE id = {sid}",
        f"UPDATE settlement_institution SET reward = reward + 100 WHERE settlement_id = {sid}",
        f"DELETE FROM settlement_instrument WHERE settlement_id = {sid}",
        # The closed month's charges and the terms of its invoices.
        f"UPDATE charge SET amount = amount + 1 WHERE period = '{PERIOD}'",
        # (a claimed charge is held by its claim line too: the guard refuses the others)
        f"DELETE FROM charge WHERE period = '{PERIOD}' "
        "AND id NOT IN (SELECT charge_id FROM voucher_claim_line)",
        f"UPDATE invoice SET total = total - 1, subtotal = subtotal - 1 WHERE period = '{PERIOD}'",
        f"DELETE FROM invoice WHERE period = '{PERIOD}'",
    ]:
        _refused(engine, statement)
    # What still moves on after a month closes: an invoice's status and payments.
    with engine.begin() as conn:
        moved = conn.execute(
            text(f"UPDATE invoice SET status = 'sent' WHERE period = '{PERIOD}'")
        ).rowcount
    assert moved >= 1


def test_a_closed_month_takes_no_new_charge(session, engine: Engine) -> None:
    build_network(session)
    with engine.begin() as conn:
        row = (
            conn.execute(text(f"SELECT * FROM charge WHERE period = '{PERIOD}' LIMIT 1"))
            .mappings()
            .one()
        )
    columns = [c for c in row if c not in ("id", "line_no", "invoice_id")]
    values = {c: row[c] for c in columns}
    values["source_id"] = 999_999
    listed = ", ".join(columns)
    params = ", ".join(f":{c}" for c in columns)
    with pytest.raises(DBAPIError) as refused, engine.begin() as conn:
        conn.execute(text(f"INSERT INTO charge ({listed}) VALUES ({params})"), values)
    assert "closed" in str(refused.value)
