"""Versioned SQL migrations, TimescaleDB when present, plain PostgreSQL otherwise.

Files in ``migrations/`` are ``NNNN_name.sql`` (always), ``NNNN_name.timescale.sql``
(only with the extension) and ``NNNN_name.plain.sql`` (only without). Each file runs
in its own transaction and is recorded in ``schema_migrations`` with its checksum; an
advisory lock lets several processes migrate at once. A database that already has a
newer version than this code knows is refused: old code must not write a new schema.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")
_LOCK_KEY = 7_244_120_001  # advisory lock id for migrations


class SchemaTooNew(RuntimeError):
    """The database was migrated by newer code than this."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    variant: str  # "all" | "timescale" | "plain"
    filename: str
    sql: str

    def applies(self, timescale: bool) -> bool:
        """Whether this file runs in the given mode."""
        return self.variant == "all" or (self.variant == "timescale") == timescale

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(slots=True)
class MigrationResult:
    mode: str  # "timescaledb" | "postgresql"
    version: int
    applied: list[str] = field(default_factory=list)


def available_migrations() -> list[Migration]:
    """All migration files shipped with this code, in order."""
    out = []
    for entry in resources.files("carechain.db").joinpath("migrations").iterdir():
        m = _FILE_RE.match(entry.name)
        if not m:
            continue
        out.append(Migration(int(m.group(1)), m.group(2), m.group(3) or "all", entry.name, entry.read_text()))
    variant_order = {"all": 0, "timescale": 1, "plain": 1}
    return sorted(out, key=lambda x: (x.version, variant_order[x.variant], x.filename))


def code_version() -> int:
    return max((m.version for m in available_migrations()), default=0)


def _enable_timescale(conn: psycopg.Connection, dsn: str) -> bool:
    """Use TimescaleDB when the extension is installed and loadable; say so either way."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        return True
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone():
        return False
    row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    preload = [p.strip().strip('"') for p in (row[0] if row else "").split(",")]
    if "timescaledb" not in preload:
        # CREATE EXTENSION would end the session with a FATAL error: do not try.
        log.warning("timescaledb is installed but not in shared_preload_libraries; using plain PostgreSQL")
        return False
    try:
        # On its own connection, so that whatever happens the migrating (locked) one survives.
        with psycopg.connect(dsn, autocommit=True) as probe:
            probe.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return True
    except psycopg.Error as exc:
        log.warning("timescaledb is installed but cannot be enabled (%s); using plain PostgreSQL", exc)
        return False


def migrate(dsn: str, target: int | None = None) -> MigrationResult:
    """Apply every pending migration; idempotent. Returns the mode and the version reached."""
    migrations = [m for m in available_migrations() if target is None or m.version <= target]
    known = code_version()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       filename text PRIMARY KEY, version int NOT NULL, variant text NOT NULL,
                       checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
            db_version = int(row[0]) if row and row[0] is not None else 0
            if db_version > known:
                raise SchemaTooNew(
                    f"database schema is version {db_version}, this code knows up to {known}: upgrade the code"
                )
            applied = {r[0]: r[1] for r in conn.execute("SELECT filename, checksum FROM schema_migrations")}
            timescale = _enable_timescale(conn, dsn)
            mode = "timescaledb" if timescale else "postgresql"
            done: list[str] = []
            for m in migrations:
                if not m.applies(timescale):
                    continue
                if m.filename in applied:
                    if applied[m.filename] != m.checksum:
                        log.warning("migration %s changed after it was applied; not re-running it", m.filename)
                    continue
                with conn.transaction():
                    conn.execute(m.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (filename, version, variant, checksum) VALUES (%s, %s, %s, %s)",
                        (m.filename, m.version, m.variant, m.checksum),
                    )
                log.info("applied migration %s (%s mode)", m.filename, mode)
                done.append(m.filename)
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            return MigrationResult(mode, version, done)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def status(dsn: str) -> dict[str, object]:
    """Mode, database version, code version and pending files."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        has_table = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        applied: set[str] = set()
        if has_table and has_table[0]:
            applied = {r[0] for r in conn.execute("SELECT filename FROM schema_migrations")}
        ts = bool(conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone())
        retention: dict[str, str] = {}
        if conn.execute("SELECT to_regclass('retention_settings')").fetchone() not in (None, (None,)):
            retention = {r[0]: r[1] for r in conn.execute("SELECT table_name, keep::text FROM retention_settings")}
    mode = "timescaledb" if ts else "postgresql"
    pending = [m.filename for m in available_migrations() if m.filename not in applied and m.applies(ts)]
    db_version = max((int(f[:4]) for f in applied), default=0)
    return {
        "mode": mode,
        "db_version": db_version,
        "code_version": code_version(),
        "pending": pending,
        "retention": retention,
    }
