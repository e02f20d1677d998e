"""The demo's few direct database calls (psycopg only here): create, connect, seed, read the registry."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import psycopg


def create_database(admin_dsn: str, dbname: str) -> None:
    """Create ``dbname`` on the server unless it exists."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')


def connect(dsn: str) -> psycopg.Connection[Any]:
    """An autocommit connection (the alert service opens its own transactions)."""
    return psycopg.connect(dsn, autocommit=True)


def seed(dsn: str, seed_module: ModuleType, homes: int) -> None:
    """``carechain.db.seed.seed_demo`` on a connection of its own (idempotent)."""
    with psycopg.connect(dsn) as conn:
        seed_module.seed_demo(conn, homes=homes)
        conn.commit()


def load_registry(dsn: str, registry_module: ModuleType) -> Any:
    """The bridge's registry snapshot (``ingest.registry.load_snapshot``)."""
    with psycopg.connect(dsn) as conn:
        return registry_module.load_snapshot(conn)
