"""Migrations and the registry on the real PostgreSQL."""

from __future__ import annotations

import select

import psycopg
import pytest

from carechain.db import migrate as migrations
from carechain.db.seed import seed_demo

pytestmark = pytest.mark.integration


def test_migrate_is_idempotent_and_records_versions(db_dsn: str) -> None:
    again = migrations.migrate(db_dsn)
    assert again.applied == []
    assert again.version == migrations.code_version()
    assert again.mode in ("postgresql", "timescaledb")
    st = migrations.status(db_dsn)
    assert st["pending"] == [] and st["db_version"] == st["code_version"]


def test_refuses_a_newer_schema(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (filename, version, variant, checksum)"
            " VALUES ('9999_future.sql', 9999, 'all', 'x')"
        )
        try:
            with pytest.raises(migrations.SchemaTooNew):
                migrations.migrate(db_dsn)
        finally:
            conn.execute("DELETE FROM schema_migrations WHERE version = 9999")


def test_registry_follows_consent_and_notifies(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as listener, psycopg.connect(db_dsn) as conn:
        listener.execute("LISTEN carechain_registry")
        seed_demo(conn, homes=3, consent=False)
        seed_demo(conn, homes=3)  # idempotent; adds the consents
        conn.commit()
        rows = conn.execute(
            "SELECT resident_id, bool_and(monitoring_active) FROM device_registry GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert rows == [("res-0001", True), ("res-0002", True), ("res-0003", True)]
        # Withdrawal stops monitoring at once; a cohabitant without consent blocks it too.
        conn.execute(
            "UPDATE monitoring_consents SET withdrawn_at = now(), withdrawn_by = 'r' WHERE home_id = 'home-0001'"
        )
        conn.execute("UPDATE homes SET cohabitants = 1 WHERE home_id = 'home-0002'")
        conn.commit()
        active = dict(
            conn.execute("SELECT home_id, bool_and(monitoring_active) FROM device_registry GROUP BY 1").fetchall()
        )
        assert active == {"home-0001": False, "home-0002": False, "home-0003": True}
        # A revoked gateway's devices leave the registry.
        conn.execute("UPDATE gateways SET revoked_at = now() WHERE gateway_id = 'gw-0003'")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM device_registry WHERE home_id = 'home-0003'").fetchone() == (0,)
        select.select([listener.fileno()], [], [], 5)
        notes = list(listener.notifies(timeout=2, stop_after=1))
        assert notes and notes[0].channel == "carechain_registry"
