"""The outbox dispatcher and the canary's dead-man's switch on real services: a webhook receiver that fails
first (retried with backoff, every attempt recorded), two dispatchers never sending one row twice, feedback
published to a private Kafka topic, and an operator e-mail over real SMTP when the canary goes quiet."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from alerts import actions
from alerts.canary import Watchdog, seed_canary
from alerts.dispatch import Backoff, Dispatcher
from alerts.mail import MailSender
from alerts.service import AlertService
from alerts.webhook import IDEMPOTENCY_HEADER, WebhookSender
from carechain.candidates import Feedback, Outcome
from carechain.settings import Settings
from tests.alerts.conftest import candidate, clean
from tests.conftest import service_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


class Receiver:
    """A webhook receiver that answers 500 to the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.keys: list[str] = []
        self.statuses: list[int] = []
        self.fail_first = fail_first
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 500 if len(rec.statuses) < rec.fail_first else 200
                rec.statuses.append(status)
                if status == 200:
                    rec.keys.append(self.headers.get(IDEMPOTENCY_HEADER, ""))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture()
def smtp() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    got: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(message_from_bytes(envelope.content))
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    yield port, got
    ctl.stop()


def _world(conn: psycopg.Connection[Any], url: str) -> None:
    clean(conn)
    conn.execute("INSERT INTO webhook_endpoints (org_id, url, secret) VALUES ('kommun-0180', %s, 's')", (url,))


def test_webhook_retried_with_backoff_and_attempts_recorded(conn: psycopg.Connection[Any]) -> None:
    rec = Receiver(fail_first=2)
    _world(conn, rec.url)
    now = datetime.now(UTC)
    AlertService(conn).handle(candidate(at=now), now)
    d = Dispatcher(conn, WebhookSender(), None, None, backoff=Backoff(base=timedelta(seconds=10)))
    d.run_once(now)  # fails: retry in 10 s (row), endpoint backs off 10 s
    assert rec.statuses == [500]
    d.run_once(now + timedelta(seconds=5))  # not yet due
    assert rec.statuses == [500]
    d.run_once(now + timedelta(seconds=11))  # fails again: 20 s
    assert rec.statuses == [500, 500]
    d.run_once(now + timedelta(seconds=25))
    assert rec.statuses == [500, 500]  # backing off (second failure: 20 s)
    d.run_once(now + timedelta(seconds=32))
    assert rec.statuses == [500, 500, 200]
    row = conn.execute("SELECT sent_at IS NOT NULL, attempts FROM notification_outbox WHERE channel = 'webhook'")
    assert row.fetchone() == (True, 3)
    oks = [r[0] for r in conn.execute("SELECT ok FROM notification_attempts ORDER BY id")]
    assert oks == [False, False, True]
    rec.server.shutdown()


def test_two_dispatchers_never_send_a_row_twice(alerts_dsn: str, conn: psycopg.Connection[Any]) -> None:
    rec = Receiver()
    _world(conn, rec.url)
    now = datetime.now(UTC)
    svc = AlertService(conn)
    for i in range(30):
        svc.handle(candidate(resident=f"res-{i % 19 + 1:04d}", home=f"home-{i % 19 + 1:04d}", key=f"k{i}", at=now), now)
    rows = conn.execute("SELECT count(*) FROM notification_outbox WHERE channel = 'webhook'").fetchone()
    assert rows is not None and rows[0] > 5

    def run() -> None:
        with psycopg.connect(alerts_dsn, autocommit=True) as c:
            Dispatcher(c, WebhookSender(), None, None).run_once(now + timedelta(seconds=1), max_rows=1000)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rec.keys) == len(set(rec.keys))
    kommun_rows = conn.execute(
        "SELECT count(*) FROM notification_outbox WHERE channel = 'webhook' AND sent_at IS NOT NULL"
    ).fetchone()
    assert kommun_rows is not None and len(rec.keys) == kommun_rows[0]
    rec.server.shutdown()


def test_feedback_published_to_kafka(settings: Settings, conn: psycopg.Connection[Any]) -> None:
    try:
        from kafka import KafkaConsumer

        from alerts.kafka import FeedbackProducer

        topic = f"cc-alerts-test-feedback-{uuid.uuid4().hex[:8]}"
        producer = FeedbackProducer(settings)
    except Exception:  # the broker is missing
        service_unavailable("Kafka (127.0.0.1:19092)")
        raise
    clean(conn)
    now = datetime.now(UTC)
    r = AlertService(conn).handle(candidate(kind="inactivity", at=now), now)
    actions.resolve(conn, r.alert_id or 0, actions.Actor("nurse-anna", "kommun-0180", "nurse"), Outcome.FALSE_ALARM)
    d = Dispatcher(conn, None, None, producer, feedback_topic=topic)
    d.run_once(datetime.now(UTC) + timedelta(seconds=1))
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000
    )
    msgs = []
    for m in consumer:  # stops after the first message, or after 10 s without one
        msgs.append(m)
        break
    consumer.close()
    producer.close()
    assert len(msgs) == 1
    fb = Feedback.from_json(msgs[0].value)
    assert fb.outcome is Outcome.FALSE_ALARM and fb.resident_id == "res-0001" and msgs[0].key == b"res-0001"


def test_dead_mans_switch_mails_operators_directly(
    settings: Settings, alerts_dsn: str, conn: psycopg.Connection[Any], smtp: tuple[int, list[Any]]
) -> None:
    port, got = smtp
    clean(conn)
    s = Settings(database_url=alerts_dsn, smtp_port=port, operator_email="ops@test")
    seed_canary(conn, s)
    seed_canary(conn, s)  # idempotent
    assert conn.execute("SELECT count(*) FROM devices WHERE gateway_id = 'gw-canary'").fetchone() == (1,)
    dog = Watchdog(s, quiet_after=timedelta(minutes=3), mail=MailSender("127.0.0.1", port, "cc@test"))
    t0 = datetime.now(UTC)
    assert not dog.check(t0).quiet
    assert dog.check(t0 + timedelta(minutes=4)).quiet
    deadline = time.time() + 5
    while not got and time.time() < deadline:
        time.sleep(0.05)
    assert len(got) == 1 and got[0]["To"] == "ops@test" and "pipeline_quiet" in got[0]["Subject"]
    dog.check(t0 + timedelta(minutes=5))  # no repeat within the repeat interval
    assert len(got) == 1
    # The canary comes through: all clear.
    AlertService(conn).handle(candidate(resident="canary-1", home="canary-home", at=t0), t0 + timedelta(minutes=6))
    conn.execute("UPDATE canary_heartbeats SET arrived_at = %s", (t0 + timedelta(minutes=6),))
    assert not dog.check(t0 + timedelta(minutes=6, seconds=10)).quiet
    time.sleep(0.5)
    assert len(got) == 2 and "pipeline_ok" in got[1]["Subject"]
