"""Payouts through Stripe Connect transfers (a local fake Stripe), and their retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from core.settings import get_settings
from tests.admin.fake_connect import FakeConnect
from tests.admin.helpers import PERIOD, POLICY, build_network
from tests.factories import auth

API = "/api/v1/admin"


@pytest.fixture
def stripe_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnect]:
    fake = FakeConnect()
    monkeypatch.setenv("LABSHARE_STRIPE_API_KEY", "sk_test_labshare")
    monkeypatch.setenv("LABSHARE_STRIPE_API_BASE", fake.base)
    get_settings.cache_clear()
    yield fake
    fake.close()
    get_settings.cache_clear()


def test_transfers_once_and_failed_ones_retry(
    client: TestClient, session: Session, stripe_fake: FakeConnect
) -> None:
    net = build_network(session)
    h = auth(net.admin)
    client.post(f"{API}/policies", json=POLICY, headers=h)
    sid = client.post(f"{API}/settlements", json={"period": PERIOD}, headers=h).json()["id"]
    early = client.post(f"{API}/settlements/{sid}/payouts", headers=h)
    assert early.status_code == 409 and "finalize" in early.json()["detail"]
    assert client.post(f"{API}/settlements/{sid}/finalize", headers=h).status_code == 200
    for inst, account in ((net.a, "acct_1UA"), (net.b, "acct_broken")):
        r = client.put(f"{API}/institutions/{inst.id}/stripe-account",
                       json={"stripe_account_id": account}, headers=h)  # fmt: skip
        assert r.status_code == 204

    paid = {p["institution_id"]: p for p in client.post(f"{API}/settlements/{sid}/payouts",
                                                       headers=h).json()}  # fmt: skip
    assert paid[net.a.id]["status"] == "paid" and paid[net.a.id]["stripe_transfer_id"] == "tr_1"
    assert paid[net.a.id]["amount"] == 28_501
    assert paid[net.b.id]["status"] == "failed" and "acct_broken" in paid[net.b.id]["error"]
    params, key = stripe_fake.calls[0]
    assert params["destination"] == "acct_1UA" and params["currency"] == "cny"
    assert (
        params["transfer_group"] == f"settlement-{sid}"
        and key
        and key.startswith("labshare-payout-")
    )

    # B fixes its account; a retry pays only B.
    client.put(f"{API}/institutions/{net.b.id}/stripe-account",
               json={"stripe_account_id": "acct_2UB"}, headers=h)  # fmt: skip
    calls = len(stripe_fake.calls)
    again = {p["institution_id"]: p for p in client.post(f"{API}/settlements/{sid}/payouts",
                                                        headers=h).json()}  # fmt: skip
    assert again[net.b.id]["status"] == "paid" and again[net.a.id]["stripe_transfer_id"] == "tr_1"
    assert len(stripe_fake.calls) == calls + 1
    log = client.get(f"{API}/audit", params={"action": "payout."}, headers=h).json()["items"]
    assert [e["action"] for e in log] == ["payout.paid", "payout.failed", "payout.paid"]
