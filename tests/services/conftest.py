"""Fixtures for the services harness tests: skip (or fail under CI) when a service is down."""

from __future__ import annotations

import pytest

from carechain.services.mosquitto import mqtt_connects
from carechain.services.processes import port_open
from carechain.settings import Settings
from tests.conftest import service_unavailable


@pytest.fixture(scope="session")
def mosquitto(settings: Settings) -> Settings:
    """The harness's Mosquitto must answer an MQTT connect."""
    if not mqtt_connects(settings.mqtt_host, settings.mqtt_port):
        service_unavailable(f"Mosquitto at {settings.mqtt_host}:{settings.mqtt_port}")
    return settings


@pytest.fixture(scope="session")
def kafka(settings: Settings) -> Settings:
    """The harness's Kafka must accept connections."""
    host, _, port = settings.kafka_bootstrap.rpartition(":")
    if not port_open(host, int(port)):
        service_unavailable(f"Kafka at {settings.kafka_bootstrap}")
    return settings


@pytest.fixture(scope="session")
def postgres(settings: Settings) -> Settings:
    """The harness's PostgreSQL must accept connections."""
    if not port_open("127.0.0.1", 55432):
        service_unavailable("PostgreSQL at 127.0.0.1:55432")
    return settings
