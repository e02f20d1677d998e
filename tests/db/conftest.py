"""A private, migrated database per test module on the harness's PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from carechain.db.migrate import migrate
from carechain.settings import Settings
from tests.conftest import service_unavailable


def _admin_dsn(settings: Settings) -> str:
    return settings.database_url


@pytest.fixture(scope="module")
def db_dsn(settings: Settings) -> Iterator[str]:
    name = f"cc_db_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(_admin_dsn(settings), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        service_unavailable("PostgreSQL")
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    migrate(dsn)
    yield dsn
    with psycopg.connect(_admin_dsn(settings), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
