"""Unit tests of the bridge loop with an in-memory sink (no services): batching, ack order,
retries, internal errors, consent logging."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

import pytest

from carechain.events import Event
from ingest.bridge import Bridge, BridgeTuning, LaneTopics
from ingest.messages import DeliveryError, InboundMessage, Record
from ingest.routing import RegisteredDevice, RegistrySnapshot

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TOPICS = LaneTopics("ev", "urg", "dl")


class FixedRegistry:
    def __init__(self, snap: RegistrySnapshot) -> None:
        self.snapshot = snap


class MemorySink:
    def __init__(self, failures: int = 0) -> None:
        self.records: list[Record] = []
        self.failures = failures
        self.calls = 0

    def send_batch(self, records: list[Record]) -> Done:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise DeliveryError("broker unavailable")
        self.records += records
        return Done()


class Done:
    def done(self) -> bool:
        return True

    def wait(self) -> None:
        return None


def snapshot(active: bool = True) -> RegistrySnapshot:
    return RegistrySnapshot([
        RegisteredDevice("gw-1", "gw-1", "h-1", "r-1", "hall", "gateway", active),
        RegisteredDevice("m-1", "gw-1", "h-1", "r-1", "hall", "motion", active),
    ])


def msg(mid: int, payload: bytes, topic: str = "carechain/v1/gw/gw-1/events", connection: int = 1,
        dup: bool = False) -> InboundMessage:
    return InboundMessage(topic, payload, mid, 1, False, dup, connection)


def good(seq: int, kind: str = "motion") -> bytes:
    return json.dumps({"v": 1, "device_id": "m-1", "kind": kind, "value": True, "ts": NOW.isoformat(),
                       "seq": seq}).encode()


def make(sink: MemorySink, registry: object | None = None, acked: list[int] | None = None) -> Bridge:
    log = acked if acked is not None else []

    def ack(m: InboundMessage) -> bool:
        log.append(m.mid)
        return m.connection == 1

    return Bridge(registry or FixedRegistry(snapshot()), sink, ack, TOPICS,  # type: ignore[arg-type]
                  BridgeTuning(batch_max_messages=100, batch_wait_ms=1, stats_interval_s=3600), clock=lambda: NOW)


def test_batch_is_produced_then_acked_in_arrival_order() -> None:
    sink, acked = MemorySink(), []
    b = make(sink, acked=acked)
    b.handle_batch([msg(5, good(1)), msg(3, good(2, "fall")), msg(9, b"junk")])
    assert [r.topic for r in sink.records] == ["ev", "urg", "dl"]
    assert [r.key for r in sink.records] == [b"r-1", b"r-1", b"gw-1"]
    assert acked == [5, 3, 9]
    assert b.metrics.forwarded == {"ev": 1, "urg": 1} and b.metrics.deadlettered == {"bad_json": 1}


def test_kafka_failure_is_retried_and_nothing_acked_before_success() -> None:
    sink, acked = MemorySink(failures=2), []
    b = make(sink, acked=acked)
    b.handle_batch([msg(1, good(1))], threading.Event())
    assert sink.calls == 3 and len(sink.records) == 1 and acked == [1]
    assert b.metrics.kafka_retries == 2


def test_stop_during_kafka_outage_leaves_messages_unacked() -> None:
    sink, acked = MemorySink(failures=10**6), []
    b = make(sink, acked=acked)
    stop = threading.Event()
    stop.set()
    b.handle_batch([msg(1, good(1))], stop)
    assert acked == [] and sink.records == []


def test_ack_on_a_dropped_connection_is_counted_as_stale() -> None:
    b = make(MemorySink())
    b.handle_batch([msg(1, good(1), connection=0), msg(2, good(2), dup=True)])
    assert b.metrics.unacked_stale == 1 and b.metrics.redelivered == 1


class ExplodingSnapshot(RegistrySnapshot):
    def device(self, device_id: str) -> RegisteredDevice | None:
        raise RuntimeError("registry bug with Anna Andersson 19400101-1234")


def test_exception_while_routing_dead_letters_with_class_name_only(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    b = make(sink, FixedRegistry(ExplodingSnapshot(())))
    with caplog.at_level(logging.ERROR):
        b.handle_batch([msg(1, good(1))])
    [rec] = sink.records
    doc = json.loads(rec.value)
    assert rec.topic == "dl" and doc["reason"] == "internal_error" and doc["detail"] == "RuntimeError"
    assert "Anna" not in caplog.text and "1940" not in caplog.text and "RuntimeError" in caplog.text


def test_consent_discards_are_counted_and_logged_once_per_home(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    reg = FixedRegistry(snapshot(active=False))
    b = make(sink, reg)
    with caplog.at_level(logging.INFO):
        b.handle_batch([msg(i, good(i)) for i in range(5)])
        assert sink.records == [] and b.metrics.discarded_no_consent == 5
        reg.snapshot = snapshot(active=True)
        b.handle_batch([msg(9, good(9))])
        reg.snapshot = snapshot(active=False)
        b.handle_batch([msg(10, good(10))])
    assert caplog.text.count("home h-1 has no active monitoring consent") == 2  # withdrawn twice
    assert len(sink.records) == 1


def test_replayed_sequence_numbers_are_counted_but_forwarded() -> None:
    sink = MemorySink()
    b = make(sink)
    b.handle_batch([msg(1, good(1)), msg(2, good(2)), msg(3, good(2))])
    assert b.metrics.seq_replays == 1 and len(sink.records) == 3
    assert len({Event.from_json(r.value).event_id for r in sink.records}) == 2


def test_run_loop_batches_offered_messages_and_stops() -> None:
    sink, acked = MemorySink(), []
    b = make(sink, acked=acked)
    for i in range(250):
        b.offer(msg(i, good(i)))
    stop = threading.Event()
    t = threading.Thread(target=b.run, args=(stop,))
    t.start()
    for _ in range(100):
        if len(acked) == 250:
            break
        threading.Event().wait(0.05)
    stop.set()
    t.join(5)
    assert acked == list(range(250)) and len(sink.records) == 250
    assert b.metrics.batches >= 3  # batch_max_messages=100


class LaterSink:
    """Acknowledges nothing until waited on; the first batch fails once when waited on."""

    def __init__(self, acked: list[int]) -> None:
        self.records: list[Record] = []
        self.acked = acked
        self.failed_once = False
        self.acked_when_first_waited: list[int] | None = None

    def send_batch(self, records: list[Record]) -> Later:
        self.records += records
        return Later(self, first=not self.records[: -len(records)])


class Later:
    def __init__(self, sink: LaterSink, first: bool) -> None:
        self.sink, self.first = sink, first

    def done(self) -> bool:
        return False

    def wait(self) -> None:
        if self.sink.acked_when_first_waited is None:
            self.sink.acked_when_first_waited = list(self.sink.acked)
        if self.first and not self.sink.failed_once:
            self.sink.failed_once = True
            raise DeliveryError("timeout")


def test_pipelined_batches_are_acked_in_order_only_after_kafka_and_failures_resent() -> None:
    acked: list[int] = []
    sink = LaterSink(acked)
    b = Bridge(FixedRegistry(snapshot()), sink, lambda m: acked.append(m.mid) or True, TOPICS,  # type: ignore[func-returns-value]
               BridgeTuning(batch_max_messages=10, batch_wait_ms=0, stats_interval_s=3600, max_inflight_batches=3),
               clock=lambda: NOW)
    for i in range(40):
        b.offer(msg(i, good(i)))
    stop = threading.Event()
    t = threading.Thread(target=b.run, args=(stop,))
    t.start()
    for _ in range(100):
        if len(acked) == 40:
            break
        threading.Event().wait(0.05)
    stop.set()
    t.join(5)
    assert acked == list(range(40))
    assert sink.acked_when_first_waited == []  # nothing acked before Kafka answered
    assert b.metrics.kafka_retries == 1 and len(sink.records) == 50  # the failed batch was sent again
