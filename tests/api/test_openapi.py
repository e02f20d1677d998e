"""Schemathesis against the OpenAPI document of a real server: no 5xx, and every response matches the schema
(status codes, content types, bodies). Bounded (few examples per operation) so it runs in well under a minute."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration

ROLE_BY_TAG = {"registry": "admin", "audit": "auditor", "ai-register": "admin"}


@pytest.fixture(scope="module")
def api_schema(live: LiveServer, db: Any) -> Any:
    seed.organisations(db)
    seed.resident(db, "r-schema", "h-schema")
    seed.relation(db, "nurse-schema", seed.KOMMUN_A, "hc-s", "r-schema")
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    # The live stream never ends, and provisioning a gateway creates real broker accounts: tested elsewhere.
    # The FHIR and web routes have their own conformance tests (tests/api/test_fhir_openapi.py, test_web*.py).
    core = schema.include(path_regex=r"^/(v1/|health|ready|metrics|\.well-known/)")
    return core.exclude(path="/v1/alerts/stream").exclude(path="/v1/gateways", method="POST")


def _exercise(operation: Any, headers: dict[str, str], checks: list[Any]) -> Any:
    """A bounded Hypothesis run over one operation."""

    @given(case=operation.as_strategy())
    @settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def exercise(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=checks)

    return exercise


def test_openapi_conformance(api_schema: Any, mint: Any) -> None:
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    tokens = {role: mint(f"{role}-schema", seed.KOMMUN_A, role, "hc-s") for role in ("nurse", "admin", "auditor")}
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        tags = set(operation.definition.raw.get("tags", []))
        role = next((ROLE_BY_TAG[t] for t in tags if t in ROLE_BY_TAG), "nurse")

        exercise = _exercise(operation, {"Authorization": f"Bearer {tokens[role]}"}, checks)

        try:
            exercise()
        except Exception as e:
            failures.append(f"{operation.verbose_name}: {str(e)[:600]}")
    assert operations > 40
    assert not failures, "\n\n".join(failures)
