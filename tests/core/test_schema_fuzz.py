"""Every API operation, fuzzed from its own OpenAPI schema (schemathesis) as a researcher,
a lab manager and a network admin: no input is a 5xx, on both databases.

Kept to four examples per operation and role (LABSHARE_FUZZ_EXAMPLES for more): with 177
operations the run takes about half a minute a database. The schema fuzzer's first finds (nulls where values are required, ids past 64 bits, times at
the ends of the calendar) have their own named tests in test_hostile_input.py.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from sqlmodel import Session

from core.models import Role
from instruments.models import Lab
from tests.factories import auth, create_instrument, create_user

EXAMPLES = int(os.environ.get("LABSHARE_FUZZ_EXAMPLES", "4"))
# What may legitimately change the world under the fuzzer's feet, or answer slowly for
# reasons of its own, is left to the named tests: signing out ends the token the fuzzer
# signs in with; the webhook is Stripe's, tested with real signatures.
SKIP = {"POST /api/v1/auth/signout", "POST /api/v1/me/password"}


def _fuzz(operation, role: str, headers: dict[str, str], failures: dict[str, list[str]]) -> None:
    """EXAMPLES schema-valid calls of one operation as one person; 5xx answers noted."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        if response.status_code >= 500:
            failures[f"{operation.label} as {role}"].append(
                f"{response.status_code} {case.path_parameters} {case.query} "
                f"{str(case.body)[:200]} -> {response.text[:200]}"
            )

    call()


@pytest.mark.slow
def test_no_schema_valid_input_is_a_server_error(client: TestClient, session: Session) -> None:
    instrument = create_instrument(session)
    lab = session.get(Lab, instrument.lab_id)
    actors = {
        "researcher": create_user(session),
        "lab_manager": create_user(session, role=Role.lab_manager, lab=lab),
        "network_admin": create_user(session, role=Role.network_admin),
    }
    session.commit()
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: dict[str, list[str]] = defaultdict(list)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in SKIP:
            continue
        for role, user in actors.items():
            _fuzz(operation, role, auth(user), failures)
    assert not failures, "\n".join(f"{k}: {v[0]}" for k, v in failures.items())
