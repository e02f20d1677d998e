"""The worker's glue around the monitor, without Kafka: batches, new residents, replays, bad input.

The faust app is built but not started; the state table is replaced by a dict
and the two sends by lists (the Kafka paths are covered by test_worker_kafka).
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from carechain.candidates import AlertCandidate
from carechain.events import Kind
from carechain.settings import Settings
from streams.sink import CountingSink
from streams.synthetic import Home
from streams.worker import GC_THRESHOLD, MonitorCodec, StreamWorker, WorkerOptions, tune_gc
from tests.streams.conftest import local


@dataclass
class Message:
    """A Kafka record as the worker reads it (Faust's ``Message``)."""

    topic: str
    partition: int
    offset: int
    value: bytes


class Table:
    """The state table without Kafka: ``data`` is the local store, item writes are checkpoints."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.written: list[str] = []

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.written.append(key)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def items(self) -> Any:
        return self.data.items()


def _worker(tmp_path: Path) -> tuple[StreamWorker, list[AlertCandidate], list[bytes], CountingSink]:
    sink = CountingSink()
    worker = StreamWorker(Settings(state_dir=tmp_path), WorkerOptions(app_id="glue-test", lateness_s=5), sink)
    worker.state = Table()
    sent: list[AlertCandidate] = []
    dead: list[bytes] = []

    async def send(cands: list[AlertCandidate]) -> None:
        sent.extend(cands)

    async def dead_letter(payload: bytes | None, reason: str, detail: str) -> None:
        dead.append(payload or b"")

    worker._send_candidates = send  # type: ignore[method-assign]
    worker._dead_letter = dead_letter  # type: ignore[method-assign]
    return worker, sent, dead, sink


def test_a_new_residents_events_in_one_batch_all_reach_one_monitor(tmp_path: Path) -> None:
    worker, sent, _, sink = _worker(tmp_path)
    home = Home()
    t = local(24, 12)
    evs = [
        home.heartbeat(t),
        home.event(Kind.HEART_RATE, 150.0, t + timedelta(seconds=1)),
        home.heartbeat(t + timedelta(seconds=9)),
    ]
    batch = [Message("events", 0, i, e.to_json()) for i, e in enumerate(evs)]
    asyncio.run(worker.handle_messages(batch, urgent=False))
    m = worker.state["r-1"]
    assert m.events_count == 3
    assert [c.kind for c in sent] == ["vitals_heart_rate"]  # released by the later heartbeat (lateness 5 s)
    assert sink.observations == 3


def test_a_replayed_batch_is_skipped(tmp_path: Path) -> None:
    worker, sent, _, _ = _worker(tmp_path)
    home = Home()
    fall = home.event(Kind.FALL, True, local(24, 12), room="hall")
    batch = [Message("events.urgent", 2, 7, fall.to_json())]
    asyncio.run(worker.handle_messages(batch, urgent=True))
    asyncio.run(worker.handle_messages(batch, urgent=True))  # Faust redelivers after a rebalance (#502)
    assert [c.kind for c in sent] == ["fall"]
    assert worker.stats.replayed == 1


def test_bad_input_goes_to_the_dead_letters_and_the_rest_is_handled(tmp_path: Path) -> None:
    worker, sent, dead, _ = _worker(tmp_path)
    home = Home()
    fall = home.event(Kind.FALL, True, local(24, 12), room="hall")
    batch = [
        Message("events.urgent", 0, 1, b"{not json"),
        Message("events.urgent", 0, 2, b'{"v":1,"kind":"fall","value":true}'),  # JSON, but not an event
        Message("events.urgent", 0, 3, fall.to_json()),
    ]
    asyncio.run(worker.handle_messages(batch, urgent=True))
    assert dead == [b"{not json", b'{"v":1,"kind":"fall","value":true}'] and worker.stats.bad == 2
    assert [c.kind for c in sent] == ["fall"]


def test_the_worker_process_takes_fewer_gc_passes() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's default (another test in this process may have changed it)
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLD and GC_THRESHOLD[0] > 700
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_state_codec_is_the_monitors_own(tmp_path: Path) -> None:
    worker, _, _, _ = _worker(tmp_path)
    home = Home()
    beat = Message("events", 0, 0, home.heartbeat(local(24, 12)).to_json())
    asyncio.run(worker.handle_messages([beat], urgent=False))
    codec = MonitorCodec()
    raw = codec.dumps(worker.state["r-1"])
    assert raw[:2] == b"\xcc\x4d"
    restored: Any = codec.loads(raw)
    assert restored.to_bytes() == raw


def test_only_significant_changes_are_checkpointed_in_the_batch(tmp_path: Path) -> None:
    worker, _, _, _ = _worker(tmp_path)
    t = local(24, 12)
    quiet, vital = Home(resident_id="r-quiet", home_id="h-quiet"), Home(resident_id="r-vital", home_id="h-vital")
    batch = [
        Message("events", 0, 0, quiet.motion(t).to_json()),
        Message("events", 0, 1, vital.motion(t).to_json()),
        Message("events", 0, 2, vital.event(Kind.HEART_RATE, 70.0, t + timedelta(seconds=1)).to_json()),
        Message("events", 0, 3, quiet.heartbeat(t + timedelta(seconds=2)).to_json()),
    ]
    asyncio.run(worker.handle_messages(batch, urgent=False))
    table: Any = worker.state
    assert set(table.data) == {"r-quiet", "r-vital"}  # both held at once
    assert table.written == ["r-vital"]  # a reading waiting for ordering is in the changelog before the ack
    assert set(worker.lazy) == {"r-quiet"}  # motion and heartbeats only: checkpointed lazily


class Consumer:
    """Records acks as Faust's consumer would take them (offsets committed only when acked)."""

    flow_active = True

    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        return True


def test_bulk_records_are_acked_only_after_their_monitors_are_checkpointed(tmp_path: Path) -> None:
    worker, sent, _, sink = _worker(tmp_path)
    consumer = Consumer()
    worker.app.consumer = consumer  # type: ignore[assignment]
    worker.options.checkpoint_s = 3600.0  # only the explicit checkpoint below
    home = Home()
    t = local(24, 12)
    first = [
        Message("events", 0, 0, home.heartbeat(t).to_json()),
        Message("events", 0, 1, home.event(Kind.HEART_RATE, 71.0, t + timedelta(seconds=1)).to_json()),
    ]
    second = [Message("events", 0, 2, home.event(Kind.HEART_RATE, 72.0, t + timedelta(seconds=2)).to_json())]
    table: Any = worker.state

    async def run() -> None:
        await worker.handle_bulk(first)
        await worker.handle_bulk(second)
        assert sink.observations == 3  # observations are stored at once, as on every lane
        assert consumer.acked == [] and table.written == []  # held back: nothing in the changelog yet
        await worker.checkpoint_bulk()

    asyncio.run(run())
    assert table.written == ["r-1"]  # one checkpoint for the resident's two readings
    assert consumer.acked == [0, 1, 2]  # then every record of both batches
    assert not worker.dirty and not worker.unacked and not sent


class Producer:
    """aiokafka's batch API over real record batches; the first ``send_batch`` can wait for ``gate``."""

    def __init__(self, batch_bytes: int = 512 * 1024) -> None:
        self.batch_bytes = batch_bytes
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False  # deliveries fail (after aiokafka's retries)

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[None]:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        records = MemoryRecords(bytes(batch._build())).next_batch()
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            delivered.set_exception(TimeoutError("batch expired"))
        else:
            self.sent.append((topic, partition, [(r.key, r.value) for r in records]))
            delivered.set_result(None)
        return delivered


def _with_producer(worker: StreamWorker, producer: Producer) -> None:
    worker.app._producer = type("FaustProducer", (), {"_producer": producer})()  # type: ignore[attr-defined]
    worker.state.changelog_topic = type("Topic", (), {"get_topic_name": lambda self: "state-changelog"})()


def _monitors(worker: StreamWorker, n: int) -> dict[str, Any]:
    homes = [Home(resident_id=f"r-{i}", home_id=f"h-{i}", gateway_id=f"gw-{i}") for i in range(n)]
    batch = [
        Message("events", worker.partition(h.resident_id), i, h.heartbeat(local(24, 12)).to_json())
        for i, h in enumerate(homes)
    ]
    asyncio.run(worker.handle_messages(batch, urgent=False))
    return {h.resident_id: worker.held()[h.resident_id] for h in homes}


def test_states_go_to_the_changelog_in_one_batch_per_partition(tmp_path: Path) -> None:
    worker, _, _, _ = _worker(tmp_path)
    monitors = _monitors(worker, 40)
    producer = Producer(batch_bytes=2048)  # a few records a batch: a full batch continues in the next
    _with_producer(worker, producer)
    asyncio.run(worker.write_states(monitors))
    got = {key.decode(): (p, value) for topic, p, records in producer.sent for key, value in records}
    assert all(topic == "state-changelog" for topic, _, _ in producer.sent)
    assert got == {rid: (worker.partition(rid), m.to_bytes()) for rid, m in monitors.items()}
    partitions = [p for _, p, _ in producer.sent]
    assert len(set(partitions)) > 1 and len(partitions) < len(monitors)
    assert partitions == sorted(partitions, key=partitions.index)  # a partition's batches one after another


def test_an_older_snapshot_never_follows_a_newer_one(tmp_path: Path) -> None:
    worker, _, _, _ = _worker(tmp_path)
    monitors = _monitors(worker, 40)
    producer = Producer()
    _with_producer(worker, producer)
    first = next(iter(monitors))  # its partition's batch is sent first (and waits)
    late = next(r for r in monitors if worker.partition(r) != worker.partition(first))
    old = monitors[late].to_bytes()

    async def run() -> None:
        producer.gate = gate = asyncio.Event()
        checkpoint = asyncio.create_task(worker.write_states(monitors))  # waits in its first batch
        await asyncio.sleep(0.01)
        assert not producer.sent
        monitors[late].events_count += 1  # meanwhile the urgent lane changes a monitor and writes it
        await worker.write_states({late: monitors[late]})
        gate.set()
        await checkpoint

    asyncio.run(run())
    written = [(key.decode(), value) for _, _, records in producer.sent for key, value in records]
    new = monitors[late].to_bytes()
    assert new != old
    assert [v for k, v in written if k == late] == [new]  # the checkpoint's older snapshot was left out
    assert {k for k, _ in written} == set(monitors)


def test_a_failed_state_write_is_written_again_and_holds_commits_back(tmp_path: Path) -> None:
    worker, _, _, _ = _worker(tmp_path)
    worker.app.consumer = Consumer()  # type: ignore[assignment]
    monitors = _monitors(worker, 6)
    producer = Producer()
    _with_producer(worker, producer)
    producer.fail = True

    async def run() -> None:
        await worker.write_states(monitors)
        await asyncio.sleep(0)  # the delivery callbacks
        assert worker.unwritten == set(monitors) and set(worker.dirty) == set(monitors)
        assert not worker.may_commit()
        producer.fail = False
        await worker.checkpoint_bulk()
        await asyncio.sleep(0)

    asyncio.run(run())
    assert worker.may_commit() and not worker.unwritten and not worker.dirty
    written = {key.decode(): value for _, _, records in producer.sent for key, value in records}
    assert written == {rid: m.to_bytes() for rid, m in monitors.items()}
