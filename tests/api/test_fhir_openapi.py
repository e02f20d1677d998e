"""Schemathesis over the FHIR operations: no 5xx, and every answer matches the OpenAPI document (status codes,
application/fhir+json, OperationOutcome for errors). The /v1 routes, the page's statistics route among them,
are in test_openapi.py."""

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


@pytest.fixture(scope="module")
def fhir_schema(live: LiveServer, db: Any) -> Any:
    seed.organisations(db)
    seed.resident(db, "r-fhir-schema", "h-fhir-schema")
    seed.relation(db, "nurse-fhir-schema", seed.KOMMUN_A, "hc-s", "r-fhir-schema")
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    return schema.include(path_regex=r"^/fhir/R4/")


def test_fhir_operations_conform(fhir_schema: Any, mint: Any) -> None:
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    token = mint("nurse-fhir-schema", seed.KOMMUN_A, "nurse", "hc-s")
    failures: list[str] = []
    operations = 0
    for result in fhir_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=checks)

        try:
            exercise()
        except Exception as e:
            failures.append(f"{operation.verbose_name}: {str(e)[:600]}")
    assert operations >= 27
    assert not failures, "\n\n".join(failures)
