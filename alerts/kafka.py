"""Kafka for the alert service (kafka-python, the only file that imports it): the ``alerts`` consumer that
commits offsets only after the database transaction of its candidates committed, and a producer for
``feedback`` (the outbox's feedback channel) and ``deadletter`` (candidates that cannot be read)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
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


#: A group member that has not been a stable member for this long is stuck (see :class:`JoinWatch`).
STUCK_JOIN_S = 30.0
_STABLE = "<stable>"  # kafka.structs.MemberState.STABLE


@dataclass
class JoinWatch:
    """Notices a consumer stuck in its group join (pure; no Kafka).

    kafka-python 3.0.12 sometimes never completes a rejoin: in two chaos runs the alert service's consumer,
    restarted while its topic's metadata was not yet known, got an empty assignment, rejoined as the
    group's leader and never finished the SyncGroup, so it polled nothing and every fall waited. A member
    of this group normally is stable again within its 10 s session (members poll every 200 ms), so one
    that has not been stable for ``stuck_after_s`` is replaced. An empty but stable assignment (more
    alert services than partitions) is not stuck."""

    stuck_after_s: float = STUCK_JOIN_S
    since: float | None = None

    def stuck(self, state: str | None, now: float) -> bool:
        if state is None or state == _STABLE:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since > self.stuck_after_s


class CandidateConsumer:
    """Polls ``alerts``; ``run_once`` hands each candidate to ``apply`` (which commits its own transaction)
    and commits the Kafka offsets only afterwards: a crash in between replays candidates, which the
    service recognises as duplicates (same incident key, not newer). A consumer stuck in its group join is
    replaced (:class:`JoinWatch`); nothing uncommitted is lost by that, since offsets are committed after
    every applied batch."""

    def __init__(
        self,
        settings: Settings,
        producer: FeedbackProducer,
        group_id: str | None = None,
        stuck_after_s: float = STUCK_JOIN_S,
    ) -> None:
        self.settings = settings
        self.group_id = group_id or settings.alerts_group_id
        self.watch = JoinWatch(stuck_after_s)
        self.replaced = 0
        self._c = self._new_consumer()
        self._producer = producer

    def _new_consumer(self, metadata_wait_s: float = 10.0) -> KafkaConsumer:
        """A consumer that subscribes only once its topic's partitions are known: joining before (an empty
        first assignment) is what led kafka-python into the stuck rejoin (chaos run 11's start-up)."""
        settings = self.settings
        c = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=200,
            fetch_max_wait_ms=100,  # an alert should not wait for a fetch to fill up
            # A restarted service rejoins fast: the chaos run waited ~43 s for the default session to expire.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        deadline = time.monotonic() + metadata_wait_s
        while not c.partitions_for_topic(settings.topic_alerts) and time.monotonic() < deadline:
            time.sleep(0.2)  # the topic is being created, or the broker is still starting
        c.subscribe([settings.topic_alerts])
        return c

    def member_state(self) -> str | None:
        """The group membership state kafka-python keeps (``<unjoined>``, ``<rebalancing>``, ``<stable>``)."""
        state = getattr(getattr(self._c, "_coordinator", None), "state", None)
        return state if isinstance(state, str) else None

    def replace(self, why: str) -> None:
        """Leave the group and join again with a new consumer; it resumes from the committed offsets."""
        log.warning("alerts consumer: %s; replacing it with a new one", why)
        try:
            self._c.close(autocommit=False)
        except Exception as e:  # a stuck client may not close cleanly; the new one must start anyway
            log.warning("alerts consumer: close failed: %s", type(e).__name__)
        self._c = self._new_consumer()
        self.watch.since = None
        self.replaced += 1

    def run_once(self, apply: Callable[[list[AlertCandidate]], object], timeout_ms: int = 200) -> int:
        """One poll: readable candidates go to ``apply`` as one batch (one database transaction); offsets are
        committed after it returned."""
        if self.watch.stuck(self.member_state(), time.monotonic()):
            self.replace(f"not a stable group member for {self.watch.stuck_after_s:.0f} s")
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
