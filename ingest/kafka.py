"""The bridge's Kafka producer: durable (acks=all, idempotent), batched, all-or-error.

The only file of the bridge that uses kafka-python. :meth:`EventProducer.send_all`
returns only when the broker has acknowledged every record of the batch, which
is what lets the bridge acknowledge the MQTT messages behind them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner, murmur2

from ingest.messages import DeliveryError, Record

log = logging.getLogger(__name__)


class CachedKeyPartitioner(DefaultPartitioner):
    """The Java client's murmur2 partitioning, memoised per key.

    kafka-python hashes every key in pure Python (~10 µs); a region has a few
    thousand residents, so the hash of each resident id is computed once.
    Same partitions as the Java client, so every consumer agrees on them.
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self._hash: dict[bytes, int] = {}
        self._max_keys = max_keys

    def partition(
        self, topic: str, key: Any, serialized_key: bytes | None, value: Any, serialized_value: Any, cluster: Any
    ) -> int:
        if serialized_key is None:
            return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        h = self._hash.get(serialized_key)
        if h is None:
            if len(self._hash) >= self._max_keys:
                self._hash.clear()
            h = self._hash[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return sorted(partitions)[h % len(partitions)]


@dataclass(frozen=True, slots=True)
class ProducerTuning:
    """Throughput knobs (docs/ingest.md records what was measured)."""

    linger_ms: int = 20  # bulk lane; measured better than 5 under load (docs/ingest.md)
    batch_size: int = 512 * 1024
    compression_type: str | None = None
    max_in_flight: int = 5  # <= 5 keeps order with idempotence on retries


class PendingBatch:
    """Records handed to the producer, not yet known to be acknowledged."""

    def __init__(self, futures: list[Any], deadline: float) -> None:
        self._futures = futures
        self._deadline = deadline
        self._checked = 0  # futures before this index are known to be done

    def done(self) -> bool:
        """True once Kafka answered for every record (success or failure); never blocks."""
        futures = self._futures
        while self._checked < len(futures) and futures[self._checked].is_done:
            self._checked += 1
        return self._checked == len(futures)

    def wait(self) -> None:
        """Block until every record is acknowledged; :class:`DeliveryError` if any is not."""
        for fut in self._futures:
            if not fut.is_done:
                try:
                    fut.get(timeout=max(0.0, self._deadline - time.monotonic()))
                except KafkaError as exc:
                    raise DeliveryError(f"record not acknowledged: {type(exc).__name__}") from exc
            if fut.failed():
                raise DeliveryError(f"record not acknowledged: {type(fut.exception).__name__}") from fut.exception


class EventProducer:
    """A kafka-python producer with acks=all and idempotence, sending in acknowledged batches."""

    def __init__(self, bootstrap: str, client_id: str = "carechain-bridge", tuning: ProducerTuning | None = None,
                 delivery_timeout_s: float = 60.0, urgent_topics: Sequence[str] = ()) -> None:
        t = tuning or ProducerTuning()
        self.delivery_timeout_s = delivery_timeout_s
        self._bootstrap = bootstrap.split(",")
        self._urgent_topics = frozenset(urgent_topics)
        try:
            self._producer = self._connect(bootstrap, client_id, t, delivery_timeout_s)
            # The urgent lane gets a producer of its own that never lingers: a fall is sent the
            # moment it is routed, while the bulk lane batches for throughput.
            self._urgent = (
                self._connect(bootstrap, f"{client_id}-urgent", replace(t, linger_ms=0), delivery_timeout_s)
                if self._urgent_topics
                else self._producer
            )
        except KafkaError as exc:
            raise DeliveryError(f"Kafka at {bootstrap} not reachable: {type(exc).__name__}") from exc

    @staticmethod
    def _connect(bootstrap: str, client_id: str, t: ProducerTuning, delivery_timeout_s: float) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            client_id=client_id,
            acks="all",
            # Idempotence makes the broker drop a batch it already has when the producer retries
            # it, so a retry after a lost ack does not duplicate; it also keeps order on retries.
            enable_idempotence=True,
            retries=2**31 - 1,
            max_in_flight_requests_per_connection=t.max_in_flight,
            linger_ms=t.linger_ms,
            batch_size=t.batch_size,
            compression_type=t.compression_type,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=30_000,
            bootstrap_timeout_ms=10_000,
            delivery_timeout_ms=int(delivery_timeout_s * 1000),
            partitioner=CachedKeyPartitioner(),
            # A misspelt topic must fail loudly, not appear with default settings.
            allow_auto_create_topics=False,
        )

    def send_batch(self, records: Sequence[Record]) -> PendingBatch:
        """Hand ``records`` (in order) to the producer without waiting; the result tells when
        Kafka acknowledged them. ``linger_ms`` decides when they go out."""
        send, send_urgent, urgent = self._producer.send, self._urgent.send, self._urgent_topics
        try:
            futures = [
                (send_urgent if r.topic in urgent else send)(r.topic, value=r.value, key=r.key) for r in records
            ]
        except KafkaError as exc:
            raise DeliveryError(f"send failed: {type(exc).__name__}") from exc
        return PendingBatch(futures, time.monotonic() + self.delivery_timeout_s)

    def send_all(self, records: Sequence[Record]) -> None:
        """Produce ``records`` (in order) and return once Kafka acknowledged all of them.

        Raises :class:`DeliveryError` when any record failed or the acks did not come
        in time; the caller must then not acknowledge the inputs.
        """
        pending = self.send_batch(records)
        # flush() sends what lingers and waits for the in-flight requests.
        self._producer.flush(timeout=self.delivery_timeout_s)
        if self._urgent is not self._producer:
            self._urgent.flush(timeout=self.delivery_timeout_s)
        pending.wait()

    def missing_topics(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` the cluster does not have."""
        return missing_topics(",".join(self._bootstrap), names)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is pending and close the connections."""
        for producer in {id(p): p for p in (self._urgent, self._producer)}.values():
            try:
                producer.flush(timeout=timeout_s)
            finally:
                producer.close(timeout=timeout_s)


def missing_topics(bootstrap: str, names: Sequence[str]) -> list[str]:
    """Those of ``names`` the cluster does not have (asked through an admin client, which
    answers at once, where a producer would block for ``max_block_ms``)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    return [n for n in names if n not in existing]
