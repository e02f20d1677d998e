"""``carechain bench alerts``: candidate in Kafka -> ``alert_events`` row announced by LISTEN/NOTIFY (the
source the API's SSE stream reads), p50/p99 at a fixed rate; escalation scans over 10,000 open alerts;
one organisation's open alerts query with 10,000 residents.

Runs on a private database and private topics on the configured services; the alert service runs as a
real ``carechain alerts`` process (consumer + escalation loop; the dispatcher off, nothing to send to).
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from alerts.service import AlertService
from alerts.statistics import open_alerts
from carechain.bench import percentiles, progress
from carechain.candidates import AlertCandidate, CandidateState, Evidence, Family, Severity
from carechain.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KINDS = (("fall", Severity.CRITICAL), ("inactivity", Severity.HIGH), ("dose_missed", Severity.MEDIUM))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=100.0, help="candidates per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--ceiling", type=int, default=3000, help="backlog for the throughput ceiling")
    parser.add_argument("--homes", type=int, default=500, help="seeded homes the candidates spread over")
    parser.add_argument("--open-alerts", type=int, default=10_000, help="open alerts for the escalation scans")
    parser.add_argument("--residents", type=int, default=10_000, help="residents for the open-alerts query")
    parser.add_argument("--queries", type=int, default=300, help="timed open-alerts queries")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")


def _candidate(i: int, resident: str, home: str, now: datetime) -> AlertCandidate:
    kind, sev = KINDS[i % len(KINDS)]
    return AlertCandidate(
        resident_id=resident,
        home_id=home,
        kind=kind,
        family=Family.WELFARE,
        severity=sev,
        detector=f"{kind}_rule",
        detector_version="1.0",
        incident_key=f"bench:{resident}:{kind}:{i}",
        state=CandidateState.FIRING,
        event_time=now,
        detected_at=now,
        reason=f"Bench {kind}.",
        reason_sv=f"Test {kind}.",
        evidence=Evidence(features={"i": i}, score=1.0, threshold=1.0),
    )


def _latency(args: argparse.Namespace, settings: Settings, dsn: str, homes: list[tuple[str, str]]) -> dict[str, Any]:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"cc-bench-alerts-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, settings.kafka_partitions, 1)])
    env = {
        **os.environ,
        "CARECHAIN_DATABASE_URL": dsn,
        "CARECHAIN_TOPIC_ALERTS": topic,
        "CARECHAIN_ALERTS_GROUP_ID": f"{topic}-group",
        "CARECHAIN_LOG_LEVEL": "INFO",
    }
    log_file = tempfile.NamedTemporaryFile(prefix="cc-bench-alerts-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "carechain.cli", "alerts", "--no-dispatch"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, linger_ms=0)
    listen = psycopg.connect(dsn, autocommit=True)
    listen.execute("LISTEN carechain_alert_events")
    sent: dict[str, float] = {}
    got: dict[int, float] = {}
    try:
        # Warm-up: one candidate until the service answers (consumer group joined).
        progress("alerts bench: waiting for the alert service to join its consumer group")
        t_end = time.time() + 60
        warm = replace(_candidate(0, homes[0][0], homes[0][1], datetime.now(UTC)), incident_key="warmup:1")
        producer.send(topic, key=warm.resident_id.encode(), value=warm.to_json()).get(10)
        while time.time() < t_end:
            if any(True for _ in _drain(listen, 0.5)):
                break
        else:
            tail = Path(log_file.name).read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError("the alert service did not answer within 60 s:\n" + "\n".join(tail))
        n = int(args.rate * args.duration)
        progress(f"alerts bench: {n} candidates at {args.rate:.0f}/s")
        start = time.perf_counter()
        for i in range(n):
            due = start + i / args.rate
            while True:
                now_p = time.perf_counter()
                if now_p >= due:
                    break
                for eid in _drain(listen, min(due - now_p, 0.01)):
                    got[eid] = time.perf_counter()
            r, h = homes[i % len(homes)]
            c = _candidate(i, r, h, datetime.now(UTC))
            sent[c.incident_key] = time.perf_counter()
            producer.send(topic, key=r.encode(), value=c.to_json())
        producer.flush()
        t_wait = time.time() + 30
        while time.time() < t_wait:
            for eid in _drain(listen, 0.2):
                got[eid] = time.perf_counter()
            with psycopg.connect(dsn, autocommit=True) as c2:
                row = c2.execute("SELECT count(*) FROM alerts WHERE incident_key LIKE 'bench:res-%'").fetchone()
            if row and row[0] >= n:
                for eid in _drain(listen, 0.5):
                    got[eid] = time.perf_counter()
                break
        with psycopg.connect(dsn, autocommit=True) as c2:
            keys: dict[int, str] = dict(
                c2.execute(
                    "SELECT e.id, a.incident_key FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
                    " WHERE e.type = 'proposed' AND e.id = ANY(%s)",
                    (list(got),),
                ).fetchall()
            )
        samples = [(got[eid] - sent[k]) * 1000 for eid, k in keys.items() if k in sent]
        result = {"candidates": n, "rate_per_s": args.rate, "alerts_seen": len(samples), **percentiles(samples)}
        result["lost"] = n - len(samples)
        if samples:
            ordered = sorted(samples)
            result["p90_ms"] = round(ordered[int(0.9 * (len(ordered) - 1))], 1)
            result["max_ms"] = round(ordered[-1], 1)
            result["over_200ms"] = sum(1 for x in samples if x > 200)
            if os.environ.get("CARECHAIN_BENCH_DUMP"):
                order = sorted(((sent[k], (got[eid] - sent[k]) * 1000) for eid, k in keys.items() if k in sent))
                Path(os.environ["CARECHAIN_BENCH_DUMP"]).write_text(
                    "\n".join(f"{t - order[0][0]:.3f} {ms:.1f}" for t, ms in order)
                )
        # Ceiling: a backlog produced at once, drained as fast as the service can.
        m = args.ceiling
        progress(f"alerts bench: ceiling with a backlog of {m} candidates")
        t0 = time.perf_counter()
        for i in range(m):
            r, h = homes[i % len(homes)]
            c = replace(_candidate(n + i, r, h, datetime.now(UTC)), incident_key=f"ceil:{i}")
            producer.send(topic, key=r.encode(), value=c.to_json())
        producer.flush()
        t_wait = time.time() + 120
        done = 0
        while time.time() < t_wait:
            with psycopg.connect(dsn, autocommit=True) as c2:
                row = c2.execute("SELECT count(*) FROM alerts WHERE incident_key LIKE 'ceil:%'").fetchone()
            done = int(row[0]) if row else 0
            if done >= m:
                break
            time.sleep(0.2)
        result["ceiling_events_per_s"] = round(done / (time.perf_counter() - t0), 1)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        producer.close()
        listen.close()
        admin.delete_topics([topic])
        admin.close()
        log_file.close()
        lines = Path(log_file.name).read_text(errors="replace").splitlines()
        warnings = [ln for ln in lines if " WARNING alerts" in ln or " ERROR alerts" in ln]
        if warnings:
            progress(f"alert service warnings ({len(warnings)}): " + "\n".join(warnings[:5]))
        Path(log_file.name).unlink(missing_ok=True)


def _drain(conn: psycopg.Connection[Any], timeout: float) -> list[int]:
    """Notifications that arrived within ``timeout`` (event ids)."""
    out: list[int] = []
    if timeout > 0:
        select.select([conn.fileno()], [], [], timeout)
    for n in conn.notifies(timeout=0, stop_after=None):
        out.append(int(n.payload))
    return out


def _escalation(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    """10,000 open alerts with deadlines: a scan when none is due (the every-second case), when 1 % is due,
    and when all are due at once (throughput)."""
    n = args.open_alerts
    now = datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        progress(f"alerts bench: {n} open alerts with escalation deadlines")
        conn.execute("UPDATE escalation_deadlines SET done_at = now(), outcome = 'bench: earlier phase'")
        conn.execute(
            "INSERT INTO alerts (incident_key, resident_id, home_id, kind, family, severity, status,"
            " responsible_org_id, responsible_role, opened_at, created_at)"
            " SELECT 'esc:' || g, format('res-%%s', lpad(((g %% %s) + 1)::text, 4, '0')),"
            " format('home-%%s', lpad(((g %% %s) + 1)::text, 4, '0')), 'inactivity', 'welfare', 'high', 'proposed',"
            " 'kommun-0180', 'nurse', %s, %s FROM generate_series(1, %s) g",
            (len(_HOMES_CACHE) or 1, len(_HOMES_CACHE) or 1, now, now, n),
        )
        conn.execute(
            "INSERT INTO escalation_deadlines (alert_id, step, due_at)"
            " SELECT id, 1, opened_at + interval '15 minutes' + (id % 100) * interval '1 second'"
            " FROM alerts WHERE incident_key LIKE 'esc:%'"
        )
        conn.execute("ANALYZE alerts")
        conn.execute("ANALYZE escalation_deadlines")
        svc = AlertService(conn)
        idle = []
        for _ in range(20):
            t = time.perf_counter()
            svc.escalate(now + timedelta(minutes=1))
            idle.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        one_pct = svc.escalate(now + timedelta(minutes=15, seconds=0.5))  # id % 100 == 0: 1 %
        one_pct_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        handled = svc.escalate(now + timedelta(minutes=17), limit=n)  # the rest, all due, in one scan
        all_s = time.perf_counter() - t
    return {
        "open_alerts": n,
        "scan_none_due_ms_p50": round(sorted(idle)[len(idle) // 2], 2),
        "scan_1pct_due_ms": round(one_pct_ms, 1),
        "scan_1pct_due_deadlines": one_pct,
        "scan_all_due_s": round(all_s, 2),
        "scan_all_due_deadlines": handled + one_pct,
        "deadlines_per_s": round(handled / all_s, 1) if all_s else None,
    }


_HOMES_CACHE: list[tuple[str, str]] = []


def _open_alerts_query(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    """One organisation's open alerts with ``--residents`` residents' alert history in the table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        progress(f"alerts bench: alert history for {args.residents} residents in 20 organisations")
        conn.execute(
            "INSERT INTO alerts (incident_key, resident_id, home_id, kind, family, severity, status,"
            " responsible_org_id, opened_at, created_at, resolved_at)"
            " SELECT 'hist:' || r || ':' || a, 'hr-' || r, 'hh-' || r, 'inactivity', 'welfare', 'high',"
            " CASE WHEN a = 1 AND r %% 10 = 0 THEN 'proposed' ELSE 'resolved' END, 'org-' || (r %% 20),"
            " now() - a * interval '3 days', now() - a * interval '3 days', now() - a * interval '3 days'"
            " FROM generate_series(1, %s) r, generate_series(1, 10) a",
            (args.residents,),
        )
        conn.execute("ANALYZE alerts")
        samples = []
        for i in range(args.queries):
            t = time.perf_counter()
            rows = open_alerts(conn, f"org-{i % 20}", limit=100)
            samples.append((time.perf_counter() - t) * 1000)
            assert rows is not None
        plan = conn.execute(
            "EXPLAIN SELECT * FROM alerts WHERE responsible_org_id = 'org-1' AND status IN"
            " ('proposed', 'acknowledged', 'accepted') ORDER BY created_at DESC, id DESC LIMIT 100"
        ).fetchall()
    return {
        "residents": args.residents,
        "history_rows": args.residents * 10,
        **percentiles(samples),
        "uses_index": any("alerts_open_org" in str(r[0]) for r in plan),
    }


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from carechain.db.migrate import migrate
    from carechain.db.seed import seed_demo

    name = f"cc_bench_alerts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    try:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            progress(f"alerts bench: seeding {args.homes} homes")
            seeded = seed_demo(conn, homes=args.homes)
            conn.execute(
                "INSERT INTO teams (team_id, org_id, role, name, email) VALUES"
                " ('k1', 'kommun-0180', 'nurse', 'Bench', 'k1@bench.test'),"
                " ('k2', 'kommun-0182', 'nurse', 'Bench', 'k2@bench.test')"
            )
            conn.execute(
                "INSERT INTO webhook_endpoints (org_id, url, secret) VALUES"
                " ('kommun-0180', 'http://127.0.0.1:9/', 'x'), ('kommun-0182', 'http://127.0.0.1:9/', 'x')"
            )
        homes = [(h.layout.resident_id, h.layout.home_id) for h in seeded.homes]
        _HOMES_CACHE[:] = homes
        latency = _latency(args, settings, dsn, homes)
        progress(f"  {latency}")
        escalation = _escalation(args, dsn)
        progress(f"  {escalation}")
        query = _open_alerts_query(args, dsn)
        progress(f"  {query}")
        return {
            "p50_ms": latency["p50_ms"],
            "p99_ms": latency["p99_ms"],
            "events_per_s": args.rate,
            "lost": latency["lost"],
            "ceiling_events_per_s": latency.get("ceiling_events_per_s"),
            "kafka_to_alert_event": latency,
            "escalation": escalation,
            "open_alerts_query": query,
            "targets": {"p99_ms": 200, "escalation_scan_s": 1.0, "open_alerts_p99_ms": 50},
        }
    finally:
        if not args.keep:
            with psycopg.connect(settings.database_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
