"""TimescaleDB mode: hypertables, continuous aggregates, policies run by hand, compression with replay.

Skipped with a reason when the server has no TimescaleDB. To run them, point
``CARECHAIN_DATABASE_URL`` at a PostgreSQL with the extension preloaded (docs/storage.md,
"Trying TimescaleDB"). Policy jobs are run with ``CALL run_job`` (DESIGN.md: on PostgreSQL
15.20 the background scheduler marks them failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from carechain.db import queries
from carechain.db.writer import EventWriter
from tests.db.test_queries import ev

pytestmark = [pytest.mark.integration, pytest.mark.timescaledb]

R = "res-ts"


@pytest.fixture(scope="module")
def ts(db_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        if queries.storage_mode(c) != "timescaledb":
            available = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
            pytest.skip(
                "TimescaleDB is not available in this PostgreSQL (pg_available_extensions)"
                if not available
                else "TimescaleDB is installed but not loadable (shared_preload_libraries)"
            )
        yield c


def _jobs(c: psycopg.Connection, proc: str, relation: str) -> list[int]:
    return [
        r[0]
        for r in c.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s AND hypertable_name = %s",
            (proc, relation),
        )
    ]


def test_hypertables_aggregates_and_policies(ts: psycopg.Connection) -> None:
    hyper = {r[0] for r in ts.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    assert {"observations", "scores"} <= hyper
    caggs = {
        r[0]: r[1]
        for r in ts.execute("SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates")
    }
    assert caggs == {"activity_hourly": False, "vitals_hourly": False, "daily_summary": False}
    procs = [r[0] for r in ts.execute("SELECT proc_name FROM timescaledb_information.jobs WHERE job_id >= 1000")]
    assert procs.count("policy_refresh_continuous_aggregate") == 3
    assert procs.count("policy_retention") == 6  # observations, scores, three summaries, alert_events (0250)
    assert procs.count("policy_compression") == 2  # observations, scores (not alert_events, 0250)
    ret = ts.execute(
        "SELECT config->>'drop_after' FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_name = 'observations'"
    ).fetchone()
    assert ret is not None and ret[0] == "30 days"


def test_changing_a_retention_replaces_the_policy(ts: psycopg.Connection) -> None:
    ts.execute("SELECT cc_retention('scores', 'ts', interval '400 days')")
    rows = ts.execute(
        "SELECT config->>'drop_after' FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_name = 'scores'"
    ).fetchall()
    assert rows == [("400 days",)]


def test_compressed_chunk_takes_replays_and_late_readings(ts: psycopg.Connection, db_dsn: str) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
    batch = [
        ev("heart_rate", day + timedelta(hours=8, minutes=m), 60.0 + m, room="bedroom", resident=R) for m in range(10)
    ]
    with EventWriter(db_dsn, pool_size=1) as w:
        assert w.write_events(batch) == 10
        (job,) = _jobs(ts, "policy_compression", "observations")
        ts.execute("CALL run_job(%s)", (job,))
        compressed = ts.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'observations' AND is_compressed AND range_end <= %s",
            (day + timedelta(days=1),),
        ).fetchone()
        assert compressed is not None and compressed[0] >= 1
        # A replay into a compressed chunk adds nothing; a late reading is still taken.
        assert w.write_events(batch) == 0
        late = ev("heart_rate", day + timedelta(hours=9), 99.0, room="bedroom", resident=R)
        assert w.write_events([late]) == 1
    trend = queries.vitals_trend(ts, R, day, day + timedelta(days=1))
    assert [(r["bucket"], r["n"], r["max"]) for r in trend] == [
        (day + timedelta(hours=8), 10, 69.0),
        (day + timedelta(hours=9), 1, 99.0),
    ]


def test_refresh_job_materialises_and_real_time_adds_the_rest(ts: psycopg.Connection, db_dsn: str) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    older = ev("motion", now - timedelta(hours=5), True, room="hall", resident=R)
    newest = ev("motion", now + timedelta(minutes=1), True, room="hall", resident=R)
    with EventWriter(db_dsn, pool_size=1) as w:
        assert w.write_events([older]) == 1
        (job,) = _jobs(ts, "policy_refresh_continuous_aggregate", "activity_hourly")
        ts.execute("CALL run_job(%s)", (job,))
        assert w.write_events([newest]) == 1
    materialised = ts.execute(
        "SELECT count(*) FROM _timescaledb_catalog.continuous_aggs_watermark w"
        " JOIN _timescaledb_catalog.continuous_agg a ON a.mat_hypertable_id = w.mat_hypertable_id"
        " WHERE a.user_view_name = 'activity_hourly' AND w.watermark > 0"
    ).fetchone()
    assert materialised is not None and materialised[0] == 1
    rows = queries.activity_hourly(ts, R, now - timedelta(hours=6), now + timedelta(hours=1))
    assert [(r["hour"], r["room"], r["events"]) for r in rows] == [
        (now - timedelta(hours=5), "hall", 1),
        (now, "hall", 1),
    ]
