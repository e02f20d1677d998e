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
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLD and GC_THRESHOLD[0] > before[0]
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
