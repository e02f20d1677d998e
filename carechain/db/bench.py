"""``carechain bench storage``: ingest rate with every index, and read latency on a loaded database.

Runs in a private database (``cc_bench_storage_<random>``, dropped afterwards unless
``--keep``) on the harness's PostgreSQL:

1. **Load**: ``residents`` x ``days`` of readings (one every ``--interval-min`` minutes per
   resident, kinds in turn) written through :class:`~carechain.db.writer.EventWriter`, so the
   load itself is a long ingest measurement.
2. **Ingest**: ``--ingest-rows`` fresh readings through the writer (binary COPY into staging,
   ``INSERT ... ON CONFLICT DO NOTHING`` into ``observations`` with all its indexes), then a raw
   binary COPY of the same rows into an unindexed copy of the table: rows/s and their ratio.
3. **Reads**: p50/p99 of "one resident's last 30 days, hourly" (``queries.timeline`` with a
   1-hour bucket, and ``queries.vitals_trend``) for random residents, and of "one organisation's
   open alerts" on the alert service's ``alerts`` table (migration 0200) with its indexes, or on a
   provisional table when that migration is absent (said so in the output).
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from carechain.bench import percentiles, progress
from carechain.db import queries
from carechain.db.migrate import migrate
from carechain.db.writer import EventWriter, observation_row
from carechain.events import Event, make_event_id
from carechain.settings import Settings

_KINDS: list[tuple[str, str]] = [
    ("heart_rate", "bedroom"),
    ("motion", "kitchen"),
    ("spo2", "bedroom"),
    ("motion", "bathroom"),
    ("temperature", "bedroom"),
    ("door", "hall"),
]
_ORGS = 10  # kommuner; residents are spread over them, two regions
# Heap and indexes of observations, all its partitions (plain PostgreSQL partitions it by day).
_SIZE = "SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('observations')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval-min", type=float, default=60.0, help="minutes between one resident's readings")
    parser.add_argument("--ingest-rows", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=20_000, help="rows per writer call")
    parser.add_argument("--writers", type=int, default=1, help="concurrent writer connections in the ingest phase")
    parser.add_argument("--queries", type=int, default=300, help="timed queries per kind")
    parser.add_argument("--quick", action="store_true", help="1,000 residents x 7 days, 50,000 ingest rows")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--reuse",
        metavar="DATABASE",
        help="use a database kept by an earlier --keep run (same --residents/--days): migrate it, take out the"
        " fresh rows the earlier run ingested, skip the load; kept afterwards",
    )


def _value(kind: str, i: int) -> bool | float | str:
    if kind == "heart_rate":
        return 55.0 + (i * 7) % 40
    if kind == "spo2":
        return 90.0 + i % 9
    if kind == "temperature":
        return 36.0 + (i % 15) / 10
    if kind == "door":
        return "open" if i % 2 else "closed"
    return i % 5 != 0


def _events(residents: int, start: datetime, end: datetime, step: timedelta, seed: int) -> Iterator[Event]:
    """Readings of every resident from ``start`` to ``end``, time-major (as a live stream arrives)."""
    rng = random.Random(seed)
    offsets = [timedelta(seconds=rng.uniform(0, step.total_seconds())) for _ in range(residents)]
    t = start
    n = 0
    while t < end:
        for r in range(residents):
            ts = t + offsets[r]
            kind, room = _KINDS[n % len(_KINDS)]
            device = f"dev-{r:05d}-{kind}-{room}"
            seq = n
            n += 1
            yield Event(
                event_id=make_event_id(device, seq, ts),
                resident_id=f"res-{r:05d}",
                home_id=f"home-{r:05d}",
                gateway_id=f"gw-{r:05d}",
                device_id=device,
                room=room,
                kind=kind,
                value=_value(kind, n),
                ts=ts,
                seq=seq,
                received_at=ts,
            )
        t += step


def _chunks(it: Iterator[Event], size: int) -> Iterator[list[Event]]:
    batch: list[Event] = []
    for e in it:
        batch.append(e)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _registry(conn: psycopg.Connection, residents: int) -> None:
    """Organisations, homes and residents for the organisation query (set-based, fast)."""
    conn.execute(
        "INSERT INTO organisations (org_id, name, kind)"
        " SELECT 'k-' || g, 'Kommun ' || g, 'kommun' FROM generate_series(0, %s - 1) g"
        " UNION ALL SELECT 'r-' || g, 'Region ' || g, 'region' FROM generate_series(0, 1) g",
        (_ORGS,),
    )
    conn.execute(
        "INSERT INTO homes (home_id, kommun_org_id, region_org_id)"
        " SELECT format('home-%%s', lpad(g::text, 5, '0')), 'k-' || (g %% %s), 'r-' || (g %% 2)"
        " FROM generate_series(0, %s - 1) g",
        (_ORGS, residents),
    )
    conn.execute(
        "INSERT INTO residents (resident_id, home_id, kommun_org_id, region_org_id)"
        " SELECT format('res-%%s', lpad(g::text, 5, '0')), format('home-%%s', lpad(g::text, 5, '0')),"
        " 'k-' || (g %% %s), 'r-' || (g %% 2) FROM generate_series(0, %s - 1) g",
        (_ORGS, residents),
    )


_OPEN = "('proposed', 'acknowledged', 'accepted')"  # alert statuses that are still open (0200_alerts.sql)


def _alerts(conn: psycopg.Connection, residents: int, days: int) -> str:
    """Alerts over the period (about one per resident a week, 3 % still open); which table was used."""
    exists = conn.execute("SELECT to_regclass('alerts') IS NOT NULL").fetchone()
    if exists and exists[0]:
        source = "alerts table of the alert service's migration 0200 (its indexes, incl. the partial alerts_open_org)"
    else:
        source = (
            "PROVISIONAL: no alerts migration (0200+); a minimal alerts table with a partial index on"
            " (responsible_org_id, created_at) for open alerts"
        )
        conn.execute(
            "CREATE TABLE alerts (id bigserial PRIMARY KEY, incident_key text, resident_id text NOT NULL,"
            " home_id text, kind text NOT NULL, family text NOT NULL, severity text NOT NULL, status text NOT NULL,"
            " responsible_org_id text, created_at timestamptz NOT NULL DEFAULT now(), resolved_at timestamptz)"
        )
        conn.execute(f"CREATE INDEX ON alerts (responsible_org_id, created_at DESC, id DESC) WHERE status IN {_OPEN}")
    conn.execute(
        "INSERT INTO alerts (incident_key, resident_id, home_id, kind, family, severity, status,"
        " responsible_org_id, created_at, resolved_at)"
        " SELECT 'bench:' || r || ':' || a, format('res-%%s', lpad(r::text, 5, '0')),"
        " format('home-%%s', lpad(r::text, 5, '0')), 'inactivity', 'rule', 'high', s.status,"
        " 'k-' || (r %% %s), s.created_at, CASE WHEN s.status = 'resolved' THEN s.created_at + interval '20 min' END"
        " FROM generate_series(0, %s - 1) r, generate_series(1, greatest(1, %s / 7)) a,"
        " LATERAL (SELECT CASE WHEN random() < 0.03 THEN 'proposed' ELSE 'resolved' END AS status,"
        "         now() - random() * make_interval(days => %s) AS created_at OFFSET 0 * r * a) s",
        (_ORGS, residents, days, days),
    )
    return source


def _open_alerts(conn: psycopg.Connection, org_id: str) -> list[Any]:
    return conn.execute(
        "SELECT id, resident_id, kind, severity, status, created_at FROM alerts"
        f" WHERE responsible_org_id = %s AND status IN {_OPEN}"
        " ORDER BY created_at DESC, id DESC LIMIT 200",
        (org_id,),
    ).fetchall()


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _load(
    args: argparse.Namespace, dsn: str, start: datetime, now: datetime, step: timedelta, result: dict[str, Any]
) -> None:
    """Registry, alerts, and the history through the writer."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        _registry(conn, args.residents)
        result["alerts_source"] = _alerts(conn, args.residents, args.days)
    expected = args.residents * int(timedelta(days=args.days) / step)
    progress(f"storage bench: loading ~{expected:,} readings ({args.residents} residents x {args.days} days)")
    loaded = 0
    load_s = 0.0  # time in the writer only, not in generating the events
    with EventWriter(dsn, pool_size=1) as writer:
        for batch in _chunks(_events(args.residents, start, now - step, step, seed=1), args.batch):
            t0 = time.perf_counter()
            loaded += writer.write_events(batch)
            load_s += time.perf_counter() - t0
            if loaded % (args.batch * 25) < args.batch:
                progress(f"  loaded {loaded:,} rows ({loaded / load_s:,.0f} rows/s in the writer)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE observations")
        conn.execute("ANALYZE alerts")
        size = conn.execute(_SIZE).fetchone()
    result["load"] = {
        "residents": args.residents,
        "days": args.days,
        "interval_min": args.interval_min,
        "rows_loaded": loaded,
        "writer_rows_per_s": round(loaded / load_s),
        "seconds": round(load_s, 1),
        "observations_bytes_with_indexes": size[0] if size else None,
    }


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if args.quick:
        args.residents, args.days, args.ingest_rows = 1_000, 7, 50_000
    reuse = getattr(args, "reuse", None)
    name = reuse or f"cc_bench_storage_{uuid.uuid4().hex[:8]}"
    if not reuse:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    result: dict[str, Any] = {"database": name, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        t_mig = time.perf_counter()
        mig = migrate(dsn)
        result["mode"] = mig.mode
        result["migrations_applied"] = {"files": mig.applied, "seconds": round(time.perf_counter() - t_mig, 1)}
        now = datetime.now(UTC).replace(microsecond=0)
        step = timedelta(minutes=args.interval_min)
        start = now - timedelta(days=args.days)
        if reuse:
            with psycopg.connect(dsn, autocommit=True) as conn:
                # Back to "history loaded": the fresh rows an earlier run ingested go, so every run
                # writes into the same state (not into a day partition grown by each run).
                if conn.execute("SELECT to_regclass('bench_fresh') IS NOT NULL").fetchone() == (True,):
                    conn.execute(
                        "DELETE FROM observations o USING bench_fresh f"
                        " WHERE o.resident_id = f.resident_id AND o.ts = f.ts AND o.event_id = f.event_id"
                    )
                    conn.execute("DROP TABLE bench_fresh")
                    conn.execute("VACUUM ANALYZE observations")
                n = conn.execute("SELECT count(*) FROM observations").fetchone()
                size = conn.execute(_SIZE).fetchone()
                if mig.applied:
                    conn.execute("VACUUM ANALYZE observations")
            result["load"] = {
                "reused": name,
                "residents": args.residents,
                "days": args.days,
                "rows_in_observations": n[0] if n else None,
                "observations_bytes_with_indexes": size[0] if size else None,
            }
        else:
            _load(args, dsn, start, now, step, result)

        # 2. Ingest: fresh rows through the writer vs a raw COPY of the same rows, no indexes.
        progress(f"storage bench: ingest {args.ingest_rows:,} rows through the writer and as a raw COPY")
        # The newest readings, inside the last interval (as a live stream writes them).
        fresh_step = max(step * args.residents / max(args.ingest_rows, 1), timedelta(milliseconds=1))
        fresh: list[Event] = []
        for e in _events(args.residents, now - step, now + step, fresh_step, seed=2):
            fresh.append(e)
            if len(fresh) >= args.ingest_rows:
                break
        batches = [fresh[i : i + args.batch] for i in range(0, len(fresh), args.batch)]
        with EventWriter(dsn, pool_size=args.writers) as writer:
            t0 = time.perf_counter()
            # Several writers as several stream workers would (one pooled connection each).
            with ThreadPoolExecutor(max_workers=args.writers) as pool:
                inserted = sum(pool.map(writer.write_events, batches))
            writer_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            replayed = writer.write_events(fresh[: args.batch])
            replay_s = time.perf_counter() - t1
        rows = [observation_row(e, False) for e in fresh]
        if args.keep or reuse:  # remember them, for the next --reuse to take them out again
            with psycopg.connect(dsn) as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS bench_fresh (resident_id text, ts timestamptz, event_id text)")
                with cur.copy("COPY bench_fresh (resident_id, ts, event_id) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((row[1], row[8], row[0]))
        with psycopg.connect(dsn) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_raw")
            conn.execute("CREATE TABLE bench_raw (LIKE observations INCLUDING DEFAULTS)")
            conn.commit()
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                for i in range(0, len(rows), args.batch):
                    with cur.copy(
                        "COPY bench_raw (event_id, resident_id, home_id, device_id, room, kind, value_num,"
                        " value_text, ts, received_at, seq, late) FROM STDIN (FORMAT BINARY)"
                    ) as copy:
                        copy.set_types(["text"] * 6 + ["float8", "text", "timestamptz", "timestamptz", "int8", "bool"])
                        for row in rows[i : i + args.batch]:
                            copy.write_row(row)
                    conn.commit()
            raw_s = time.perf_counter() - t0
            conn.execute("DROP TABLE bench_raw")
        writer_rate = len(fresh) / writer_s
        raw_rate = len(fresh) / raw_s
        result["ingest"] = {
            "rows": len(fresh),
            "inserted": inserted,
            "batch": args.batch,
            "writers": args.writers,
            "writer_rows_per_s": round(writer_rate),
            "raw_copy_unindexed_rows_per_s": round(raw_rate),
            "ratio_writer_to_raw": round(writer_rate / raw_rate, 3),
            "replayed_batch_rows_added": replayed,
            "replay_rows_per_s": round(min(args.batch, len(fresh)) / replay_s) if replay_s > 0 else None,
            "target_rows_per_s": 100_000,
        }
        result["events_per_s"] = round(writer_rate)
        result["load_average_after_ingest"] = [round(x, 2) for x in os.getloadavg()]

        # 3. Reads.
        progress(f"storage bench: {args.queries} timed queries per kind")
        rng = random.Random(3)
        since = now - timedelta(days=30)
        with psycopg.connect(dsn, autocommit=True) as conn:

            def timeline() -> None:
                r = f"res-{rng.randrange(args.residents):05d}"
                queries.timeline(conn, r, since, now, bucket=timedelta(hours=1))

            def vitals() -> None:
                r = f"res-{rng.randrange(args.residents):05d}"
                queries.vitals_trend(conn, r, since, now, timedelta(hours=1))

            def open_alerts() -> None:
                _open_alerts(conn, f"k-{rng.randrange(_ORGS)}")

            for fn in (timeline, vitals, open_alerts):
                _timed(fn, 20)  # warm-up: plans, caches
            result["timeline_30d_hourly"] = percentiles(_timed(timeline, args.queries))
            result["vitals_trend_30d_hourly"] = percentiles(_timed(vitals, args.queries))
            result["org_open_alerts"] = percentiles(_timed(open_alerts, args.queries))
            n_open = conn.execute(f"SELECT count(*) FROM alerts WHERE status IN {_OPEN}").fetchone()
            result["org_open_alerts"]["open_alerts_total"] = n_open[0] if n_open else None
        result["p50_ms"] = result["timeline_30d_hourly"]["p50_ms"]
        result["p99_ms"] = result["timeline_30d_hourly"]["p99_ms"]
        result["target_p99_ms"] = 50
        return result
    finally:
        if not args.keep and not reuse:
            with psycopg.connect(settings.database_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
