"""Shared test fixtures.

Integration tests need the real services from `carechain services up`. With
CI=true a service that cannot be reached is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
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


@contextmanager
def private_database(settings: Settings, prefix: str, migrated: bool = True) -> Iterator[str]:
    """A fresh database ``<prefix>_<random>``, with every migration applied unless ``migrated`` is False;
    dropped afterwards. Yields its DSN."""
    from carechain.db.migrate import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(settings.database_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        service_unavailable("PostgreSQL")
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    url = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
