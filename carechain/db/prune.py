"""Retention in both modes: ``carechain db prune``.

Every retention is recorded in ``retention_settings`` (``cc_retention()`` in the migrations).
On TimescaleDB the policy jobs do the work; they are run here explicitly (``CALL run_job``),
refresh before compression before retention, because on PostgreSQL 15.20 the background
scheduler records them as failed (docs/storage.md). Relations TimescaleDB does not manage, and
everything on plain PostgreSQL, are pruned by ``DELETE``; on plain PostgreSQL the raw readings'
days are first rolled up into the summary tables (``cc_roll_up``), so summaries outlive them.

The append-only audit log is kept at least 5 years and pruned here in both modes (never by a
TimescaleDB policy): only rows older than ``cc_audit_horizon()`` (the longer of 5 years and the
configured keep), only a prefix of the hash chain (lowest ids first, never past the first row that
is still kept, so no hole opens in the chain: with several chains (migration 0360) the rows removed
are then a prefix of each), and each cut is recorded in ``audit_log_pruned`` (per chain) in the same
transaction, so ``carechain audit verify`` starts from the first remaining row and can
tell a retention cut from a deletion. Plain PostgreSQL: ``DELETE`` in batches, in transactions
that set ``carechain.audit_prune = on`` locally (the only case the append-only trigger lets
through). TimescaleDB: ``drop_chunks`` of the whole chunks older than the horizon.

A relation whose retention fails is reported in ``errors``, not fatal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

AUDIT_TABLES = ("audit_log", "public.audit_log")
_NO_HOLE = 2**63 - 1  # "no row is kept": any id may go
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


_AUDIT_DELETE = """
WITH d AS (
    DELETE FROM audit_log WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM audit_log WHERE at < %(horizon)s AND id < %(keep_from)s ORDER BY id LIMIT %(batch)s))
    RETURNING id, hash, {chain} AS chain),
last AS (
    SELECT DISTINCT ON (chain) chain, id, hash, count(*) OVER (PARTITION BY chain) AS n FROM d ORDER BY chain, id DESC),
cut AS (
    INSERT INTO audit_log_pruned (horizon, through_id, through_hash, rows{chain_col})
    SELECT %(horizon)s, last.id, last.hash, last.n{chain_val} FROM last
    RETURNING rows)
SELECT coalesce(sum(rows), 0) FROM cut
"""


def _chains(conn: psycopg.Connection) -> bool:
    """Whether the audit log has several chains (migration 0360): a cut is then recorded per chain."""
    row = conn.execute("SELECT to_regclass('audit_chains')").fetchone()
    return bool(row and row[0] is not None)


def _audit_delete(conn: psycopg.Connection) -> str:
    if _chains(conn):
        return _AUDIT_DELETE.format(chain="chain", chain_col=", chain", chain_val=", last.chain")
    return _AUDIT_DELETE.format(chain="0", chain_col="", chain_val="")


def _first_kept_id(conn: psycopg.Connection, horizon: object) -> int:
    """The lowest id of a row that stays: nothing at or above it may go (the chain keeps no hole)."""
    row = conn.execute("SELECT min(id) FROM audit_log WHERE at >= %s", (horizon,)).fetchone()
    return int(row[0]) if row and row[0] is not None else _NO_HOLE


def _prune_audit_plain(conn: psycopg.Connection, batch: int) -> int:
    """Delete the chain's prefix older than the horizon, ``batch`` rows per transaction, each cut recorded."""
    row = conn.execute("SELECT cc_audit_horizon()").fetchone()
    assert row is not None
    horizon = row[0]
    keep_from = _first_kept_id(conn, horizon)
    delete = _audit_delete(conn)
    total = 0
    while True:
        with conn.transaction():
            conn.execute("SELECT set_config('carechain.audit_prune', 'on', true)")
            got = conn.execute(delete, {"horizon": horizon, "keep_from": keep_from, "batch": batch}).fetchone()
        n = int(got[0]) if got else 0
        total += n
        if n < batch:
            return total


