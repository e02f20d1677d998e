"""The ingest bridge: MQTT in, Kafka out, acknowledged only when Kafka has it.

One loop (:meth:`Bridge.run`) takes the messages paho delivered, in batches of
up to ``batch_max_messages`` or ``batch_wait_ms``, routes each with the pure
:func:`ingest.routing.route`, produces every output to Kafka and waits until
Kafka acknowledged all of them, and only then acknowledges the MQTT messages,
in the order they arrived. A crash anywhere before the MQTT ack leaves the
message with the broker, which redelivers it: at-least-once, never lost.

Nothing a gateway sends can crash the loop: an exception while routing one
message dead-letters that message (``internal_error`` and the exception's class;
the payload goes to the dead-letter topic, never to the log).

Pure apart from threads and a queue: the Kafka and MQTT adapters are passed in
(``sink``, ``ack``), so the embedded demo runs this same loop with an
in-process sink.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from carechain.events import Lane
from ingest.messages import DeliveryError, InboundMessage, Record
from ingest.routing import DeadLetter, Discarded, Forward, RegistrySnapshot, internal_error, route

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """Anything with a current registry snapshot (the cached DeviceRegistry, or a fixed one)."""

    @property
    def snapshot(self) -> RegistrySnapshot: ...


class Pending(Protocol):
    """Records handed to a sink: ``done()`` polls, ``wait()`` blocks (raising DeliveryError)."""

    def done(self) -> bool: ...

    def wait(self) -> None: ...


class BatchSink(Protocol):
    """Where outputs go. ``send_batch`` hands records over without waiting for durability."""

    def send_batch(self, records: list[Record]) -> Pending: ...


@dataclass(frozen=True, slots=True)
class LaneTopics:
    """The Kafka topic names (overridable, so tests use private ones)."""

    events: str = "events"
    urgent: str = "events.urgent"
    deadletter: str = "deadletter"

    def of(self, lane: Lane) -> str:
        """The topic of a lane."""
        return self.urgent if lane is Lane.URGENT else self.events


@dataclass(frozen=True, slots=True)
class BridgeTuning:
    """Batching knobs: bigger batches amortise Kafka round-trips, shorter waits cut latency."""

    batch_max_messages: int = 500
    batch_wait_ms: float = 5.0
    #: Batches handed to Kafka and not yet acknowledged: routing the next batch overlaps the
    #: wait for the previous one's acks. MQTT acks still go out strictly in arrival order.
    max_inflight_batches: int = 4
    stats_interval_s: float = 30.0
    retry_backoff_max_s: float = 10.0


@dataclass
class BridgeMetrics:
    """Counters of what the bridge did, for logs, the benchmark and the tests."""

    messages: int = 0
    batches: int = 0
    forwarded: Counter[str] = field(default_factory=Counter)  # per Kafka topic
    deadlettered: Counter[str] = field(default_factory=Counter)  # per reason
    discarded_no_consent: int = 0
    #: Readings whose seq is not above the last seen for their device: MQTT redeliveries
    #: after a crash, or a gateway's backfill. Forwarded anyway (event ids make them idempotent).
    seq_replays: int = 0
    redelivered: int = 0  # MQTT messages flagged DUP by the broker
    unacked_stale: int = 0  # messages whose connection dropped before the ack (broker redelivers)
    kafka_retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as plain JSON-able values (copies; may raise RuntimeError if a key is
        added by the bridge thread during the copy — callers on other threads retry)."""
        return {
            "messages": self.messages,
            "batches": self.batches,
            "forwarded": dict(self.forwarded),
            "deadlettered": dict(self.deadlettered),
            "discarded_no_consent": self.discarded_no_consent,
            "seq_replays": self.seq_replays,
            "redelivered": self.redelivered,
            "unacked_stale": self.unacked_stale,
            "kafka_retries": self.kafka_retries,
        }


