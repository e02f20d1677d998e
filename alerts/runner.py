"""The running alert service: three loops on their own connections, in threads of one process.

* consumer: Kafka ``alerts`` -> ``AlertService.handle`` (one transaction per candidate) -> commit offsets;
* escalation: every second, due deadlines (SKIP LOCKED) -> outbox rows + done mark, one transaction;
* dispatcher: outbox rows -> webhooks, e-mail, Kafka ``feedback``, operators; each attempt recorded.

Several processes may run at once: Kafka splits the partitions, SKIP LOCKED splits the deadlines and the
outbox rows. ``clock`` is injectable (tests run the service minutes into the future).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg

from alerts.dispatch import Dispatcher
from alerts.lifecycle import Policy
from alerts.service import AlertService, DatabaseLost
from carechain.settings import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ESCALATION_BATCH = 500  # deadlines per scan transaction


def offset_clock(offset_s: float) -> Clock:
    """Real UTC time moved by ``offset_s`` seconds."""
    delta = timedelta(seconds=offset_s)

    def now() -> datetime:
        return datetime.now(UTC) + delta

    return now


@dataclass(slots=True)
class Loops:
    consume: bool = True
    escalate: bool = True
    dispatch: bool = True
    escalate_every_s: float = 1.0
    dispatch_every_s: float = 0.2
    dispatchers: int = 2  # parallel senders: one slow endpoint does not hold up the others (SKIP LOCKED)


class AlertServiceRunner:
    def __init__(self, settings: Settings, clock: Clock, loops: Loops, policy: Policy | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.loops = loops
        self.policy = policy or Policy()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def _connect(self) -> psycopg.Connection[object]:
        return psycopg.connect(self.settings.database_url, autocommit=True)

    def _loop(self, name: str, body: Callable[[], None]) -> None:
        """Run ``body`` until stopped; a database or broker outage is retried, never fatal."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                body()
                delay = 0.5
            except Exception as e:  # the loop must survive outages: logged and retried
                log.warning("%s loop: %s: %s; retrying in %.1fs", name, type(e).__name__, e, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _consumer(self) -> None:
        from alerts.kafka import CandidateConsumer, FeedbackProducer

        producer = FeedbackProducer(self.settings)
        consumer = CandidateConsumer(self.settings, producer)
        try:
            while not self.stop.is_set():
                conn = self._connect_when_up()
                if conn is None:
                    return
                try:
                    apply = partial(AlertService(conn, self.policy).handle_batch, clock=self.clock)
                    while not self.stop.is_set():
                        consumer.run_once(apply)
                except DatabaseLost as e:
                    # A database outage is no reason to leave the Kafka group: rewind to the committed offsets
                    # and replay on a new connection (chaos run: a new consumer that joined right after the
                    # old one left never got its partitions back from kafka-python, and every fall was missed).
                    log.warning("consumer: %s; rewinding and reconnecting", e)
                    consumer.rewind()
                finally:
                    conn.close()
        finally:
            consumer.close()
            producer.close()

    def _connect_when_up(self) -> psycopg.Connection[object] | None:
        """A new connection, retried with back-off while the database is away (None once stopped)."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                return self._connect()
            except psycopg.OperationalError as e:
                log.warning("consumer: database unavailable (%s); retrying in %.1fs", type(e).__name__, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return None

    def _escalation(self) -> None:
        with self._connect() as conn:
            svc = AlertService(conn, self.policy)
            while not self.stop.is_set():
                t = time.monotonic()
                n = svc.escalate(self.clock(), limit=ESCALATION_BATCH)
                if n:
                    log.info("escalation scan: %d deadlines handled", n)
                if n >= ESCALATION_BATCH:
                    continue  # more are due: no pause until the backlog is gone
                self.stop.wait(max(0.0, self.loops.escalate_every_s - (time.monotonic() - t)))

    def _dispatcher(self) -> None:
        from alerts.kafka import FeedbackProducer
        from alerts.mail import MailSender
        from alerts.webhook import WebhookSender

        s = self.settings
        producer = FeedbackProducer(s)
        webhooks = WebhookSender()
        op_hook = (s.operator_webhook_url, s.webhook_secret) if s.operator_webhook_url else None
        try:
            with self._connect() as conn:
                d = Dispatcher(
                    conn,
                    webhooks,
                    MailSender(s.smtp_host, s.smtp_port, s.smtp_from),
                    producer,
                    s.topic_feedback,
                    s.operator_email,
                    op_hook,
                )
                while not self.stop.is_set():
                    if not d.run_once(self.clock()):
                        self.stop.wait(self.loops.dispatch_every_s)
        finally:
            webhooks.close()
            producer.close()

    def start(self) -> None:
        plan = [
            ("consumer", self.loops.consume, self._consumer),
            ("escalation", self.loops.escalate, self._escalation),
        ]
        plan += [(f"dispatcher-{i}", self.loops.dispatch, self._dispatcher) for i in range(self.loops.dispatchers)]
        for name, on, body in plan:
            if on:
                t = threading.Thread(target=self._loop, args=(name, body), name=f"alerts-{name}", daemon=True)
                t.start()
                self.threads.append(t)

    def join(self) -> None:
        for t in self.threads:
            t.join()

    def shutdown(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
