"""The outbox dispatcher: sends due notification rows and marks them, one row per transaction.

For each row: lock it (SKIP LOCKED, so two dispatchers never take the same row), send it, record the
attempt and mark it sent (or reschedule it with exponential backoff) in that same transaction. The
guarantee is honest: **at-least-once with an idempotency key**. A crash after the receiver accepted
and before the commit rolls the mark back and the row is sent again, carrying the same
``Idempotency-Key`` (its dedup key), so a receiver that remembers keys sees each notification once.
Nothing is lost: a row stays until it is sent, and gives up (``dead_at``, visible) only after
``max_attempts`` over hours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from alerts import store
from alerts.webhook import DeliveryResult

log = logging.getLogger(__name__)


class Webhooks(Protocol):
    def send(
        self, url: str, secret: str, payload: dict[str, Any], idempotency_key: str, timestamp: int
    ) -> DeliveryResult: ...


class Mail(Protocol):
    def send(self, to: str, payload: dict[str, Any], idempotency_key: str) -> DeliveryResult: ...


class Feedback(Protocol):
    def send(self, topic: str, key: str | None, value: bytes, timeout_s: float = 10.0) -> DeliveryResult: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=15)
    max_attempts: int = 30

    def delay(self, attempt: int) -> timedelta:
        """Delay after the ``attempt``-th failure (1-based): base * 2^(attempt-1), capped."""
        return min(self.cap, self.base * (2 ** max(0, min(attempt - 1, 20))))


class Dispatcher:
    def __init__(
        self,
        conn: store.Conn,
        webhooks: Webhooks | None,
        mail: Mail | None,
        feedback: Feedback | None,
        feedback_topic: str = "feedback",
        operator_email: str | None = None,
        operator_webhook: tuple[str, str] | None = None,
        backoff: Backoff | None = None,
        on_sent: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.conn = conn
        self.webhooks, self.mail, self.feedback = webhooks, mail, feedback
        self.feedback_topic = feedback_topic
        self.operator_email = operator_email
        self.operator_webhook = operator_webhook
        self.backoff = backoff or Backoff()
        self.on_sent = on_sent

    def run_once(self, now: datetime, max_rows: int = 100) -> int:
        """Send up to ``max_rows`` due rows. Returns rows handled (sent, failed or deferred)."""
        n = 0
        while n < max_rows and self._one(now):
            n += 1
        return n

    def _one(self, now: datetime) -> bool:
        with self.conn.transaction():
            row = store.claim_one(self.conn, now)
            if row is None:
                return False
            result, endpoint_id = self._send(row, now)
            if result is None:
                return True  # deferred (endpoint backing off)
            attempt = int(row["attempts"]) + 1
            dead = not result.ok and attempt >= self.backoff.max_attempts
            retry_at = None if result.ok else now + self.backoff.delay(attempt)
            store.finish_attempt(self.conn, row["id"], now, result.ok, result.status, result.detail, retry_at, dead)
            if endpoint_id is not None:
                ep = store.endpoint(self.conn, endpoint_id)
                failures = int(ep["failures"]) + 1 if ep else 1
                store.endpoint_result(
                    self.conn, endpoint_id, result.ok, None if result.ok else now + self.backoff.delay(failures)
                )
            if not result.ok:
                log.warning("outbox %s (%s) attempt %d failed: %s", row["id"], row["channel"], attempt, result.detail)
        if result.ok and self.on_sent:
            self.on_sent(row)
        return True

    def _send(self, row: dict[str, Any], now: datetime) -> tuple[DeliveryResult | None, int | None]:
        channel, payload, key = row["channel"], row["payload"], row["dedup_key"]
        ts = int(now.timestamp())
        if channel == "webhook":
            ep = store.endpoint(self.conn, int(row["target"]))
            if ep is None or not ep["active"]:
                return DeliveryResult(False, None, "endpoint gone or inactive"), None
            if ep["next_try_at"] is not None and ep["next_try_at"] > now:
                store.defer(self.conn, row["id"], ep["next_try_at"])
                return None, None
            if self.webhooks is None:
                return DeliveryResult(False, None, "no webhook sender configured"), None
            return self.webhooks.send(ep["url"], ep["secret"], payload, key, ts), int(ep["id"])
        if channel == "email":
            if self.mail is None:
                return DeliveryResult(False, None, "no mail sender configured"), None
            return self.mail.send(row["target"], payload, key), None
        if channel == "feedback":
            if self.feedback is None:
                return DeliveryResult(False, None, "no Kafka producer configured"), None
            fb = payload.get("feedback", {})
            value = _json(fb)
            return self.feedback.send(self.feedback_topic, fb.get("resident_id"), value), None
        if channel == "operator":
            results: list[DeliveryResult] = []
            if self.mail is not None and self.operator_email:
                results.append(self.mail.send(self.operator_email, payload, key))
            if self.webhooks is not None and self.operator_webhook:
                url, secret = self.operator_webhook
                results.append(self.webhooks.send(url, secret, payload, key, ts))
            if not results:
                return DeliveryResult(False, None, "no operator path configured"), None
            ok = any(r.ok for r in results)
            return DeliveryResult(ok, None, "; ".join(r.detail for r in results)), None
        return DeliveryResult(False, None, f"unknown channel {channel}"), None


def _json(d: dict[str, Any]) -> bytes:
    import json

    return json.dumps(d, separators=(",", ":"), default=str).encode()
