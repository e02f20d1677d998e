"""Observations partitioned by day (plain PostgreSQL, migration 0006): on-demand partitions, a
populated table rebuilt by the migration, replays still add nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from carechain.db import queries
from carechain.db.migrate import migrate
from carechain.db.writer import EventWriter, RetryPolicy, batch_days, observation_row
from carechain.settings import Settings
from tests.db.test_writer import make_events

pytestmark = pytest.mark.integration


def _partitioned(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = 'observations'::regclass").fetchone()
        return bool(row and row[0])


def _partition_days(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'observations'::regclass"
        ).fetchall()
    return {r[0].removeprefix("observations_p") for r in rows}


@pytest.fixture()
def writer(db_dsn: str) -> Iterator[EventWriter]:
    w = EventWriter(db_dsn, pool_size=2, retry=RetryPolicy(deadline_s=20), name=f"cc-test-{uuid.uuid4().hex[:8]}")
    yield w
    w.close()


def test_batch_days_spans_and_backfills() -> None:
    t = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    rows = [observation_row(e, False) for e in make_events("r", 120, start=t)]  # crosses midnight
    assert batch_days(rows) == {date(2026, 3, 1), date(2026, 3, 2)}
    far = make_events("r", 2, start=datetime(2025, 1, 10, tzinfo=UTC)) + make_events("r", 2, start=t)
    assert batch_days([observation_row(e, False) for e in far]) == {date(2025, 1, 10), date(2026, 3, 1)}


def test_writer_makes_missing_day_partitions(writer: EventWriter, db_dsn: str) -> None:
    if not _partitioned(db_dsn):
        pytest.skip("observations is partitioned only on plain PostgreSQL (TimescaleDB chunks it)")
    # A gateway backfill: readings from two days long ago, and a batch crossing midnight.
    old = make_events("res-part", 50, start=datetime(2024, 2, 3, 12, tzinfo=UTC)) + make_events(
        "res-part2", 50, start=datetime(2024, 5, 6, 12, tzinfo=UTC)
    )
    assert writer.write_events(old) == 100
    assert {"20240203", "20240506"} <= _partition_days(db_dsn)
    assert not {"20240301", "20240401"} & _partition_days(db_dsn)  # only the days present
    assert writer.write_events(old) == 0  # replay into the new partitions adds nothing
    night = make_events("res-part", 200, start=datetime(2024, 2, 3, 23, 58, tzinfo=UTC))
    assert writer.write_events(night) == 200  # other timestamps: new events, on both sides of midnight
    assert "20240204" in _partition_days(db_dsn)


def test_writer_remakes_a_dropped_partition(writer: EventWriter, db_dsn: str) -> None:
    if not _partitioned(db_dsn):
        pytest.skip("observations is partitioned only on plain PostgreSQL")
    events = make_events("res-drop", 20, start=datetime(2023, 7, 1, 10, tzinfo=UTC))
    assert writer.write_events(events) == 20
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE observations_p20230701")  # e.g. retention dropped the day
    assert writer.write_events(events) == 20  # the writer's cache is stale; it remakes the partition
    assert "20230701" in _partition_days(db_dsn)


def test_migration_partitions_a_populated_table(settings: Settings) -> None:
    name = f"cc_db_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    try:
        migrate(dsn, target=5)
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=3)
        events = make_events("res-mig", 300, start=start, kind="motion")
        with EventWriter(dsn, pool_size=1) as w:
            assert w.write_events(events) == 300
        with psycopg.connect(dsn) as conn:
            before = queries.activity_hourly(conn, "res-mig", start - timedelta(hours=1), now)
            assert before
        result = migrate(dsn)
        if result.mode != "postgresql":
            pytest.skip("0006 is the plain PostgreSQL variant")
        assert "0006_observation_partitions.plain.sql" in result.applied
        assert _partitioned(dsn)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM observations").fetchone() == (300,)
            assert queries.activity_hourly(conn, "res-mig", start - timedelta(hours=1), now) == before
            view = conn.execute("SELECT count(*) FROM activity_hourly WHERE resident_id = 'res-mig'").fetchone()
            assert view is not None and view[0] == len(before)
            assert conn.execute("SELECT to_regclass('observations_unpartitioned')").fetchone() == (None,)
        with EventWriter(dsn, pool_size=1) as w:
            assert w.write_events(events) == 0  # the unique key survived the rebuild
        assert migrate(dsn).applied == []
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
