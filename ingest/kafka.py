"""The bridge's Kafka producer: durable (acks=all, idempotent), batched, all-or-error.

The only file of the bridge that produces to Kafka. :meth:`EventProducer.send_batch`
hands a batch of records over without waiting; the :class:`PendingBatch` it returns
says when the broker has acknowledged every record of it, which is what lets the
bridge acknowledge the MQTT messages behind them.

Built on aiokafka's batch API (``create_batch`` / ``send_batch``) rather than a
per-record ``send()``: the records of a batch are partitioned here (the Java
client's murmur2, memoised per resident key) and appended to one record batch
per partition by aiokafka's compiled builder (~0.6 µs a record, against ~18 µs
in kafka-python's pure-Python ``send()`` and sender). The aiokafka producers run
on an event loop in a thread of their own; per partition, one pump hands the
record batches to aiokafka strictly in order, and records that arrive while the
previous batch waits for its request are coalesced into the next one (see
:class:`_Lane`), so one resident's events keep their order. aiokafka sends one
request per partition at a time and, with idempotence, retries until the broker
has it, so retries keep that order too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.partitioner.default import murmur2

from ingest.messages import DeliveryError, Record

log = logging.getLogger(__name__)


class KeyPartitioner:
    """The Java client's murmur2 partitioning, memoised per key.

    The hash is pure Python (~10 µs); a region has a few thousand residents, so the
    hash of each resident id is computed once. Same partitions as the Java client
    (and kafka-python's default partitioner), so every consumer agrees on them.
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self._hash: dict[bytes, int] = {}
        self._max_keys = max_keys
        self._spread = itertools.count()

    def __call__(self, key: bytes | None, partitions: int) -> int:
        """The partition (``0 .. partitions-1``) of a record with this key."""
        if key is None:  # dead letters without a gateway: any partition
            return next(self._spread) % partitions
        h = self._hash.get(key)
        if h is None:
            if len(self._hash) >= self._max_keys:
                self._hash.clear()
            h = self._hash[key] = murmur2(key) & 0x7FFFFFFF
        return h % partitions


@dataclass(frozen=True, slots=True)
class ProducerTuning:
    """Throughput knobs (docs/ingest.md records what was measured)."""

    #: How long aiokafka may hold a record batch that is not full. The bridge hands over
    #: whole batches and closes them, so they go out at once; kept for ``--linger-ms``.
    linger_ms: int = 0
    batch_size: int = 512 * 1024  # bytes per record batch (one per partition and request)
    compression_type: str | None = None
    max_request_size: int = 4 * 1024 * 1024


class PendingBatch:
    """Records handed to the producer, not yet known to be acknowledged."""

    def __init__(self, lanes: list[concurrent.futures.Future[None]], deadline: float) -> None:
        self._lanes = lanes
        self._deadline = deadline

    def done(self) -> bool:
        """True once Kafka answered for every record (success or failure); never blocks."""
        return all(f.done() for f in self._lanes)

    def wait(self) -> None:
        """Block until every record is acknowledged; :class:`DeliveryError` if any is not."""
        for fut in self._lanes:
            try:
                fut.result(timeout=max(0.0, self._deadline - time.monotonic()))
            except concurrent.futures.TimeoutError as exc:
                raise DeliveryError("records not acknowledged in time") from exc
            except DeliveryError:
                raise
            except Exception as exc:
                raise DeliveryError(f"record not acknowledged: {type(exc).__name__}") from exc


#: Records of one bridge batch for one lane, grouped per (topic, partition), each in order.
_Groups = dict[tuple[str, int], list[tuple[bytes | None, bytes]]]


class _Tracker:
    """One bridge batch on one lane: done when every record batch holding its records is acked."""

    __slots__ = ("open", "result")

    def __init__(self, result: concurrent.futures.Future[None]) -> None:
        self.result = result
        self.open = 0

    def settle(self, error: BaseException | None) -> None:
        if self.result.done():
            return
        if error is not None:
            self.result.set_exception(DeliveryError(f"record not acknowledged: {type(error).__name__}"))
            return
        self.open -= 1
        if self.open == 0:
            self.result.set_result(None)


class _Open:
    """A record batch being filled for one partition (not yet handed to aiokafka)."""

    __slots__ = ("builder", "trackers")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.trackers: list[_Tracker] = []


class _Lane:
    """One aiokafka producer, fed record batches per partition, coalescing while Kafka is busy.

    aiokafka holds at most one undrained record batch per partition and sends one request per
    broker connection at a time, so a record batch per bridge batch would mean one bridge batch
    per partition per round trip: small bridge batches (a light load) would cap the throughput
    and queue. Instead each partition has one open record batch: records are appended to it
    until the partition's pump can hand it over (at once when the partition is idle, else as
    soon as the previous one is drained into a request), so each request carries everything
    that arrived during the previous round trip. Runs entirely in the event loop's thread.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.open: dict[tuple[str, int], _Open] = {}
        self.sealed: dict[tuple[str, int], deque[_Open]] = {}  # full ones, in order, before `open`
        self.pumping: set[tuple[str, int]] = set()
        self.fatal: BaseException | None = None

    def alive(self) -> bool:
        sender = getattr(self.producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        return self.fatal is None and (task is None or not task.done())

    def add(self, groups: _Groups, now_ms: int, result: concurrent.futures.Future[None]) -> None:
        """Append one bridge batch's records (called in the loop's thread); ``result`` tells when
        Kafka has all of them."""
        try:
            self._add(groups, now_ms, result)
        except Exception as exc:  # a bug or a closed producer: the bridge re-sends the batch
            if not result.done():
                result.set_exception(DeliveryError(f"send failed: {type(exc).__name__}"))

    def _add(self, groups: _Groups, now_ms: int, result: concurrent.futures.Future[None]) -> None:
        tracker = _Tracker(result)
        tracker.open = 1  # held until every group is appended
        for tp, items in groups.items():
            o = self.open.get(tp)
            if o is None:
                o = self.open[tp] = _Open(self.producer.create_batch())
            o.trackers.append(tracker)
            tracker.open += 1
            append = o.builder.append
            for key, value in items:
                if append(timestamp=now_ms, key=key, value=value) is None:
                    # Full: sealed, handed over in order before the next one.
                    self.sealed.setdefault(tp, deque()).append(o)
                    o = self.open[tp] = _Open(self.producer.create_batch())
                    o.trackers.append(tracker)
                    tracker.open += 1
                    append = o.builder.append
                    if append(timestamp=now_ms, key=key, value=value) is None:
                        tracker.settle(DeliveryError("a record larger than a record batch"))
                        return
            if tp not in self.pumping:
                self.pumping.add(tp)
                asyncio.get_running_loop().create_task(self._pump(tp))
        tracker.settle(None)  # the hold

    def _next(self, tp: tuple[str, int]) -> _Open | None:
        sealed = self.sealed.get(tp)
        if sealed:
            return sealed.popleft()
        return self.open.pop(tp, None)

    async def _pump(self, tp: tuple[str, int]) -> None:
        """Hands the partition's record batches to aiokafka in order; waits (inside send_batch)
        while the previous one is not yet drained, and meanwhile new records coalesce."""
        try:
            while (o := self._next(tp)) is not None:
                o.builder.close()
                try:
                    delivered = await self.producer.send_batch(o.builder, tp[0], partition=tp[1])
                except Exception as exc:  # refused (closed, no room in time, a fatal error)
                    for t in o.trackers:
                        t.settle(exc)
                    continue
                delivered.add_done_callback(functools.partial(_settle, trackers=o.trackers))
        finally:
            self.pumping.discard(tp)


def _settle(delivered: asyncio.Future[Any], *, trackers: list[_Tracker]) -> None:
    error = DeliveryError("the producer was closed") if delivered.cancelled() else delivered.exception()
    for t in trackers:
        t.settle(error)


class EventProducer:
    """Kafka producers with acks=all and idempotence, sending in acknowledged batches."""

    def __init__(self, bootstrap: str, client_id: str = "carechain-bridge", tuning: ProducerTuning | None = None,
                 delivery_timeout_s: float = 60.0, urgent_topics: Sequence[str] = ()) -> None:
        self.tuning = tuning or ProducerTuning()
        self.delivery_timeout_s = delivery_timeout_s
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._urgent_topics = frozenset(urgent_topics)
        self._partition = KeyPartitioner()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-producer", daemon=True)
        self._thread.start()
        try:
            self._bulk = self._call(self._open(client_id))
            # The urgent lane gets a producer (and connection) of its own: a fall never waits
            # behind a large bulk request in flight.
            self._urgent = self._call(self._open(f"{client_id}-urgent")) if self._urgent_topics else self._bulk
        except DeliveryError:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self, client_id: str) -> _Lane:
        t = self.tuning
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap.split(","),
            client_id=client_id,
            acks="all",
            # Idempotence makes the broker drop a batch it already has when the producer retries
            # it, so a retry after a lost ack does not duplicate; aiokafka then retries until the
            # broker has it (one request per partition at a time: order is kept).
            enable_idempotence=True,
            linger_ms=t.linger_ms,
            max_batch_size=t.batch_size,
            max_request_size=t.max_request_size,
            compression_type=t.compression_type,
            request_timeout_ms=30_000,
        )
        try:
            await asyncio.wait_for(producer.start(), 10.0)
        except (TimeoutError, AIOKafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise DeliveryError(f"Kafka at {self._bootstrap} not reachable: {type(exc).__name__}") from exc
        return _Lane(producer)

    def _partitions(self, lane: _Lane, topic: str) -> int:
        parts = lane.producer.client.cluster.partitions_for_topic(topic)
        if not parts:
            try:
                parts = self._call(lane.producer.partitions_for(topic), timeout=15.0)
            except Exception as exc:
                raise DeliveryError(f"no metadata for topic {topic}: {type(exc).__name__}") from exc
            if not parts:
                raise DeliveryError(f"topic {topic} has no partitions")
        return len(parts)

    def warm(self, topics: Sequence[str]) -> None:
        """Fetch the partitions of ``topics`` now, so the first record of each (a fall, say) does
        not wait for a metadata round trip. Raises :class:`DeliveryError` when one is missing."""
        for topic in topics:
            lane = self._urgent if topic in self._urgent_topics else self._bulk
            self._partitions(lane, topic)
            # And connect to the partitions' leaders now (the bootstrap connection is another one).
            cluster = lane.producer.client.cluster
            leaders = {cluster.leader_for_partition(TopicPartition(topic, p))
                       for p in cluster.partitions_for_topic(topic) or ()}
            for node in leaders - {None, -1}:
                try:
                    self._call(lane.producer.client.ready(node), timeout=15.0)
                except Exception as exc:
                    raise DeliveryError(f"Kafka node {node} not reachable: {type(exc).__name__}") from exc

    def _revive(self) -> None:
        """A producer whose sender died (a fatal error) is replaced; its unanswered records fail."""
        for name in ("_bulk", "_urgent"):
            lane: _Lane = getattr(self, name)
            if lane.alive():
                continue
            log.error("Kafka producer %s stopped working; starting a new one", name[1:])
            new = self._call(self._open(self._client_id if name == "_bulk" else f"{self._client_id}-urgent"))
            if self._urgent is self._bulk:
                self._bulk = self._urgent = new
                return
            setattr(self, name, new)

    def send_batch(self, records: Sequence[Record]) -> PendingBatch:
        """Hand ``records`` (in order) to the producers without waiting; the result tells when
        Kafka acknowledged them. Partitioned here; appended and sent by the event loop's thread."""
        if not (self._bulk.alive() and self._urgent.alive()):
            self._revive()
        urgent_topics, partition = self._urgent_topics, self._partition
        per_lane: dict[int, tuple[_Lane, _Groups]] = {}
        counts: dict[str, int] = {}
        for r in records:
            topic = r.topic
            lane = self._urgent if topic in urgent_topics else self._bulk
            entry = per_lane.get(id(lane))
            if entry is None:
                entry = per_lane[id(lane)] = (lane, {})
            n = counts.get(topic)
            if n is None:
                n = counts[topic] = self._partitions(lane, topic)
            tp = (topic, partition(r.key, n))
            group = entry[1].get(tp)
            if group is None:
                group = entry[1][tp] = []
            group.append((r.key, r.value))
        now_ms = int(time.time() * 1000)
        results: list[concurrent.futures.Future[None]] = []
        for lane, groups in per_lane.values():
            result: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._loop.call_soon_threadsafe(lane.add, groups, now_ms, result)
            results.append(result)
        return PendingBatch(results, time.monotonic() + self.delivery_timeout_s)

    def send_all(self, records: Sequence[Record]) -> None:
        """Produce ``records`` (in order) and return once Kafka acknowledged all of them.

        Raises :class:`DeliveryError` when any record failed or the acks did not come
        in time; the caller must then not acknowledge the inputs.
        """
        self.send_batch(records).wait()

    def missing_topics(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` the cluster does not have."""
        return missing_topics(self._bootstrap, names)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what was handed over, wait for it (up to ``timeout_s``) and close the connections."""
        lanes = [self._bulk] if self._urgent is self._bulk else [self._bulk, self._urgent]

        async def _close() -> None:
            # What was handed over is appended already; wait until the pumps handed it to aiokafka.
            deadline = time.monotonic() + timeout_s
            while any(lane.pumping for lane in lanes) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for lane in lanes:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lane.producer.stop(), timeout_s)

        try:
            self._call(_close(), timeout=2 * timeout_s + 5)
        except Exception as exc:  # closing must not raise: the caller is shutting down
            log.warning("closing the Kafka producer: %s", type(exc).__name__)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


def missing_topics(bootstrap: str, names: Sequence[str]) -> list[str]:
    """Those of ``names`` the cluster does not have (asked through an admin client, which
    answers at once, where a producer would block for ``max_block_ms``)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    return [n for n in names if n not in existing]
