"""The timeline's closed-bucket cache gives exactly what storage's bucketed query gives (real PostgreSQL),
across a daylight-saving change, for every interval, and recomputes when asked for another window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pydantic_core import to_json

from api.timeline import TimelineCache
from carechain.db import queries
from tests.api import seed

TZ = "Europe/Stockholm"
# Summer time ends 2026-10-25 01:00 UTC (03:00 CEST -> 02:00 CET): the local hour 02:00 happens twice.
FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def resident(db: psycopg.Connection[Any]) -> str:
    rid = f"rt-{uuid.uuid4().hex[:8]}"
    start = FALL_BACK - timedelta(days=2)
    seed.partitions(db, start, start + timedelta(days=5))
    with (
        db.cursor() as cur,
        cur.copy(
            "COPY observations (event_id, resident_id, home_id, device_id, kind, value_num, ts, received_at, seq)"
            " FROM STDIN"
        ) as cp,
    ):
        for i in range(4 * 24 * 7):  # every 7 minutes for four days
            ts = start + timedelta(minutes=7 * i)
            kind = "heart_rate" if i % 3 else "motion"
            cp.write_row((f"{rid}-{i}", rid, "h", "d", kind, float(60 + i % 17), ts, ts, i))
    return rid


def _full(db: psycopg.Connection[Any], rid: str, lo: datetime, hi: datetime, step: timedelta, kind: str | None) -> Any:
    kinds = [kind] if kind else None
    return queries.timeline(db, rid, lo, hi, bucket=step, kinds=kinds, limit=100_000, tz=TZ)


@pytest.mark.parametrize("step", [timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)])
@pytest.mark.parametrize("kind", [None, "heart_rate"])
def test_cached_rows_equal_the_full_query(
    db: psycopg.Connection[Any], resident: str, step: timedelta, kind: str | None
) -> None:
    cache = TimelineCache()
    now = FALL_BACK + timedelta(days=2)
    lo = FALL_BACK - timedelta(days=1, minutes=17)
    for hi in (now, now + timedelta(minutes=23), now + timedelta(hours=2, minutes=1)):
        got = cache.bucketed(db, resident, lo, hi, step, kind, TZ, now=hi)
        full = _full(db, resident, lo, hi, step, kind)
        assert got == full
        assert cache.bucketed_json(db, resident, lo, hi, step, kind, TZ, now=hi) == to_json(full)  # the same bytes
    # A later window inside the cached span, one that crosses the fall-back night at its start, one outside.
    for lo2, hi2 in (
        (lo + timedelta(hours=5, minutes=3), now),
        (FALL_BACK - timedelta(minutes=30), now),
        (lo - timedelta(days=1), lo + timedelta(hours=1)),
    ):
        assert cache.bucketed(db, resident, lo2, hi2, step, kind, TZ, now=now) == _full(
            db, resident, lo2, hi2, step, kind
        )
    if step <= timedelta(hours=1):
        assert cache.hits >= 3  # the middle came from the cache
    else:
        assert cache.hits == 0  # a local day is not UTC-aligned: always the full query


def test_a_late_reading_shows_once_the_span_expires(db: psycopg.Connection[Any], resident: str) -> None:
    cache = TimelineCache(ttl_s=0.0)
    lo, hi = FALL_BACK + timedelta(hours=3), FALL_BACK + timedelta(hours=20)
    step = timedelta(hours=1)
    cache.bucketed(db, resident, lo, hi, step, None, TZ, now=hi)
    late_ts = FALL_BACK + timedelta(hours=6, minutes=1)
    db.execute(
        "INSERT INTO observations (event_id, resident_id, home_id, device_id, kind, value_num, ts, received_at, seq)"
        " VALUES (%s, %s, 'h', 'd', 'heart_rate', 200, %s, now(), 0)",
        (f"{resident}-late", resident, late_ts),
    )
    try:
        got = cache.bucketed(db, resident, lo, hi, step, None, TZ, now=hi)
        assert got == _full(db, resident, lo, hi, step, None)
        assert any(r["max"] == 200 for r in got)
    finally:
        db.execute("DELETE FROM observations WHERE event_id = %s", (f"{resident}-late",))
