"""Kafka for the alert service (kafka-python, the only file that imports it): the ``alerts`` consumer that
commits offsets only after the database transaction of its candidates committed, and a producer for
``feedback`` (the outbox's feedback channel) and ``deadletter`` (candidates that cannot be read)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from alerts.webhook import DeliveryResult
from carechain.candidates import AlertCandidate
from carechain.settings import Settings

log = logging.getLogger(__name__)


class FeedbackProducer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=0, retries=5)

    def send(self, topic: str, key: str | None, value: bytes, timeout_s: float = 10.0) -> DeliveryResult:
        try:
            md = self._p.send(topic, key=key.encode() if key else None, value=value).get(timeout=timeout_s)
        except KafkaError as e:
            return DeliveryResult(False, None, f"{type(e).__name__}: {e}")
        return DeliveryResult(True, None, f"{md.topic}[{md.partition}]@{md.offset}")

    def deadletter(self, raw: bytes, reason: str, detail: str) -> None:
        import base64

        doc = {
            "v": 1,
            "reason": reason,
            "detail": detail[:500],
            "mqtt_topic": None,
            "payload_b64": base64.b64encode(raw).decode(),
            "received_at": datetime.now(UTC).isoformat(),
            "source": "alerts",
        }
        self.send(self.settings.topic_deadletter, None, json.dumps(doc).encode())

    def close(self) -> None:
        self._p.close(timeout=5)


class CandidateConsumer:
    """Polls ``alerts``; ``run_once`` hands each candidate to ``apply`` (which commits its own transaction)
    and commits the Kafka offsets only afterwards: a crash in between replays candidates, which the
    service recognises as duplicates (same incident key, not newer)."""

    def __init__(self, settings: Settings, producer: FeedbackProducer, group_id: str | None = None) -> None:
        self._c = KafkaConsumer(
            settings.topic_alerts,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group_id or settings.alerts_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=200,
            fetch_max_wait_ms=100,  # an alert should not wait for a fetch to fill up
            # A restarted service rejoins fast: the chaos run waited ~43 s for the default session to expire.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self._producer = producer

    def run_once(self, apply: Callable[[list[AlertCandidate]], object], timeout_ms: int = 200) -> int:
        """One poll: readable candidates go to ``apply`` as one batch (one database transaction); offsets are
        committed after it returned."""
        batches = self._c.poll(timeout_ms=timeout_ms)
        cands: list[AlertCandidate] = []
        for records in batches.values():
            for rec in records:
                try:
                    cands.append(AlertCandidate.from_json(rec.value))
                except (ValueError, TypeError, KeyError) as e:
                    # Bad input never crashes the service: dead-lettered with the reason.
                    log.warning("unreadable candidate at %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, e)
                    self._producer.deadletter(rec.value or b"", "bad_candidate", str(e))
        if cands:
            apply(cands)
        if batches:
            # After the transaction: a crash before this line only replays candidates, which dedup ignores.
            self._c.commit()
        return len(cands)

    def rewind(self) -> None:
        """Seek every assigned partition back to its committed offset: the uncommitted batch is read again."""
        for tp in self._c.assignment():
            committed = self._c.committed(tp)
            if committed is None:
                self._c.seek_to_beginning(tp)
            else:
                self._c.seek(tp, committed)

    def close(self) -> None:
        self._c.close()
