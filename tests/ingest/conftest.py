"""Fixtures of the ingest integration tests (real Mosquitto, Kafka and PostgreSQL)."""

from __future__ import annotations

import pytest

from carechain.settings import Settings
from tests.conftest import service_unavailable
from tests.ingest.live import missing_service


@pytest.fixture(scope="session")
def live(settings: Settings) -> Settings:
    """The settings, once the three services answer (skip, or fail under CI, otherwise)."""
    missing = missing_service(settings)
    if missing is not None:
        service_unavailable(missing)
    return settings
