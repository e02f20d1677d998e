"""Retention and summaries that outlive raw readings, configurable policies; either mode."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from carechain.db import queries
from carechain.db.migrate import migrate
from carechain.db.prune import prune
from carechain.db.writer import EventWriter
from carechain.settings import Settings
from tests.db.test_queries import ev

pytestmark = pytest.mark.integration

R = "res-pol"


def _retention(dsn: str) -> dict[str, timedelta]:
    with psycopg.connect(dsn) as c:
        return {r[0]: r[1] for r in c.execute("SELECT table_name, keep FROM retention_settings")}


def test_default_retention_raw_short_summaries_long(db_dsn: str) -> None:
    keep = _retention(db_dsn)
    assert keep["observations"] == timedelta(days=30)
    assert keep["scores"] == timedelta(days=365)
    summaries = [v for k, v in keep.items() if k.startswith(("activity_hourly", "vitals_hourly", "daily_summary"))]
    assert len(summaries) == 3 and all(v == timedelta(days=730) for v in summaries)


def test_audit_log_is_kept_at_least_five_years(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as c:
        with pytest.raises(psycopg.errors.RaiseException, match="at least 5 years"):
            c.execute("SELECT cc_retention('audit_log', 'at', interval '1 year')")
        c.rollback()
        c.execute("SELECT cc_retention('audit_log', 'at', interval '6 years')")
        c.commit()
    assert _retention(db_dsn)["audit_log"] == timedelta(days=6 * 365)  # '6 years' reads back as 2190 days


def test_policies_are_configurable_by_setting(settings: Settings) -> None:
    name = f"cc_db_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f"ALTER DATABASE \"{name}\" SET carechain.retention_observations = '14 days'")
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    try:
        migrate(dsn)
        assert _retention(dsn)["observations"] == timedelta(days=14)
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_prune_drops_old_readings_but_keeps_their_summaries(db_dsn: str) -> None:
    now = datetime.now(UTC)
    old_day = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=40)
    old = [
        ev("heart_rate", old_day + timedelta(hours=8, minutes=10), 60.0, room="bedroom", resident=R),
        ev("heart_rate", old_day + timedelta(hours=8, minutes=20), 80.0, room="bedroom", resident=R),
        ev("motion", old_day + timedelta(hours=9), True, room="bathroom", resident=R),
    ]
    fresh = [ev("heart_rate", now - timedelta(hours=1), 70.0, room="bedroom", resident=R)]
    with EventWriter(db_dsn, pool_size=1) as w:
        assert w.write_events(old + fresh) == 4
    with psycopg.connect(db_dsn, autocommit=True) as c:
        if queries.storage_mode(c) == "timescaledb":
            # The refresh policy materialises days while they are fresh; do now what it would have done.
            for cagg in ("activity_hourly", "vitals_hourly", "daily_summary"):
                c.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (cagg,))
        before_days = queries.daily_summaries(c, R, old_day, old_day + timedelta(days=1))
        before_vitals = queries.vitals_trend(c, R, old_day, old_day + timedelta(days=1))
        before_act = queries.activity_hourly(c, R, old_day, old_day + timedelta(days=1))
        assert before_days and before_days[0]["heart_rate_avg"] == pytest.approx(70.0)

        result = prune(db_dsn, batch=2)  # several short delete transactions
        assert not {k for k in result.errors if "audit_log" not in k}, result.errors
        if result.mode == "postgresql":
            assert result.deleted["observations"] == 3 and result.rolled_up_until is not None
        else:
            assert result.jobs_run and "observations" not in result.deleted  # the retention job dropped the chunk

        raw = c.execute("SELECT count(*) FROM observations WHERE resident_id = %s", (R,)).fetchone()
        assert raw is not None and raw[0] == 1, "readings older than 30 days are gone, the fresh one stays"
        assert queries.daily_summaries(c, R, old_day, old_day + timedelta(days=1)) == before_days
        assert queries.vitals_trend(c, R, old_day, old_day + timedelta(days=1)) == before_vitals
        assert queries.activity_hourly(c, R, old_day, old_day + timedelta(days=1)) == before_act
        # The fresh reading still counts from raw rows.
        assert [r["n"] for r in queries.vitals_trend(c, R, now - timedelta(hours=2), now)] == [1]
        # Pruning again changes nothing.
        assert prune(db_dsn).deleted.get("observations", 0) == 0
        assert queries.daily_summaries(c, R, old_day, old_day + timedelta(days=1)) == before_days
