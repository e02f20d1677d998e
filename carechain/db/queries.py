"""Time-series reads for the API and the coordinators. Parameterised SQL only (psycopg).

The same functions work on TimescaleDB and on plain PostgreSQL: buckets use ``date_bin``
(in core PostgreSQL since 14, and as fast as ``time_bucket`` for fixed intervals), the
summary relations (``activity_hourly``, ``vitals_hourly``, ``daily_summary``) are continuous
aggregates on TimescaleDB and views with the same columns on plain PostgreSQL.

Row shapes match the API's first drafts in ``api/store.py`` (``observations_raw``,
``observations_bucketed``, ``activity_summary``, ``vitals_summary``), so the API can call
these instead: every function returns a list of dicts (or one dict for ``device_status``).
Alert history and response-time statistics belong to the alert service.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

from psycopg import Connection, sql
from psycopg.rows import dict_row

Row = dict[str, Any]

#: Origin of every bucket: a Monday at midnight UTC, as TimescaleDB's ``time_bucket`` uses,
#: so hourly, daily and weekly buckets line up with the continuous aggregates.
BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
VITAL_KINDS = ("heart_rate", "spo2", "temperature")
HOUR = timedelta(hours=1)


def _rows(
    conn: Connection[Any], query: sql.Composed | LiteralString, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def _check_bucket(bucket: timedelta) -> None:
    if bucket <= timedelta(0):
        raise ValueError("bucket must be a positive interval")


def timeline(
    conn: Connection[Any],
    resident_id: str,
    since: datetime,
    until: datetime,
    bucket: timedelta | None = None,
    kinds: Sequence[str] | None = None,
    limit: int = 10_000,
    after: tuple[datetime, str] | None = None,
    tz: str | None = None,
    medication: bool | None = None,
) -> list[Row]:
    """A resident's readings in ``[since, until)``, raw or bucketed by any fixed interval.

    ``kinds`` keeps only those kinds; ``medication`` True keeps only ``medication.*`` events, False
    leaves them out (the API shows sensor readings and doses apart).

    Raw (``bucket=None``): newest first, keyset-paginated by ``after=(ts, event_id)`` of the last
    row seen; rows ``event_id, ts, kind, value, value_num, value_text, device_id, room, late``
    (``value`` is the number, 1/0 for booleans, or the text).

    Bucketed: oldest first, one row per bucket and kind: ``bucket, kind, n, min, avg, max``
    (min/avg/max of numeric values; null for text kinds). With ``tz`` (e.g.
    ``"Europe/Stockholm"``) buckets follow that zone's wall clock, so a day is a local day.
    """
    where: list[sql.Composable] = [sql.SQL("resident_id = %s AND ts >= %s AND ts < %s")]
    params: list[Any] = [resident_id, since, until]
    if kinds is not None:
        where.append(sql.SQL("kind = ANY(%s)"))
        params.append(list(kinds))
    if medication is not None:
        where.append(sql.SQL("kind LIKE 'medication.%%'") if medication else sql.SQL("kind NOT LIKE 'medication.%%'"))
    if bucket is None:
        if after is not None:
            where.append(sql.SQL("(ts, event_id) < (%s, %s)"))
            params += [after[0], after[1]]
        q = sql.SQL(
            "SELECT event_id, ts, kind, value_num, value_text, device_id, room, late FROM observations"
            " WHERE {} ORDER BY ts DESC, event_id DESC LIMIT %s"
        ).format(sql.SQL(" AND ").join(where))
        rows = _rows(conn, q, [*params, limit])
        for r in rows:
            r["value"] = r["value_num"] if r["value_num"] is not None else r["value_text"]
        return rows
    _check_bucket(bucket)
    if tz is None:
        bin_expr = sql.SQL("date_bin(%s, ts, %s)")
        bin_params: list[Any] = [bucket, BUCKET_ORIGIN]
    else:
        # Bin the local wall-clock time, then turn the bucket start back into an instant.
        bin_expr = sql.SQL("(date_bin(%s, ts AT TIME ZONE %s, timestamp '2000-01-03') AT TIME ZONE %s)")
        bin_params = [bucket, tz, tz]
    q = sql.SQL(
        "SELECT {} AS bucket, kind, count(*)::int AS n, min(value_num) AS min, avg(value_num) AS avg,"
        " max(value_num) AS max FROM observations WHERE {} GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %s"
    ).format(bin_expr, sql.SQL(" AND ").join(where))
    return _rows(conn, q, [*bin_params, *params, limit])


def activity_hourly(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    """Motion events per hour and room, hours starting in ``[since, until)``: ``hour, room, events``."""
    if _timescale(conn):
        return _rows(
            conn,
            "SELECT bucket AS hour, coalesce(room, '') AS room, motion_events::int AS events FROM activity_hourly"
            " WHERE resident_id = %s AND bucket >= %s AND bucket < %s ORDER BY 1, 2",
            (resident_id, since, until),
        )
    # Plain PostgreSQL: the same as the activity_hourly view, but with the time range on ``ts``
    # (the view can only filter on the computed bucket, which no index serves).
    return _rows(
        conn,
        "WITH h AS (SELECT horizon FROM summary_horizon)"
        " SELECT bucket AS hour, coalesce(room, '') AS room, motion_events::int AS events FROM activity_hourly_rollup"
        "  WHERE resident_id = %(r)s AND bucket >= %(since)s AND bucket < least(%(until)s, (SELECT horizon FROM h))"
        " UNION ALL"
        " SELECT date_bin('1 hour', ts, %(origin)s), coalesce(room, ''), count(*)::int FROM observations"
        "  WHERE resident_id = %(r)s AND kind = 'motion' AND value_num = 1 AND ts >= (SELECT horizon FROM h)"
        "    AND ts >= date_bin('1 hour', %(since)s, %(origin)s) AND ts < %(until)s + interval '1 hour'"
        "    AND date_bin('1 hour', ts, %(origin)s) >= %(since)s AND date_bin('1 hour', ts, %(origin)s) < %(until)s"
        "  GROUP BY 1, 2"
        " ORDER BY 1, 2",
        {"r": resident_id, "since": since, "until": until, "origin": BUCKET_ORIGIN},
    )


def vitals_trend(
    conn: Connection[Any],
    resident_id: str,
    since: datetime,
    until: datetime,
    bucket: timedelta = HOUR,
    kinds: Sequence[str] = VITAL_KINDS,
) -> list[Row]:
    """Vital signs' min/avg/max per bucket and kind: ``bucket, kind, min, avg, max, n``, oldest first.

    Whole-hour buckets roll up hourly summaries: the continuous aggregate on TimescaleDB; on plain
    PostgreSQL the rollup table below the prune horizon and raw readings above it. So they reach
    back as far as the summaries are kept (2 years by default). Other intervals read the raw
    observations (kept 30 days by default). Both give the same numbers where both exist.
    """
    _check_bucket(bucket)
    if bucket % HOUR == timedelta(0) and _timescale(conn):
        return _rows(
            conn,
            "SELECT date_bin(%s, bucket, %s) AS bucket, kind, min(min_value) AS min,"
            " sum(avg_value * n) / sum(n) AS avg, max(max_value) AS max, sum(n)::int AS n"
            " FROM vitals_hourly WHERE resident_id = %s AND bucket >= %s AND bucket < %s AND kind = ANY(%s)"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            (bucket, BUCKET_ORIGIN, resident_id, since, until, list(kinds)),
        )
    if bucket % HOUR == timedelta(0):
        # Plain PostgreSQL: hours rolled up before a prune (below the horizon) from the rollup
        # table, the rest from raw readings over the (resident_id, ts) index.
        return _rows(
            conn,
            "WITH h AS (SELECT horizon FROM summary_horizon),"
            " hourly AS ("
            "  SELECT bucket, kind, min_value, avg_value, max_value, n FROM vitals_hourly_rollup"
            "   WHERE resident_id = %s AND bucket >= %s AND bucket < least(%s, (SELECT horizon FROM h))"
            "     AND kind = ANY(%s)"
            "  UNION ALL"
            "  SELECT date_bin('1 hour', ts, %s), kind, min(value_num), avg(value_num), max(value_num), count(*)"
            "   FROM observations WHERE resident_id = %s AND ts >= greatest(%s, (SELECT horizon FROM h))"
            "     AND ts < %s AND kind = ANY(%s) AND value_num IS NOT NULL GROUP BY 1, 2)"
            " SELECT date_bin(%s, bucket, %s) AS bucket, kind, min(min_value) AS min,"
            " sum(avg_value * n) / sum(n) AS avg, max(max_value) AS max, sum(n)::int AS n"
            " FROM hourly GROUP BY 1, 2 ORDER BY 1, 2",
            (
                resident_id,
                since,
                until,
                list(kinds),
                BUCKET_ORIGIN,
                resident_id,
                since,
                until,
                list(kinds),
                bucket,
                BUCKET_ORIGIN,
            ),
        )
    return _rows(
        conn,
        "SELECT date_bin(%s, ts, %s) AS bucket, kind, min(value_num) AS min, avg(value_num) AS avg,"
        " max(value_num) AS max, count(*)::int AS n FROM observations"
        " WHERE resident_id = %s AND ts >= %s AND ts < %s AND kind = ANY(%s) AND value_num IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        (bucket, BUCKET_ORIGIN, resident_id, since, until, list(kinds)),
    )


def daily_summaries(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    """One row per UTC day starting in ``[since, until)``: ``day, motion_events, bathroom_events,
    door_openings, doses_taken, doses_missed, heart_rate_avg``."""
    columns = (
        "day, motion_events::int AS motion_events, bathroom_events::int AS bathroom_events,"
        " door_openings::int AS door_openings, doses_taken::int AS doses_taken, doses_missed::int AS doses_missed,"
        " heart_rate_avg"
    )
    if _timescale(conn):
        return _rows(
            conn,
            "SELECT " + columns + " FROM daily_summary WHERE resident_id = %s AND day >= %s AND day < %s ORDER BY day",
            (resident_id, since, until),
        )
    # Plain PostgreSQL: as the daily_summary view, with the time range on ``ts`` (see activity_hourly).
    return _rows(
        conn,
        "WITH h AS (SELECT horizon FROM summary_horizon), d AS ("
        " SELECT day, motion_events, bathroom_events, door_openings, doses_taken, doses_missed, heart_rate_avg"
        "   FROM daily_summary_rollup"
        "  WHERE resident_id = %(r)s AND day >= %(since)s AND day < least(%(until)s, (SELECT horizon FROM h))"
        " UNION ALL"
        " SELECT date_bin('1 day', ts, %(origin)s),"
        "        count(*) FILTER (WHERE kind = 'motion' AND value_num = 1),"
        "        count(*) FILTER (WHERE kind = 'motion' AND value_num = 1 AND room = 'bathroom'),"
        "        count(*) FILTER (WHERE kind = 'door' AND value_text = 'open'),"
        "        count(*) FILTER (WHERE kind = 'medication.dose_taken'),"
        "        count(*) FILTER (WHERE kind = 'medication.dose_missed'),"
        "        avg(value_num) FILTER (WHERE kind = 'heart_rate')"
        "   FROM observations"
        "  WHERE resident_id = %(r)s AND ts >= (SELECT horizon FROM h)"
        "    AND ts >= date_bin('1 day', %(since)s, %(origin)s) AND ts < %(until)s + interval '1 day'"
        "    AND date_bin('1 day', ts, %(origin)s) >= %(since)s AND date_bin('1 day', ts, %(origin)s) < %(until)s"
        "  GROUP BY 1)"
        " SELECT " + columns + " FROM d ORDER BY day",
        {"r": resident_id, "since": since, "until": until, "origin": BUCKET_ORIGIN},
    )


def device_status(conn: Connection[Any], home_id: str, lookback: timedelta = timedelta(days=2)) -> Row:
    """A home's gateways (last seen, revoked) and devices with their last reading and battery level.

    ``last_reading_at`` and ``battery`` look back ``lookback`` only (null = silent that long), so
    the query stays bounded for a device that died weeks ago.
    """
    gateways = _rows(
        conn,
        "SELECT gateway_id, created_at, revoked_at, last_seen_at FROM gateways WHERE home_id = %s ORDER BY gateway_id",
        (home_id,),
    )
    devices = _rows(
        conn,
        # A device without its own resident belongs to the home's resident (as in device_registry);
        # the resident id leads the observations index, so each look-up is one index probe.
        "SELECT d.device_id, d.gateway_id, d.device_kind AS kind, d.room, d.resident_id, d.created_at, d.removed_at,"
        " last.ts AS last_reading_at, batt.value_num AS battery"
        " FROM devices d"
        " LEFT JOIN LATERAL (SELECT coalesce(d.resident_id, (SELECT r.resident_id FROM residents r"
        "   WHERE r.home_id = d.home_id AND r.active ORDER BY r.created_at, r.resident_id LIMIT 1)) AS rid) who ON true"
        " LEFT JOIN LATERAL (SELECT o.ts FROM observations o WHERE o.resident_id = who.rid"
        "   AND o.device_id = d.device_id AND o.ts > now() - %s ORDER BY o.ts DESC LIMIT 1) last ON true"
        " LEFT JOIN LATERAL (SELECT o.value_num FROM observations o WHERE o.resident_id = who.rid"
        "   AND o.device_id = d.device_id AND o.kind = 'battery' AND o.ts > now() - %s"
        "   ORDER BY o.ts DESC LIMIT 1) batt ON true"
        " WHERE d.home_id = %s ORDER BY d.device_id",
        (lookback, lookback, home_id),
    )
    return {"home_id": home_id, "gateways": gateways, "devices": devices}


def storage_mode(conn: Connection[Any]) -> str:
    """``"timescaledb"`` or ``"postgresql"``, as the migration chose."""
    return "timescaledb" if _timescale(conn) else "postgresql"


_MODE: weakref.WeakKeyDictionary[Connection[Any], bool] = weakref.WeakKeyDictionary()


def _timescale(conn: Connection[Any]) -> bool:
    # Asked once per connection: the mode changes only with a migration.
    known = _MODE.get(conn)
    if known is None:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()
        known = _MODE[conn] = bool(row and row[0])
    return known
