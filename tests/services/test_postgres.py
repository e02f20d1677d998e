"""The harness's PostgreSQL: the carechain superuser can connect and create private databases."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from carechain.settings import Settings

pytestmark = pytest.mark.integration


def test_carechain_role_is_a_superuser_on_loopback(postgres: Settings) -> None:
    with psycopg.connect(postgres.database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "select current_user, current_database(), rolsuper, inet_server_addr()::text "
            "from pg_roles where rolname = current_user"
        ).fetchone()
    assert row is not None
    user, db, superuser, addr = row
    assert (user, db, superuser) == ("carechain", "carechain", True)
    assert addr.startswith("127.0.0.1")


def test_tests_can_create_and_drop_a_private_database(postgres: Settings) -> None:
    name = f"cc_services_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'create database "{name}"')
        try:
            url = postgres.database_url.rsplit("/", 1)[0] + f"/{name}"
            with psycopg.connect(url, connect_timeout=5) as private:
                assert private.execute("select current_database()").fetchone() == (name,)
        finally:
            conn.execute(f'drop database "{name}" with (force)')
