"""Shared test fixtures.

Integration tests need the real services from `carechain services up`. With
CI=true a service that cannot be reached is a failure, not a skip.
"""

from __future__ import annotations

import os

import pytest

from carechain.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


def service_unavailable(what: str) -> None:
    """Fail under CI, skip elsewhere, when a real service is missing."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is not reachable (CI=true: a missing service is a failure)")
    pytest.skip(f"{what} is not reachable; run `carechain services up`")
