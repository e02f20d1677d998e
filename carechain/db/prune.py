"""Retention in both modes: ``carechain db prune``.

Every retention is recorded in ``retention_settings`` (``cc_retention()`` in the migrations).
On TimescaleDB the policy jobs do the work; they are run here explicitly (``CALL run_job``),
refresh before compression before retention, because on PostgreSQL 15.20 the background
scheduler records them as failed (docs/storage.md). Relations TimescaleDB does not manage, and
everything on plain PostgreSQL, are pruned by ``DELETE``; on plain PostgreSQL the raw readings'
days are first rolled up into the summary tables (``cc_roll_up``), so summaries outlive them.

A relation that refuses deletes (the append-only audit log, whose rows outlive any reasonable
run of this command anyway) is reported, not fatal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

_JOB_ORDER = ("policy_refresh_continuous_aggregate", "policy_compression", "policy_retention")


@dataclass(slots=True)
class PruneResult:
    mode: str
    jobs_run: list[int] = field(default_factory=list)
    rolled_up_until: str | None = None
    deleted: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the CLI."""
        return {
            "mode": self.mode,
            "jobs_run": self.jobs_run,
            "rolled_up_until": self.rolled_up_until,
            "deleted": self.deleted,
            "errors": self.errors,
        }


def _managed_by_timescale(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT cc_is_timescale_relation(%s::regclass)", (table,)).fetchone()
    return bool(row and row[0])


def _qualified(conn: psycopg.Connection, table: str) -> sql.Identifier:
    row = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = %s::regclass",
        (table,),
    ).fetchone()
    if row is None:
        raise LookupError(table)
    return sql.Identifier(row[0], row[1])


def _delete_older(conn: psycopg.Connection, table: sql.Identifier, column: str, keep: timedelta, batch: int) -> int:
    """Delete rows older than ``keep`` in short transactions of at most ``batch`` rows (no long lock, bounded WAL)."""
    row = conn.execute("SELECT now() - %s", (keep,)).fetchone()
    cutoff = row[0] if row else None
    # The outer "{c} < cutoff" matters on a partitioned table (observations on plain PostgreSQL,
    # migration 0006): a ctid is unique only within one partition, so without it the rows of newer
    # partitions at the same ctids would go too.
    q = sql.SQL(
        "DELETE FROM {t} WHERE {c} < %s AND ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {c} < %s LIMIT %s))"
    ).format(t=table, c=sql.Identifier(column))
    total = 0
    while True:
        n = max(conn.execute(q, (cutoff, cutoff, batch)).rowcount, 0)
        total += n
        if n < batch:
            return total


def prune(dsn: str, batch: int = 50_000) -> PruneResult:
    """Apply every recorded retention now (and, on TimescaleDB, the other policy jobs)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT cc_timescale()").fetchone()
        timescale = bool(row and row[0])
        result = PruneResult("timescaledb" if timescale else "postgresql")
        keeps: list[tuple[str, str, timedelta]] = [
            (r[0], r[1], r[2])
            for r in conn.execute("SELECT table_name, time_column, keep FROM retention_settings ORDER BY table_name")
        ]
        if timescale:
            jobs = conn.execute(
                "SELECT job_id, proc_name FROM timescaledb_information.jobs WHERE proc_name = ANY(%s)",
                (list(_JOB_ORDER),),
            ).fetchall()
            for job_id, proc in sorted(jobs, key=lambda j: (_JOB_ORDER.index(j[1]), j[0])):
                try:
                    conn.execute("CALL run_job(%s)", (job_id,))
                    result.jobs_run.append(int(job_id))
                except psycopg.Error as exc:
                    result.errors[f"job {job_id} ({proc})"] = str(exc).strip()
        else:
            obs = next((k for t, _, k in keeps if t == "observations"), None)
            if obs is not None:
                row = conn.execute("SELECT cc_roll_up(now() - %s)", (obs,)).fetchone()
                result.rolled_up_until = row[0].isoformat() if row and row[0] else None
        for table, column, keep in keeps:
            try:
                if _managed_by_timescale(conn, table):
                    continue
                result.deleted[table] = _delete_older(conn, _qualified(conn, table), column, keep, batch)
            except (psycopg.Error, LookupError) as exc:
                log.warning("retention of %s not applied: %s", table, exc)
                result.errors[table] = str(exc).strip()
        return result
