"""A resident's bucketed timeline (count, min, avg, max per bucket and kind), with closed buckets cached.

The 30-day hourly chart aggregates ~8,600 raw readings per request (about 10 ms of PostgreSQL CPU); nearly all
of them lie in hours that closed long ago. So each process keeps, per (resident, interval, zone, kind), the
buckets of one span of closed time, computed by the same SQL as storage's ``queries.timeline``; a request reads
only the edges (the partial first bucket, the span after the cached one up to now) from PostgreSQL and takes
the middle from the cache. The result is the same rows the full query gives, except that a reading arriving
more than :data:`LATE_MARGIN` after its bucket closed (a gateway's backfill) appears within :data:`TTL_S`.

Only for intervals that divide an hour and zones whose UTC offset is a multiple of the interval, and never
with a daylight-saving change near a split point: there the local wall-clock buckets are UTC-aligned, so a
split at a bucket boundary splits no bucket. Anything else is one full query, as before.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import Connection, sql
from psycopg.rows import dict_row
from pydantic_core import to_json

#: Cached buckets are recomputed after this long (a late reading for a closed bucket shows within it).
TTL_S = 60.0
#: Buckets that closed less than this before the computation are not cached (readings still arriving).
LATE_MARGIN = timedelta(minutes=5)
#: Entries per process (each about 1,500 rows for 30 days hourly).
MAX_ENTRIES = 128
#: Around a split point the zone's offset must not change within this (no DST change splits a bucket).
DST_GUARD = timedelta(hours=3)
HOUR = timedelta(hours=1)
LIMIT = 100_000

Row = dict[str, Any]
Key = tuple[str, timedelta, str, str | None]


@dataclass(frozen=True, slots=True)
class _Span:
    start: datetime
    end: datetime
    rows: tuple[Row, ...]
    computed_at: float
    buckets: list[datetime]  # the rows' bucket starts, ascending (for bisect)
    json: list[bytes]  # each row as JSON


def _where(kind: str | None) -> sql.Composable:
    return sql.SQL(" AND kind = %s") if kind is not None else sql.SQL("")


_BIN = sql.SQL("(date_bin(%s, ts AT TIME ZONE %s, timestamp '2000-01-03') AT TIME ZONE %s)")


def _query(
    conn: Connection[Any],
    resident_id: str,
    ranges: list[tuple[datetime, datetime]],
    step: timedelta,
    kind: str | None,
    tz: str,
) -> list[Row]:
    """Rows per bucket and kind for readings in the union of these [from, to) ranges (storage's bucketing)."""
    cond = sql.SQL(" OR ").join(sql.SQL("(ts >= %s AND ts < %s)") for _ in ranges)
    q = sql.SQL(
        "SELECT {} AS bucket, kind, count(*)::int AS n, min(value_num) AS min, avg(value_num) AS avg,"
        " max(value_num) AS max FROM observations WHERE resident_id = %s AND ({}){} GROUP BY 1, 2 ORDER BY 1, 2"
        " LIMIT %s"
    ).format(_BIN, cond, _where(kind))
    params: list[Any] = [step, tz, tz, resident_id]
    for a, b in ranges:
        params += [a, b]
    if kind is not None:
        params.append(kind)
    params.append(LIMIT)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(q, params)
        return list(cur.fetchall())


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 3, tzinfo=UTC)
    return epoch + ((t - epoch) // step) * step


def _ceil(t: datetime, step: timedelta) -> datetime:
    f = _floor(t, step)
    return f if f == t else f + step


class TimelineCache:
    """Closed buckets per (resident, interval, zone, kind), per process; thread-safe."""

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._spans: OrderedDict[Key, _Span] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _splittable(self, step: timedelta, tz: str, points: list[datetime]) -> bool:
        """May [from, to) be split at these bucket-aligned instants without splitting a local bucket?"""
        if step > HOUR or HOUR % step:
            return False
        zone = ZoneInfo(tz)
        for p in points:
            offsets = {(p + d).astimezone(zone).utcoffset() for d in (-DST_GUARD, timedelta(0), DST_GUARD)}
            if len(offsets) != 1:
                return False
            (offset,) = offsets
            if offset is None or offset % step:
                return False
        return True

    def _get(self, key: Key) -> _Span | None:
        with self._lock:
            span = self._spans.get(key)
            if span is None:
                return None
            if time.monotonic() - span.computed_at > self.ttl_s:
                del self._spans[key]
                return None
            self._spans.move_to_end(key)
            return span

    def _put(self, key: Key, span: _Span) -> None:
        with self._lock:
            self._spans[key] = span
            self._spans.move_to_end(key)
            while len(self._spans) > self.max_entries:
                self._spans.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def bucketed(
        self,
        conn: Connection[Any],
        resident_id: str,
        since: datetime,
        until: datetime,
        step: timedelta,
        kind: str | None,
        tz: str,
        now: datetime | None = None,
    ) -> list[Row]:
        """Readings in [since, until) per bucket and kind, oldest first: ``bucket, kind, n, min, avg, max``."""
        before, middle, after = self._parts(conn, resident_id, since, until, step, kind, tz, now)
        if middle is None:
            return before
        start, end = middle[1], middle[2]
        rows = [r for r in middle[0].rows if start <= r["bucket"] < end]
        return [*before, *rows, *after]

    def bucketed_json(
        self,
        conn: Connection[Any],
        resident_id: str,
        since: datetime,
        until: datetime,
        step: timedelta,
        kind: str | None,
        tz: str,
        now: datetime | None = None,
    ) -> bytes:
        """:meth:`bucketed` as a JSON array (the cached rows are serialised once, when cached)."""
        before, middle, after = self._parts(conn, resident_id, since, until, step, kind, tz, now)
        if middle is None:
            return to_json(before)
        span, start, end = middle
        i, j = bisect_left(span.buckets, start), bisect_left(span.buckets, end)
        parts = [to_json(r) for r in before]
        if i < j:
            parts.append(b",".join(span.json[i:j]))
        parts += [to_json(r) for r in after]
        return b"[" + b",".join(parts) + b"]"

    def _parts(
        self,
        conn: Connection[Any],
        resident_id: str,
        since: datetime,
        until: datetime,
        step: timedelta,
        kind: str | None,
        tz: str,
        now: datetime | None,
    ) -> tuple[list[Row], tuple[_Span, datetime, datetime] | None, list[Row]]:
        """(rows before the cached middle, (span, start, end) of the middle or None, rows after it)."""
        now = now or datetime.now(UTC)
        key: Key = (resident_id, step, tz, kind)
        first, last = _ceil(since, step), _floor(min(until, now - LATE_MARGIN), step)
        span = self._get(key)
        if span is not None:
            start, end = max(first, span.start), min(last, span.end)
            if start < end and self._splittable(step, tz, [start, end]):
                edges = [(a, b) for a, b in ((since, start), (end, until)) if a < b]
                fresh = _query(conn, resident_id, edges, step, kind, tz) if edges else []
                before = [r for r in fresh if r["bucket"] < start]
                after = [r for r in fresh if r["bucket"] >= end]
                if len(before) + len(after) == len(fresh) and len(fresh) + len(span.rows) <= LIMIT:
                    self.hits += 1
                    return before, (span, start, end), after
        self.misses += 1
        rows = _query(conn, resident_id, [(since, until)], step, kind, tz)
        if first < last and len(rows) < LIMIT and self._splittable(step, tz, [first, last]):
            cached = tuple(r for r in rows if first <= r["bucket"] < last)
            self._put(
                key,
                _Span(
                    first,
                    last,
                    cached,
                    time.monotonic(),
                    [r["bucket"] for r in cached],
                    [to_json(r) for r in cached],
                ),
            )
        return rows, None, []