class Bridge:
    """Batches inbound messages, routes them, produces to Kafka, then acknowledges them."""

    def __init__(
        self,
        registry: SnapshotSource,
        sink: BatchSink,
        ack: Callable[[InboundMessage], bool],
        topics: LaneTopics | None = None,
        tuning: BridgeTuning | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.sink = sink
        self.ack = ack
        self.topics = topics or LaneTopics()
        self.tuning = tuning or BridgeTuning()
        self.clock = clock
        self.metrics = BridgeMetrics()
        self.inbox: queue.SimpleQueue[InboundMessage] = queue.SimpleQueue()
        self._last_seq: dict[str, int] = {}
        self._homes_without_consent: set[str] = set()
        self._seen_snapshot: RegistrySnapshot | None = None

    def offer(self, msg: InboundMessage) -> None:
        """Called by the MQTT adapter's thread for every message; never blocks.

        The broker's receive maximum bounds how many unacknowledged messages can wait here.
        """
        self.inbox.put(msg)

    # the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set; batches already sent are finished first."""
        next_stats = time.monotonic() + self.tuning.stats_interval_s
        inflight: deque[tuple[list[InboundMessage], list[Record], Pending]] = deque()
        while not stop.is_set():
            # With batches in flight, look for new messages only briefly: their acks come first.
            batch = self._next_batch(0.001 if inflight else 0.2)
            if batch:
                records = self.route_batch(batch)
                inflight.append((batch, records, self._send(records, stop)))
            while inflight and (not batch or len(inflight) >= self.tuning.max_inflight_batches
                                or inflight[0][2].done()):
                self._complete(*inflight.popleft(), stop)
            if time.monotonic() >= next_stats:
                self.log_stats()
                next_stats = time.monotonic() + self.tuning.stats_interval_s
        while inflight:
            self._complete(*inflight.popleft(), stop)
        self.log_stats()

    def _next_batch(self, first_wait_s: float) -> list[InboundMessage]:
        try:
            first = self.inbox.get(timeout=first_wait_s)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.tuning.batch_wait_ms / 1000.0
        get, get_nowait, limit = self.inbox.get, self.inbox.get_nowait, self.tuning.batch_max_messages
        while len(batch) < limit:
            try:
                batch.append(get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def handle_batch(self, batch: list[InboundMessage], stop: threading.Event | None = None) -> None:
        """Route, produce (waiting for every Kafka ack, retrying), then ack the MQTT messages in order."""
        records = self.route_batch(batch)
        self._complete(batch, records, self._send(records, stop), stop)

    def _send(self, records: list[Record], stop: threading.Event | None) -> Pending:
        try:
            return self.sink.send_batch(records)
        except DeliveryError:
            return _Failed()  # retried in _complete, in order

    def _complete(self, batch: list[InboundMessage], records: list[Record], pending: Pending,
                  stop: threading.Event | None) -> bool:
        """Wait for a batch's Kafka acks (re-sending it until Kafka takes it), then ack its messages."""
        backoff = 0.1
        while True:
            try:
                pending.wait()
                break
            except DeliveryError as exc:
                # Re-sending may duplicate what Kafka did take; losing it is not an option.
                self.metrics.kafka_retries += 1
                log.warning("Kafka did not acknowledge a batch of %d records (%s); retrying", len(records), exc)
                if stop is not None and stop.wait(backoff):
                    log.warning("stopping with an unacknowledged batch: the broker will redeliver it")
                    return False
                backoff = min(backoff * 2, self.tuning.retry_backoff_max_s)
                pending = self._send(records, stop)
        for msg in batch:
            if not self.ack(msg):
                self.metrics.unacked_stale += 1
        self.metrics.batches += 1
        return True

    def route_batch(self, batch: list[InboundMessage]) -> list[Record]:
        """The Kafka records for a batch, in message order; updates the counters."""
        snap = self.registry.snapshot
        if snap is not self._seen_snapshot:
            self._on_new_snapshot(snap)
        m = self.metrics
        records: list[Record] = []
        append = records.append
        events_topic, urgent_topic, dl_topic = self.topics.events, self.topics.urgent, self.topics.deadletter
        last_seq = self._last_seq
        for msg in batch:
            m.messages += 1
            if msg.dup:
                m.redelivered += 1
            now = self.clock()
            try:
                outputs = route(msg.topic, msg.payload, snap, now, retained=msg.retain)
            except Exception as exc:  # the contract: bad input never crashes the bridge
                # The class only: a message or topic may carry anything, and logs must not.
                log.error("internal error routing a message: %s", type(exc).__name__)
                outputs = [internal_error(msg.topic, msg.payload, now, exc)]
            for out in outputs:
                if isinstance(out, Forward):
                    topic = urgent_topic if out.lane is Lane.URGENT else events_topic
                    m.forwarded[topic] += 1
                    prev = last_seq.get(out.device_id)
                    if prev is not None and out.seq <= prev:
                        m.seq_replays += 1
                    else:
                        last_seq[out.device_id] = out.seq
                    append(Record(topic, out.key.encode(), out.value))
                elif isinstance(out, DeadLetter):
                    m.deadlettered[out.reason] += 1
                    append(Record(dl_topic, None if out.key is None else out.key.encode(), out.to_json()))
                elif isinstance(out, Discarded):
                    m.discarded_no_consent += 1
                    if out.home_id not in self._homes_without_consent:
                        self._homes_without_consent.add(out.home_id)
                        log.info("home %s has no active monitoring consent: its readings are discarded", out.home_id)
        return records

    def _on_new_snapshot(self, snap: RegistrySnapshot) -> None:
        # A home whose consent is back is forgotten, so a later withdrawal is logged again.
        active = {d.home_id for d in snap.devices.values() if d.monitoring_active}
        self._homes_without_consent -= active
        self._seen_snapshot = snap

    def log_stats(self) -> None:
        """One log line of counters (no personal data: topics and reason codes only)."""
        log.info("bridge stats %s", json.dumps(self.metrics.as_dict(), sort_keys=True))



class _Failed:
    """A batch the sink refused outright; waiting on it raises so that it is re-sent."""

    def done(self) -> bool:
        return True

    def wait(self) -> None:
        raise DeliveryError("the sink refused the batch")