def _prune_audit_timescale(conn: psycopg.Connection) -> int:
    """Drop the audit log's whole chunks older than the horizon, recording the cut first (same transaction)."""
    row = conn.execute(
        "SELECT max(c.range_end) FROM timescaledb_information.chunks c"
        " WHERE format('%I.%I', c.hypertable_schema, c.hypertable_name)::regclass = 'audit_log'::regclass"
        " AND c.range_end <= cc_audit_horizon()"
    ).fetchone()
    boundary = row[0] if row else None
    if boundary is None:
        return 0
    chain = "chain" if _chains(conn) else "0"
    with conn.transaction():
        # The last row removed from each chain, and how many go from it.
        lasts = conn.execute(
            f"SELECT DISTINCT ON (c) c, id, hash, n FROM (SELECT {chain} AS c, id, hash,"
            " count(*) OVER (PARTITION BY " + chain + ") AS n FROM audit_log WHERE at < %(b)s) s"
            " ORDER BY c, id DESC",
            {"b": boundary},
        ).fetchall()
        if lasts:
            if _first_kept_id(conn, boundary) < max(r[1] for r in lasts):
                raise RuntimeError(
                    f"audit_log: a row kept has a lower id than one older than {boundary.isoformat()}"
                    " (appends out of time order); dropping those chunks would leave a hole in the hash chain"
                )
            for c, id_, hash_, n in lasts:
                if chain == "chain":
                    conn.execute(
                        "INSERT INTO audit_log_pruned (horizon, through_id, through_hash, rows, chain)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (boundary, id_, hash_, n, c),
                    )
                else:
                    conn.execute(
                        "INSERT INTO audit_log_pruned (horizon, through_id, through_hash, rows)"
                        " VALUES (%s, %s, %s, %s)",
                        (boundary, id_, hash_, n),
                    )
        conn.execute("SELECT drop_chunks('audit_log'::regclass, older_than => %s::timestamptz)", (boundary,))
    return sum(int(r[3]) for r in lasts)


def _prune_audit(conn: psycopg.Connection, timescale: bool, batch: int) -> int:
    if timescale and _managed_by_timescale(conn, "audit_log"):
        return _prune_audit_timescale(conn)
    return _prune_audit_plain(conn, batch)


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
            if any(t in AUDIT_TABLES for t, _, _ in keeps):
                # Never a policy job for the audit log (0351); only one added by hand can be there.
                conn.execute("SELECT remove_retention_policy('audit_log', if_exists => true)")
            jobs = conn.execute(
                "SELECT job_id, proc_name FROM timescaledb_information.jobs WHERE proc_name = ANY(%s)",
                (list(_JOB_ORDER),),
            ).fetchall()
            for job_id, proc in sorted(jobs, key=lambda j: (_JOB_ORDER.index(j[1]), j[0])):
                for attempt in (1, 2):
                    try:
                        conn.execute("CALL run_job(%s)", (job_id,))
                        result.jobs_run.append(int(job_id))
                        break
                    except psycopg.Error as exc:
                        # Once more: the background scheduler may have run the same job at the same time
                        # (seen: "chunk ... is already compressed"); a second run finds the work done.
                        if attempt == 2:
                            result.errors[f"job {job_id} ({proc})"] = str(exc).strip()
        else:
            obs = next((k for t, _, k in keeps if t == "observations"), None)
            if obs is not None:
                row = conn.execute("SELECT cc_roll_up(now() - %s)", (obs,)).fetchone()
                result.rolled_up_until = row[0].isoformat() if row and row[0] else None
        for table, column, keep in keeps:
            try:
                if table in AUDIT_TABLES:
                    result.deleted["audit_log"] = _prune_audit(conn, timescale, batch)
                    continue
                if _managed_by_timescale(conn, table):
                    continue
                result.deleted[table] = _delete_older(conn, _qualified(conn, table), column, keep, batch)
            except (psycopg.Error, LookupError, RuntimeError) as exc:
                log.warning("retention of %s not applied: %s", table, exc)
                result.errors[table] = str(exc).strip()
        return result
