"""Audit log and alert history: keys, retention (audit >= 5 years), prune, the hash chain after a prune.

Runs in either mode (the harness's plain PostgreSQL, or a TimescaleDB server through
``CARECHAIN_DATABASE_URL``); the tests marked ``timescaledb`` are skipped with the reason when the
server has no usable TimescaleDB (docs/storage.md "Trying TimescaleDB by hand").
"""

from __future__ import annotations

import argparse
import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from api import audit
from api.audit_cli import run as verify_cli
from carechain.db import queries
from carechain.db.migrate import migrate
from carechain.db.prune import prune
from carechain.settings import Settings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
YEAR = timedelta(days=365)


def _append(conn: psycopg.Connection[Any], at: datetime, n: int, resident: str = "res-ret") -> list[int]:
    """Append ``n`` entries dated ``at`` to the chain, as ``audit.record_many`` does (which dates them now)."""
    entries = [audit.entry(None, action="GET /t", resource="t", outcome="allowed", resident_id=resident)] * n
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (audit.CHAIN_LOCK,))
        head = cur.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        ids = [
            int(r[0])
            for r in cur.execute(
                "SELECT nextval(pg_get_serial_sequence('audit_log', 'id')) FROM generate_series(1, %s)", (n,)
            )
        ]
        rows = audit.chain(head[0] if head else audit.GENESIS, ids, at, entries)
        with cur.copy(f"COPY audit_log ({', '.join((*audit.COLUMNS, 'hash'))}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row[k] for k in (*audit.COLUMNS, "hash")))
    return ids


def _alert_event(conn: psycopg.Connection[Any], at: datetime) -> int:
    alert = conn.execute(
        "INSERT INTO alerts (resident_id, kind, family, severity) VALUES ('res-ret', 'fall', 'safety', 'high')"
        " RETURNING id"
    ).fetchone()
    assert alert is not None
    row = conn.execute(
        "INSERT INTO alert_events (alert_id, at, type) VALUES (%s, %s, 'proposed') RETURNING id", (alert[0], at)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _verify(dsn: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = verify_cli(argparse.Namespace(action="verify", database_url=dsn), Settings())
    return code, capsys.readouterr().out


@contextlib.contextmanager
def _database(settings: Settings, target: int | None = None) -> Iterator[str]:
    name = f"cc_db_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
        migrate(dsn, target)
        yield dsn
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_dsn(db_dsn: str, settings: Settings) -> Iterator[str]:
    """A database of its own: these tests cut the audit chain."""
    with _database(settings) as dsn:
        yield dsn


def test_keys_include_the_time_column(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as c:
        keys = {
            r[0]: r[1]
            for r in c.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid IN ('audit_log'::regclass, 'alert_events'::regclass) AND contype IN ('p', 'u')"
            )
        }
        keep = {r[0]: r[1] for r in c.execute("SELECT table_name, keep FROM retention_settings")}
    assert keys == {
        "alert_events_pkey": "PRIMARY KEY (id, at)",
        "audit_log_pkey": "PRIMARY KEY (id, at)",  # no UNIQUE (hash, at) since 0370: the chains are checked by verify
    }
    assert keep["audit_log"] == timedelta(days=5 * 365) and keep["alert_events"] == timedelta(days=5 * 365)


def test_audit_log_stays_append_only(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        old = _append(c, NOW - 6 * YEAR, 1)[0]
        recent = _append(c, NOW - timedelta(days=1), 1)[0]
        refused = [
            ("UPDATE audit_log SET outcome = 'denied' WHERE id = %s", recent),
            ("DELETE FROM audit_log WHERE id = %s", recent),
            ("DELETE FROM audit_log WHERE id = %s", old),  # past retention, but not by prune
        ]
        for statement, id_ in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                c.execute(statement, (id_,))
        # With the prune switch on: still no UPDATE, no TRUNCATE, no DELETE of a row inside retention.
        for statement, id_ in [*refused[:2], ("UPDATE audit_log SET outcome = 'denied' WHERE id = %s", old)]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
                c.execute("SET LOCAL carechain.audit_prune = on")
                c.execute(statement, (id_,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
            c.execute("SET LOCAL carechain.audit_prune = on")
            c.execute("TRUNCATE audit_log")
        # The switch is transaction-local: gone after the transaction.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM audit_log WHERE id = %s", (old,))
        # The record of cuts is append-only too.
        for statement in ("UPDATE audit_log_pruned SET rows = 0", "DELETE FROM audit_log_pruned"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(statement)
        count = c.execute("SELECT count(*) FROM audit_log WHERE id = ANY(%s)", ([old, recent],)).fetchone()
        assert count == (2,)


def test_audit_retention_below_five_years_is_refused(db_dsn: str, settings: Settings) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        with pytest.raises(psycopg.errors.RaiseException, match="at least 5 years"):
            c.execute("SELECT cc_retention('audit_log', 'at', interval '4 years')")
        # Short of 5 calendar years by a day, however it is written or wherever it is tried.
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("SELECT cc_retention('audit_log', 'at', interval '1826 days')")
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("UPDATE retention_settings SET keep = interval '1 year' WHERE table_name = 'audit_log'")
        # A longer keep moves the horizon back; 5 years stays the floor.
        c.execute("SELECT cc_retention('audit_log', 'at', interval '7 years')")
        row = c.execute("SELECT now() - cc_audit_horizon()").fetchone()
        assert row is not None and row[0] >= timedelta(days=7 * 365)
        c.execute("SELECT cc_retention('audit_log', 'at', interval '5 years')")
    # ...and as a setting at migrate time.
    name = f"cc_db_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f"ALTER DATABASE \"{name}\" SET carechain.retention_audit_log = '2 years'")
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="at least 5 years"):
            migrate(psycopg.conninfo.make_conninfo(settings.database_url, dbname=name))
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_prune_cuts_only_past_retention_and_the_chain_still_verifies(
    fresh_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        gone = _append(c, NOW - 6 * YEAR, 3)
        kept = _append(c, NOW - 4 * YEAR, 2) + _append(c, NOW - timedelta(minutes=5), 2)
        old_event = _alert_event(c, NOW - 6 * YEAR)
        new_event = _alert_event(c, NOW - 30 * timedelta(days=1))
        assert _verify(fresh_dsn, capsys)[0] == 0

        result = prune(fresh_dsn, batch=2)  # several short transactions
        assert not result.errors, result.errors
        assert result.deleted["audit_log"] == 3
        assert [r[0] for r in c.execute("SELECT id FROM audit_log ORDER BY id")] == kept
        assert [r[0] for r in c.execute("SELECT id FROM alert_events ORDER BY id")] == [new_event]
        assert old_event < new_event
        # The cut is recorded: the last row removed, whose hash the first kept row carries.
        cut = c.execute("SELECT through_id, through_hash FROM audit_log_pruned ORDER BY id DESC LIMIT 1").fetchone()
        first = c.execute("SELECT prev_hash FROM audit_log ORDER BY id LIMIT 1").fetchone()
        assert cut is not None and first is not None and cut[0] == gone[-1] and cut[1] == first[0]

        code, out = _verify(fresh_dsn, capsys)
        assert code == 0 and "4 rows, chain intact" in out, out
        audit.record(c, None, action="GET /after", resource="t", outcome="allowed")  # appends continue the chain
        assert _verify(fresh_dsn, capsys)[0] == 0
        again = prune(fresh_dsn)
        assert again.deleted["audit_log"] == 0 and not again.errors

        # Removing the oldest kept row around the trigger is not a retention cut: verify says so.
        victim = c.execute("SELECT * FROM audit_log WHERE id = %s", (kept[0],)).fetchone()
        with c.transaction():
            c.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            c.execute("DELETE FROM audit_log WHERE id = %s", (kept[0],))
            c.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        code, out = _verify(fresh_dsn, capsys)
        assert code == 1 and f"row id {kept[1]}" in out and "no recorded retention" in out, out
        assert victim is not None


def test_prune_keeps_a_chain_without_holes(fresh_dsn: str) -> None:
    """A row past retention that follows, in the chain, a row still kept stays until that one goes too."""
    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        _append(c, NOW - 6 * YEAR, 1)
        second = _append(c, NOW - 4 * YEAR, 1)
        _append(c, NOW - 6 * YEAR, 1)  # appended later but dated older (a clock that went back)
        if queries.storage_mode(c) == "timescaledb":
            pytest.skip("on TimescaleDB prune refuses to drop such chunks (error reported); plain PostgreSQL only")
        result = prune(fresh_dsn)
        assert result.deleted["audit_log"] == 1 and not result.errors
        assert c.execute("SELECT min(id) FROM audit_log").fetchone() == (second[0],)


# --- TimescaleDB -----------------------------------------------------------------------------------


def _skip_without_timescale(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        if queries.storage_mode(c) != "timescaledb":
            available = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
            pytest.skip(
                "TimescaleDB is not available in this PostgreSQL (pg_available_extensions)"
                if not available
                else "TimescaleDB is installed but not loadable (shared_preload_libraries)"
            )


@pytest.fixture
def ts(db_dsn: str, settings: Settings) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A fresh TimescaleDB database (connection, dsn); skipped with the reason when there is none."""
    _skip_without_timescale(db_dsn)
    with _database(settings) as dsn, psycopg.connect(dsn, autocommit=True) as c:
        yield c, dsn


def _jobs(c: psycopg.Connection[Any], relation: str) -> list[str]:
    return sorted(
        r[0]
        for r in c.execute("SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name = %s", (relation,))
    )


@pytest.mark.timescaledb
def test_hypertables_and_policies(ts: tuple[psycopg.Connection[Any], str]) -> None:
    c = ts[0]
    hyper = {r[0] for r in c.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    assert {"alert_events", "audit_log"} <= hyper
    assert _jobs(c, "alert_events") == ["policy_retention"]  # no compression (0250)
    assert _jobs(c, "audit_log") == []  # cut by `carechain db prune`, which records the cut
    c.execute("SELECT cc_retention('audit_log', 'at', interval '6 years')")  # a new keep adds no job either
    assert _jobs(c, "audit_log") == []
    keep = c.execute("SELECT keep FROM retention_settings WHERE table_name = 'audit_log'").fetchone()
    assert keep == (timedelta(days=6 * 365),)


@pytest.mark.timescaledb
def test_prune_drops_old_audit_chunks_and_records_the_cut(
    ts: tuple[psycopg.Connection[Any], str], capsys: pytest.CaptureFixture[str]
) -> None:
    c, fresh_dsn = ts
    _append(c, NOW - 6 * YEAR, 3)
    kept = _append(c, NOW - 4 * YEAR, 1) + _append(c, NOW, 1)
    chunks = c.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'audit_log'")
    assert chunks.fetchone() == (3,)
    result = prune(fresh_dsn)
    assert not result.errors and result.deleted["audit_log"] == 3
    chunks = c.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'audit_log'")
    assert chunks.fetchone() == (2,)
    assert [r[0] for r in c.execute("SELECT id FROM audit_log ORDER BY id")] == kept
    code, out = _verify(fresh_dsn, capsys)
    assert code == 0 and "2 rows, chain intact" in out, out


@pytest.mark.timescaledb
def test_prune_refuses_to_open_a_hole_in_the_chain(ts: tuple[psycopg.Connection[Any], str]) -> None:
    c, fresh_dsn = ts
    _append(c, NOW - 6 * YEAR, 1)
    _append(c, NOW - 4 * YEAR, 1)
    _append(c, NOW - 6 * YEAR, 1)  # a clock that went back: dropping the old chunk would leave a hole
    result = prune(fresh_dsn)
    assert "hole" in result.errors.get("audit_log", "")
    assert c.execute("SELECT count(*) FROM audit_log").fetchone() == (3,)


@pytest.mark.timescaledb
def test_tables_with_rows_become_hypertables(db_dsn: str, settings: Settings) -> None:
    """An existing database: its rows move into chunks (the TRUNCATE that follows is let through once)."""
    _skip_without_timescale(db_dsn)
    with _database(settings, target=300) as dsn, psycopg.connect(dsn, autocommit=True) as c:
        ids = _append(c, NOW - 2 * YEAR, 2) + _append(c, NOW, 2)
        event = _alert_event(c, NOW)
        migrate(dsn)
        hyper = {
            r[0]: r[1] for r in c.execute("SELECT hypertable_name, num_chunks FROM timescaledb_information.hypertables")
        }
        assert hyper["audit_log"] == 2 and hyper["alert_events"] == 1
        assert c.execute("SELECT count(*) FROM ONLY audit_log").fetchone() == (0,)  # all in chunks
        assert [r[0] for r in c.execute("SELECT id FROM audit_log ORDER BY id")] == ids
        assert [r[0] for r in c.execute("SELECT id FROM alert_events")] == [event]
        assert audit.verify(c) == (4, None)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("TRUNCATE audit_log")
