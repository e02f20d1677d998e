"""The alert service as a process, on real Kafka and PostgreSQL, with a real SMTP server (aiosmtpd) and a
real HTTP webhook receiver: a burst of duplicates is one alert; a silenced resident's alert is recorded and
not notified; escalation fires at the right time and not before; kill -9 in the middle of an escalation,
restart, and each step is notified exactly once per target (duplicate deliveries, when the crash fell
between sending and marking, carry the same idempotency key and are reported)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from carechain.settings import Settings
from tests.alerts.conftest import candidate, clean
from tests.conftest import service_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-secret"


@dataclass
class Received:
    lock: threading.Lock = field(default_factory=threading.Lock)
    deliveries: list[tuple[str, str, float]] = field(default_factory=list)  # (channel, key, at)
    bad_signatures: int = 0

    def add(self, channel: str, key: str) -> None:
        with self.lock:
            self.deliveries.append((channel, key, time.time()))

    def keys(self, contains: str = "") -> list[str]:
        with self.lock:
            return [k for _, k, _ in self.deliveries if contains in k]


def _webhook_server(rec: Received, delay_s: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ts = int(self.headers.get(TIMESTAMP_HEADER, "0"))
            if not verify(SECRET, ts, body, self.headers.get(SIGNATURE_HEADER, "")):
                rec.bad_signatures += 1
                self.send_response(401)
                self.end_headers()
                return
            time.sleep(delay_s)  # a slow receiver, so a kill lands in the middle of the escalation
            rec.add("webhook", self.headers.get(IDEMPOTENCY_HEADER, ""))
            json.loads(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _smtp_server(rec: Received) -> Any:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = message_from_bytes(envelope.content)
            rec.add("email", str(msg.get("X-CareChain-Idempotency-Key", "")))
            return "250 OK"

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = int(sk.getsockname()[1])
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    return ctl


@pytest.fixture(scope="module")
def topics(settings: Settings) -> Iterator[dict[str, str]]:
    try:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    except Exception:  # any failure to reach the broker: missing
        service_unavailable("Kafka (127.0.0.1:19092)")
        raise
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"cc-alerts-test-{k}-{suffix}" for k in ("alerts", "feedback", "deadletter")}
    admin.create_topics([NewTopic(n, 4, 1) for n in names.values()])
    try:
        yield names
    finally:
        admin.delete_topics(list(names.values()))
        admin.close()


class ServiceProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(env.get("TMPDIR", "/tmp")) / f"cc-alerts-test-{uuid.uuid4().hex[:8]}.log"
        self.log = self.log_path.open("ab")

    def tail(self, n: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def start(self, offset_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carechain.cli", "alerts", "--clock-offset-s", str(offset_s),
             "--escalate-every-s", "0.5"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log,
        )  # fmt: skip

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _one(conn: psycopg.Connection[Any], q: str, *args: Any) -> Any:
    row = conn.execute(q.encode(), args).fetchone()
    assert row is not None
    return row[0]


def test_live_service_dedup_silence_escalation_and_kill9(
    settings: Settings, alerts_dsn: str, topics: dict[str, str]
) -> None:
    from kafka import KafkaProducer

    rec = Received()
    web = _webhook_server(rec, delay_s=0.15)
    smtp = _smtp_server(rec)
    conn = psycopg.connect(alerts_dsn, autocommit=True)
    clean(conn)
    conn.execute(
        "INSERT INTO teams (team_id, org_id, role, name, email) VALUES"
        " ('k-nurses', 'kommun-0180', 'nurse', 'Hemsjukvård', 'hsv@kommun.test'),"
        " ('k-nurses-n', 'kommun-0182', 'nurse', 'Hemsjukvård Nacka', 'hsv@nacka.test'),"
        " ('r-clin', 'region-01', 'clinician', 'Vårdcentral', 'vc@region.test')"
    )
    url = f"http://127.0.0.1:{web.server_address[1]}/hook"
    conn.execute(
        "INSERT INTO webhook_endpoints (org_id, url, secret) VALUES ('kommun-0180', %s, %s), ('kommun-0182', %s, %s),"
        " ('region-01', %s, %s)",
        (url, SECRET, url, SECRET, url, SECRET),
    )
    now = datetime.now(UTC)
    conn.execute(
        "INSERT INTO silences (scope, target, reason, starts_at, expires_at, created_by)"
        " VALUES ('resident', 'res-0002', 'På sjukhus', %s, %s, 'coordinator-maria')",
        (now - timedelta(minutes=1), now + timedelta(hours=2)),
    )
    env = {
        **os.environ,
        "CARECHAIN_DATABASE_URL": alerts_dsn,
        "CARECHAIN_TOPIC_ALERTS": topics["alerts"],
        "CARECHAIN_TOPIC_FEEDBACK": topics["feedback"],
        "CARECHAIN_TOPIC_DEADLETTER": topics["deadletter"],
        "CARECHAIN_ALERTS_GROUP_ID": f"cc-alerts-test-{uuid.uuid4().hex[:8]}",
        "CARECHAIN_SMTP_HOST": "127.0.0.1",
        "CARECHAIN_SMTP_PORT": str(smtp.port),
        "CARECHAIN_LOG_LEVEL": "INFO",
    }
    svc = ServiceProcess(env)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        svc.start(0)
        # A burst of 20 copies of one fall; a silenced resident's fall; 15 other residents' falls (work for the kill).
        t = datetime.now(UTC)
        burst = candidate(resident="res-0001", home="home-0001", at=t)
        silenced = candidate(resident="res-0002", home="home-0002", at=t)
        others = [candidate(resident=f"res-{i:04d}", home=f"home-{i:04d}", at=t) for i in range(3, 18)]
        for c in [burst] * 20 + [silenced, *others]:
            producer.send(topics["alerts"], key=c.resident_id.encode(), value=c.to_json())
        producer.send(topics["alerts"], key=b"bad", value=b"{not json")  # dead-lettered, not fatal
        producer.flush()
        wait_for(lambda: _one(conn, "SELECT count(*) FROM alerts") == 17, 60, "17 alerts")
        assert _one(conn, "SELECT count(*) FROM alerts WHERE incident_key = %s", burst.incident_key) == 1
        silenced_id = _one(conn, "SELECT id FROM alerts WHERE resident_id = 'res-0002'")
        assert _one(conn, "SELECT suppressed_by FROM alerts WHERE id = %s", silenced_id).startswith("silence:")
        # Tier 1 now: 16 alerts x (kommun webhook + team e-mail).
        wait_for(lambda: len(rec.keys(":s0:")) >= 32, 30, "first notifications")
        assert not [k for k in rec.keys("") if k.startswith(f"a{silenced_id}:")]
        opened = max(r[0] for r in conn.execute("SELECT opened_at FROM alerts"))
        svc.stop()

        # Escalation (critical: tier 2 after 5 minutes). Run 285 s ahead: due 15 s of real time after opening.
        due_real = opened + timedelta(seconds=15)
        svc.start(285)
        while datetime.now(UTC) < due_real - timedelta(seconds=1.0):
            assert not rec.keys(":s1:"), "escalated before the deadline"
            time.sleep(0.1)
        wait_for(lambda: len(rec.keys(":s1:")) >= 3, 20, "escalation to begin")
        first = min(at for ch, k, at in rec.deliveries if ":s1:" in k)
        assert first >= due_real.timestamp() - 0.5
        svc.kill9()  # in the middle of it: 16 alerts x (region webhook + e-mail) are not all out yet
        partial = len(rec.keys(":s1:"))
        assert partial < 32, "the kill came too late to test a crash mid-escalation"
        svc.start(285)
        wait_for(
            lambda: (
                _one(conn, "SELECT count(*) FROM notification_outbox WHERE sent_at IS NULL") == 0
                and _one(conn, "SELECT count(*) FROM escalation_deadlines WHERE step = 1 AND done_at IS NOT NULL") == 16
            ),
            60,
            "escalation to finish after the restart",
        )
        keys = rec.keys(":s1:")
        expected = {
            r[0] for r in conn.execute("SELECT dedup_key FROM notification_outbox WHERE dedup_key LIKE '%:s1:%'")
        }
        assert len(expected) == 32  # 16 alerts x (region webhook + vc e-mail), one row each (dedup key)
        assert set(keys) == expected  # every step reached every target ...
        duplicates = len(keys) - len(set(keys))
        # ... exactly once per idempotency key; a physical re-delivery can only come from a row that was in
        # flight at the kill (sent, not yet marked) — at most one per dispatcher thread (2) — with the same key.
        assert duplicates <= 2, f"{duplicates} duplicate deliveries"
        print(f"\nkill -9 mid-escalation: {partial}/32 delivered before, {duplicates} duplicate (same key) after")
        assert rec.bad_signatures == 0
        assert _one(conn, "SELECT count(*) FROM escalation_deadlines WHERE alert_id = %s", silenced_id) == 0
        attempts = _one(conn, "SELECT count(*) FROM notification_attempts WHERE ok")
        assert attempts >= 64
    except AssertionError:
        print("alert service log:\n" + svc.tail())
        q = "SELECT channel, target, dedup_key, sent_at, attempts, last_error FROM notification_outbox ORDER BY id"
        for r in conn.execute(q + " LIMIT 10"):
            print(r)
        print(rec.deliveries[:5])
        raise
    finally:
        svc.stop()
        svc.log.close()
        svc.log_path.unlink(missing_ok=True)
        producer.close()
        web.shutdown()
        smtp.stop()
        conn.close()
