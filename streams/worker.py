"""The Faust stream worker: Kafka in, the pure per-resident monitor in the middle, outputs out.

The only module in ``streams`` that imports faust. The agents are a few lines
around :class:`~streams.monitor.ResidentMonitor`; everything they decide is
decided there.

Lanes. ``events.urgent`` (falls, alarms, the medication robot, gateway status)
has its own agent that handles each event alone, at once. ``events`` (bulk
telemetry) is taken below Faust's per-message stream (:class:`BulkLaneConsumer`):
each fetch of the one Faust consumer is split, its urgent records handed to the
urgent agent first, its bulk records handled as one batch in the fetch loop. The
prefetch per partition is kept small, so an urgent event waits for at most one
fetch — never for the bulk backlog. ``carechain bench worker`` measures it.
(``WorkerOptions.bulk_fast_path=False`` restores Faust's own ``take_events`` agent.)

Durability. Offsets move on only after the outputs are durable: Faust commits
acked offsets only, and flushes the producer before it commits. For every batch
the worker (1) stores observations and scores through the storage writer,
synchronously; (2) sends alert candidates to ``alerts`` (key = resident) and
awaits them, and writes the monitors that raised them to the state table
(changelog, explicit codec) at once; (3) on the bulk fast path, writes the
monitors changed by other readings at the next checkpoint (every
``checkpoint_s``, 5 s: a resident with many readings is written once) and acks
the records only after it; the urgent lane writes at once and acks at once. A
monitor that only counted motion or heartbeats is checkpointed lazily (within
``lazy_checkpoint_s``, 60 s): a crash can lose that minute of counts and "last
heard" times, never an alert, an incident key or an event waiting for ordering.
Replays after a restart or rebalance (faust #502) are recognised per resident
by source offset and skipped, and incident keys live in the state, so one
incident never produces two candidates.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.serializers import codecs
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP, EventT, Message

from carechain.candidates import AlertCandidate, Feedback
from carechain.care_plan import CarePlan
from carechain.events import Event, Kind
from carechain.settings import Settings
from streams.monitor import MonitorOutput, ResidentMonitor
from streams.registry import PauseSwitch
from streams.sink import ObservationSink
from streams.store import CarePlanStore

log = logging.getLogger(__name__)

CODEC = "carechain-monitor"
#: Events whose only effect is a count or a "last heard" (checkpointed lazily).
CHEAP_KINDS = frozenset({Kind.MOTION.value, Kind.GATEWAY_HEARTBEAT.value})
#: A partition this many events behind its end is "lagging": deadlines use its own clock.
LAG_EVENTS = 500
#: Longest a fetch of stream records waits for a rebalance to end before they are read again instead.
REBALANCE_WAIT_S = 5.0
#: Largest record batch the worker produces (the broker's default limit is 1 MB a batch).
CHANGELOG_BATCH_BYTES = 512 * 1024


class MonitorCodec(codecs.Codec):
    """The state table's value codec: :meth:`ResidentMonitor.to_bytes`, never pickle."""

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, ResidentMonitor):
            raise TypeError(f"{CODEC} encodes ResidentMonitor only, not {type(obj).__name__}")
        return obj.to_bytes()

    def _loads(self, s: bytes) -> Any:
        return ResidentMonitor.from_bytes(s)


codecs.register(CODEC, MonitorCodec())


class _Options:
    def __init__(self, serializer: str) -> None:
        self.serializer = serializer


class ResidentKey:
    """Faust key type of the state table: the resident id as UTF-8 bytes ("raw"), a str in memory.

    Faust takes a table's serializers from its key and value types (else JSON);
    these two small types name ours.
    """

    _options = _Options("raw")

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> str:
        return data.decode() if isinstance(data, bytes) else str(data)


class MonitorState:
    """Faust value type of the state table: a :class:`ResidentMonitor` through :class:`MonitorCodec`."""

    _options = _Options(CODEC)

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> ResidentMonitor:
        if not isinstance(data, ResidentMonitor):
            raise TypeError("state table values are ResidentMonitor")
        return data


BulkHandler = Callable[[list[Message]], Any]


class BulkLaneConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer with the bulk lane taken below the per-message stream.

    Faust hands every fetched record to the streams one at a time: two tasks per
    record (``wait_first`` of the delivery and the flow switch), a decode into a
    Faust event, a queue, the stream iterator, the take buffer, and an ack per
    event. For the bulk lane that machinery cost more CPU than the monitors (a
    profile of ``carechain bench worker``). This consumer takes each fetch
    (``getmany``, up to ``broker_max_poll_records``) apart: records of every
    other topic go the ordinary way first — the urgent lane is served before any
    bulk record of the same fetch — and the bulk topic's records go to the
    worker in one batch, awaited in the fetch loop (back-pressure: nothing more is
    fetched until the batch's outputs are durable). The batch's messages are
    tracked and acked through the consumer like the streams' (``track_message``
    / ``ack``), so offsets are committed by Faust's own commit (which flushes the
    producer first) and a rebalance waits for a batch in progress (``wait_empty``).

    A fetch whose flow was stopped (a rebalance) or whose generation is stale is
    dropped without an ack; Faust seeks back to the committed offsets. While a
    rebalance is under way (until Faust's ``on_rebalance_end``) only changelog records
    are handed on; a stream record fetched meanwhile is read again afterwards (the
    partition is sought back to it): Faust clears the agents' queues at the very end
    of a rebalance, after its own seek, and a record in a queue then was lost (a race
    in faust-streaming 0.15.3 itself; docs/detection.md). Written against
    faust-streaming 0.15.3 (pinned): ``_drain_messages`` is its fetch loop.
    """

    #: Fetches of stream records at a rebalance's end that waited for it / fetches whose stream records were
    #: read again (they came while the changelogs were read, or the end did not come in time).
    rebalance_waits: int = 0
    rebalance_holds: int = 0

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs under a real Kafka
        lane: tuple[str, BulkHandler] | None = getattr(self.app, "bulk_lane", None)
        # Without a bulk lane every record goes the ordinary way (still with the rebalance guard).
        bulk_topic, handle_bulk = lane if lane is not None else (None, None)
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        to_message = self._to_message
        highwater = self.highwater
        track_end_offset = self.app.monitor.track_tp_end_offset
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                # Faust's ``getmany`` is an async generator doing, per record, the flow and
                # generation checks, a highwater lookup and a yield (a quarter of this lane's
                # CPU in a profile); here they are done once per fetch and partition.
                records, active_partitions = await self._wait_next_records(1.0)
                generation = self.app.consumer_generation_id
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    try:  # as Faust's getmany: a rebalance stopped the flow, seek back to the committed offsets
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("seek after a stopped flow failed: %s", exc)
                    continue
                bulk: list[Message] = []
                # Stream records fetched while a rebalance is still under way: not handed on, read again.
                held_back: dict[TP, int] = {}
                changelogs = await self._rebalance_guard(records, generation) if self.app.rebalancing else None
                # Other topics first (the urgent lane before any bulk record of this fetch).
                for tp in sorted(records, key=lambda tp: tp.topic == bulk_topic):
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break  # a rebalance began (Faust's getmany stops here too)
                    if active_partitions is not None and tp not in active_partitions and (
                        tp not in self._buffered_partitions
                    ):
                        continue
                    r_offset = get_read_offset(tp)
                    if changelogs is not None and tp.topic not in changelogs:
                        # Still rebalancing (see _rebalance_guard): only the changelogs go on; this partition
                        # is read again from its first record not handed on.
                        unread = [r.offset for r in records[tp] if r_offset is None or r.offset >= r_offset]
                        if unread:
                            held_back[tp] = unread[0]
                        continue
                    track_end_offset(tp, highwater(tp))
                    is_bulk = tp.topic == bulk_topic
                    gaps = acks_enabled_for(tp.topic)
                    for record in records[tp]:
                        offset = record.offset
                        if r_offset is not None and offset < r_offset:
                            continue  # fetched twice (Faust drops these too)
                        if r_offset and offset - r_offset > 1 and gaps:
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        message = to_message(tp, record)
                        if is_bulk:
                            bulk.append(message)
                        else:
                            if not self.flow_active or self.app.consumer_generation_id != generation:
                                break
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        # As Faust does once a record is handed on: the next record's gap check starts here.
                        r_offset = offset
                        set_read_offset(tp, offset)
                if held_back:
                    await self._read_again(held_back, pause=len(held_back) == len(records))
                if not bulk or handle_bulk is None:
                    continue
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    continue  # a rebalance began: not acked, fetched again from the committed offsets
                await asyncio.sleep(0)  # let the urgent agent take what this fetch delivered first
                # track_message without its per-message sensor call (Faust's Monitor counts
                # records in; a fifth of this lane's fetch cost): pending acks for wait_empty.
                track = self._unacked_messages.add
                for held in bulk:
                    track(held)
                await handle_bulk(bulk)  # acks them once their effects are durable (see StreamWorker.handle_bulk)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _rebalance_guard(self, records: Any, generation: int) -> set[str] | None:  # pragma: no cover
        """A fetch while Faust is rebalancing: the changelog topics if its stream records must wait.

        Two hazards. (1) While the changelogs are being read (``app.in_recovery``) the
        monitors are not restored yet: a stream record handed on then would be judged
        against a missing or partial state (Faust pauses the stream partitions then, but a
        drained stream buffer can resume one, and a fetch can carry them). (2) After the
        changelogs, Faust resumes the stream partitions and seeks them to their committed
        offsets, and at the very end its flow control clears every agent's queue. A record
        handed on in between could be cleared from the urgent agent's queue unseen while the
        read offset moved past it, and the fetch after the seek would skip it as "fetched
        twice": a fall lost (issue #4's kill -9 test).

        So: during (1), or when the fetch also holds changelog records, only those go on and
        the stream partitions are read again (:meth:`_read_again`); during (2), which takes
        milliseconds, the fetch waits for the rebalance to end and is then handed on as usual
        (None); it is read again instead if the end does not come within ``REBALANCE_WAIT_S``
        or a recovery starts meanwhile.
        """
        app = self.app
        changelogs = app.tables.changelog_topics
        if app.in_recovery or any(tp.topic in changelogs for tp in records):
            return changelogs
        start = time.monotonic()
        self.rebalance_waits += 1
        while app.rebalancing and not app.in_recovery and time.monotonic() - start < REBALANCE_WAIT_S:
            if app.consumer_generation_id != generation or self._stopped.is_set():
                return None  # a new rebalance: the records are dropped by the generation checks
            await asyncio.sleep(0.005)
        if app.rebalancing:
            log.info(
                "a rebalance did not end within %.0f ms: its stream records are read again afterwards",
                (time.monotonic() - start) * 1000,
            )
            return changelogs
        log.debug("stream records fetched at a rebalance's end waited %.0f ms", (time.monotonic() - start) * 1000)
        return None

    async def _read_again(self, first_unread: dict[TP, int], pause: bool) -> None:  # pragma: no cover
        """Seek partitions back to records fetched but not handed on (a rebalance was under way)."""
        self.rebalance_holds += 1
        try:
            # In the consumer's thread, as Faust's own seeks; sets the read offsets to these offsets.
            await self.seek_wait(first_unread)
        except Exception as exc:  # revoked meanwhile: the new owner reads from the committed offset
            log.warning("seek back after a rebalance failed (%s): %s", type(exc).__name__, exc)
        if pause:
            await asyncio.sleep(0.01)  # nothing else came: not a tight fetch loop while the rebalance goes on

    async def _commit(self, offsets: Any) -> bool:  # pragma: no cover - runs under a real Kafka
        """Faust's commit (after its producer flush), unless a state write failed and is not yet rewritten."""
        may_commit: Callable[[], bool] | None = getattr(self.app, "may_commit", None)
        if may_commit is not None and not may_commit():
            log.warning("offsets not committed: a state changelog write failed and is being written again")
            return False
        return bool(await super()._commit(offsets))


class WorkerApp(faust.App):
    """The worker's Faust app: its consumer takes the bulk lane in batches (:class:`BulkLaneConsumer`)."""

    #: (bulk topic, coroutine function taking a list of messages); None = Faust's own stream.
    bulk_lane: tuple[str, BulkHandler] | None = None
    #: Called before a rebalance waits for unacked messages: checkpoints and acks held bulk records.
    before_wait_empty: Callable[[], Any] | None = None
    #: Asked before offsets are committed (after Faust's producer flush): False holds them back.
    may_commit: Callable[[], bool] | None = None

    async def _consumer_wait_empty(self, consumer: Any, timeout: Any) -> None:
        if self.before_wait_empty is not None:
            await self.before_wait_empty()
        await super()._consumer_wait_empty(consumer, timeout)

    def _new_consumer(self) -> Any:
        transport: Any = self.transport
        return BulkLaneConsumer(
            transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=transport.loop,
        )


@dataclass
class WorkerOptions:
    """How the worker runs; defaults are the production ones."""

    app_id: str
    tick_s: float = 5.0
    batch_max: int = 2000
    batch_within_s: float = 0.2
    lazy_checkpoint_s: float = 60.0
    plan_refresh_s: float = 60.0
    lateness_s: float = 120.0
    paused: PauseSwitch = field(default_factory=PauseSwitch)
    data_dir: Path | None = None
    #: Take the bulk lane in fetch-sized batches below Faust's stream (:class:`BulkLaneConsumer`).
    bulk_fast_path: bool = True
    #: Fast path: every monitor the bulk lane changed is checkpointed at most this often, and the
    #: records are acked only then (held back); a monitor that raised a candidate at once.
    checkpoint_s: float = 5.0
    #: Fast path: checkpoint early when this many bulk records wait for their ack.
    checkpoint_max_records: int = 100_000


@dataclass
class WorkerStats:
    """Counters for logs and the benchmark."""

    events: int = 0
    urgent: int = 0
    late: int = 0
    replayed: int = 0
    bad: int = 0
    candidates: int = 0
    checkpoints: int = 0
    ticks: int = 0
    last_tick_s: float = 0.0
    started: float = field(default_factory=time.monotonic)


class StreamWorker:
    """Builds the Faust app: two event lanes, feedback, a timer, and the resident state table."""

    def __init__(
        self,
        settings: Settings,
        options: WorkerOptions,
        sink: ObservationSink,
        plans: CarePlanStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.options = options
        self.sink = sink
        self.plans = plans
        self.clock = clock
        self.stats = WorkerStats()
        self.plan_cache: dict[str, CarePlan] = {}
        self.attached: set[str] = set()  # monitors given their plan and the pause switch since start
        # Monitors changed only by cheap events since their checkpoint, with when that began.
        self.lazy: dict[str, tuple[ResidentMonitor, float]] = {}
        self.base_paused = set(options.paused)  # from the command line; the database adds to it
        # Where the bulk lane is, per partition: last offset handled and the newest bridge time seen.
        self.partition_of: dict[str, int] = {}
        self.bulk_position: dict[int, int] = {}
        self.bulk_clock: dict[int, datetime] = {}
        self._lagging: set[int] = set()
        # Fast path: monitors changed by the bulk lane since the last checkpoint, and the records
        # whose acks wait for it.
        self.dirty: dict[str, ResidentMonitor] = {}
        self.unacked: list[Any] = []  # Faust Messages
        self.last_checkpoint = time.monotonic()
        self._checkpointing = asyncio.Lock()
        # The changelog writer (:meth:`write_states`): the changelog topic once known, and per
        # resident the number of the write that took its newest snapshot.
        self._changelog_topic: str | None = None
        self._write_no = 0
        self._snapshot_of: dict[str, int] = {}
        # Residents whose last changelog write failed: written again at the next checkpoint, and
        # no offsets are committed until then (WorkerApp.may_commit).
        self.unwritten: set[str] = set()
        self.app = self._build_app()

    # ----------------------------------------------------------------- faust

    def _build_app(self) -> faust.App:
        s, o = self.settings, self.options
        data_dir = o.data_dir or (s.state_dir / "faust" / o.app_id)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        app = WorkerApp(
            o.app_id,
            broker=f"kafka://{s.kafka_bootstrap}",
            store="memory://",
            datadir=str(data_dir),
            topic_partitions=s.kafka_partitions,
            topic_replication_factor=1,
            table_standby_replicas=0,
            web_enabled=False,
            autodiscover=False,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            # A killed worker's residents move to another within ~10 s (Faust's default is 60 s).
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            # Priority of the urgent lane: the consumer serves a partition's prefetched records before the
            # next partition's, so the bulk prefetch is kept small (128 KB, about 400 events per
            # partition) and an urgent record waits for at most that, never for the bulk backlog.
            consumer_max_fetch_size=128 * 1024,
            producer_linger=0.005,
            # Checkpoints go to the changelog as record batches of up to this size (write_states).
            producer_max_batch_size=CHANGELOG_BATCH_BYTES,
            stream_buffer_maxsize=512,
            # One fetch = one bulk batch on the fast path (the urgent records of a fetch go first).
            broker_max_poll_records=o.batch_max if o.bulk_fast_path else 500,
            processing_guarantee="at_least_once",
        )

        def topic(name: str) -> Any:
            return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

        self.urgent_topic = topic(s.topic_urgent)
        self.events_topic = topic(s.topic_events)
        self.feedback_topic = topic(s.topic_feedback)
        self.alerts_topic = topic(s.topic_alerts)
        self.deadletter_topic = topic(s.topic_deadletter)
        self.state: Any = app.Table(
            "resident-state",
            key_type=ResidentKey,
            value_type=MonitorState,
            partitions=s.kafka_partitions,
            use_partitioner=True,  # the timer writes too; keys partition like the source topics (murmur2)
        )

        async def urgent(stream: Any) -> Any:
            async for ev in stream.events():
                await self.handle([ev], urgent=True)
                yield None

        async def bulk(stream: Any) -> Any:
            async for batch in stream.take_events(o.batch_max, within=o.batch_within_s):
                await self.handle(batch, urgent=False)
                yield None

        async def feedback(stream: Any) -> Any:
            async for ev in stream.events():
                await self.handle_feedback(ev)
                yield None

        app.agent(self.urgent_topic, name=f"{o.app_id}.urgent")(urgent)
        # The bulk agent subscribes the topic; on the fast path its records never reach it.
        app.agent(self.events_topic, name=f"{o.app_id}.bulk")(bulk)
        if o.bulk_fast_path:
            app.bulk_lane = (s.topic_events, self.handle_bulk)
            app.before_wait_empty = self.checkpoint_bulk
        app.may_commit = self.may_commit
        app.agent(self.feedback_topic, name=f"{o.app_id}.feedback")(feedback)
        app.timer(o.tick_s, name=f"{o.app_id}.tick")(self.tick)
        app.timer(o.plan_refresh_s, name=f"{o.app_id}.plans")(self.refresh_plans)
        return app

    # ------------------------------------------------------------ monitoring

    def held(self) -> dict[str, ResidentMonitor]:
        """The monitors this worker holds: the state table's local store, read and written without a changelog.

        Faust's memory store keeps a plain dict in ``data``; reading it directly skips two
        layers of Python-level mapping per event. Writes that must reach the changelog go
        through the table (``self.state[rid] = m``).
        """
        store = self.state.data
        return getattr(store, "data", store)

    def monitor(
        self, resident_id: str, home_id: str, held: dict[str, ResidentMonitor] | None = None
    ) -> ResidentMonitor:
        """The resident's monitor: from the state table, or new with their care plan."""
        if held is None:
            held = self.held()
        m = held.get(resident_id)
        if m is None:
            m = ResidentMonitor(
                resident_id, home_id, self._plan(resident_id), self.options.paused, self.options.lateness_s
            )
            self.attached.add(resident_id)
            # Held at once (the next event of this resident in the same batch must find it); the
            # changelog gets it with the batch's checkpoints, or lazily when only cheap events came.
            held[resident_id] = m
        elif resident_id not in self.attached:
            # Restored from the changelog: the codec keeps state, not the plan or the switch.
            m.plan = self._plan(resident_id)
            m.paused = self.options.paused
            self.attached.add(resident_id)
        return m

    def _plan(self, resident_id: str) -> CarePlan:
        plan = self.plan_cache.get(resident_id)
        if plan is None:
            found = self.plans.plans([resident_id]) if self.plans is not None else {}
            plan = self.plan_cache[resident_id] = found.get(resident_id) or CarePlan(resident_id=resident_id)
        return plan

    async def _preload_plans(self, resident_ids: set[str]) -> None:
        missing = [r for r in resident_ids if r not in self.plan_cache]
        if missing and self.plans is not None:
            found = await asyncio.to_thread(self.plans.plans, missing)
            for rid in missing:
                self.plan_cache[rid] = found.get(rid) or CarePlan(resident_id=rid)

    async def handle(self, batch: Sequence[EventT], urgent: bool) -> None:
        """One batch of a Faust stream: see :meth:`handle_messages`; the iteration's end acks it."""
        await self.handle_messages([ev.message for ev in batch], urgent)

    async def handle_bulk(self, messages: list[Any]) -> None:
        """One fetch of the bulk lane from :class:`BulkLaneConsumer`; acked at the next checkpoint.

        Observations are stored and candidates sent (with their monitors checkpointed) before
        this returns, as on every lane. The other changed monitors are checkpointed together
        every ``checkpoint_s`` (a resident with many events in that time is written once,
        not once per batch), and the records are acked only after that: the offsets Faust
        commits never pass a change that is not in the changelog. A crash replays the
        records since the last checkpoint; the monitors skip what their restored state
        already applied (source offsets).
        """
        await self.handle_messages(messages, urgent=False, defer=True)
        self.unacked.extend(messages)
        if (
            time.monotonic() - self.last_checkpoint >= self.options.checkpoint_s
            or len(self.unacked) >= self.options.checkpoint_max_records
            or not getattr(self.app.consumer, "flow_active", True)  # a rebalance waits for these acks
        ):
            await self.checkpoint_bulk()

    async def checkpoint_bulk(self) -> None:
        """Write the bulk lane's changed monitors to the table, then ack the records held back.

        Called from the fetch loop, the timer, and before a rebalance waits for acks (so a
        revoked partition's changes reach the changelog before its new owner restores it).
        """
        async with self._checkpointing:
            dirty, self.dirty = self.dirty, {}
            unacked, self.unacked = self.unacked, []
            self.last_checkpoint = time.monotonic()
            for rid in dirty:
                self.lazy.pop(rid, None)
            await self.write_states(dirty)
            self.stats.checkpoints += len(dirty)
            ack = self.app.consumer.ack
            for message in unacked:
                ack(message)

    async def handle_messages(self, batch: Sequence[Any], urgent: bool, defer: bool = False) -> None:
        """One batch of one lane: monitors, then durable outputs; the caller acks afterwards.

        Each item has the Kafka record's ``value``, ``topic``, ``partition`` and ``offset``.
        ``defer``: changed monitors go to ``dirty`` for :meth:`checkpoint_bulk` (except
        those that raised candidates: checkpointed now, so an incident key is never lost).
        """
        decoded: list[tuple[Event, str, int]] = []
        for msg in batch:
            try:
                ev = Event.from_json(msg.value)
            except (ValueError, KeyError, TypeError) as exc:
                self.stats.bad += 1
                await self._dead_letter(msg.value, getattr(exc, "reason", type(exc).__name__), str(exc)[:200])
                continue
            decoded.append((ev, f"{msg.topic}/{msg.partition}", msg.offset))
            if not urgent:
                self.partition_of[ev.resident_id] = msg.partition
                self.bulk_position[msg.partition] = max(self.bulk_position.get(msg.partition, -1), msg.offset)
                seen = self.bulk_clock.get(msg.partition)
                if seen is None or ev.received_at > seen:
                    self.bulk_clock[msg.partition] = ev.received_at
        await self._preload_plans({ev.resident_id for ev, _, _ in decoded})
        out = MonitorOutput()
        significant: dict[str, ResidentMonitor] = {}
        held = self.held()
        for ev, source, offset in decoded:
            m = self.monitor(ev.resident_id, ev.home_id, held)
            if m.seen_position(source, offset):
                self.stats.replayed += 1
                continue
            result = m.process(ev)
            out.extend(result)
            if result.candidates or urgent:
                significant[ev.resident_id] = m
            elif ev.kind not in CHEAP_KINDS:
                if defer:
                    self.dirty[ev.resident_id] = m
                else:
                    significant[ev.resident_id] = m
            elif ev.resident_id not in self.lazy:
                self.lazy[ev.resident_id] = (m, time.monotonic())
        self.stats.events += len(decoded)
        if urgent:
            self.stats.urgent += len(decoded)
        self.stats.late += sum(1 for o in out.observations if o.extra.get("late"))
        await self._outputs(out, significant)

    async def _outputs(self, out: MonitorOutput, changed: dict[str, ResidentMonitor]) -> None:
        if out.observations or out.scores:
            await asyncio.to_thread(self.sink.write, out.observations, out.scores)
        await self._send_candidates(out.candidates)
        for rid in changed:
            self.lazy.pop(rid, None)
            self.dirty.pop(rid, None)
        await self.write_states(changed)
        self.stats.checkpoints += len(changed)

    async def write_states(self, monitors: dict[str, ResidentMonitor]) -> None:
        """Write these monitors to the state table's changelog: one record batch per partition.

        Faust's table write (``self.state[rid] = m``) costs a Faust future message, a queue
        hop and one producer send per monitor — more than encoding the monitor in a profile of
        the bulk lane's checkpoints. Here the monitors are encoded (``to_bytes``, as the table's
        codec), their records go into one aiokafka record batch per partition (more when a
        batch reaches ``CHANGELOG_BATCH_BYTES``), and the batches into Faust's producer, which
        Faust flushes before it commits offsets, as for its own sends. Keys and partitions are
        the table's (raw resident id; murmur2, like the source topics); the table's local
        store already holds the monitors (:meth:`held`).

        Every state write goes through here. A call may yield (while encoding, every 500
        monitors, and while a batch waits for the previous one of its partition to be on its
        way), and another call (the urgent lane) may write one of its monitors meanwhile: each
        resident's newest snapshot is remembered, and a batch is built only from records that
        are still the newest, so an older snapshot never follows a newer one into the
        changelog (batches of one partition enter the producer in the order they wait).
        """
        if not monitors:
            return
        target = self._changelog_target()
        if target is None:  # no producer yet (tests without Kafka): through Faust's table
            for rid, m in monitors.items():
                self.state[rid] = m
            return
        producer, topic = target
        self._write_no += 1
        no = self._write_no
        snapshot_of = self._snapshot_of
        partition = self.partition
        parts: dict[int, list[tuple[str, bytes, bytes]]] = {}
        for i, (rid, m) in enumerate(monitors.items()):
            parts.setdefault(partition(rid), []).append((rid, rid.encode(), m.to_bytes()))
            snapshot_of[rid] = no
            self.unwritten.discard(rid)
            if i % 500 == 499:
                await asyncio.sleep(0)  # let the urgent lane in (what it writes meanwhile is newer: see above)
        for p, pending in parts.items():
            delay = 0.5
            while pending:
                batch = producer.create_batch()
                taken = 0
                rids: list[str] = []
                for rid, key, value in pending:
                    if snapshot_of[rid] == no:
                        if batch.append(timestamp=None, key=key, value=value) is None:
                            break  # the batch is full: the rest go into the next one
                        rids.append(rid)
                    taken += 1  # appended, or written again since this call's snapshot (the newer one counts)
                if taken == 0:
                    raise ValueError(f"a resident's state does not fit a record batch ({len(pending[0][2])} bytes)")
                if rids:
                    try:
                        delivered = await producer.send_batch(batch, topic, partition=p)
                        delivered.add_done_callback(functools.partial(self._changelog_delivered, no, rids))
                    except Exception as exc:
                        if getattr(self.app, "should_stop", False):
                            raise
                        log.warning("state changelog refused a batch (%s); again in %.1f s", type(exc).__name__, delay)
                        await asyncio.sleep(delay)
                        delay = min(30.0, delay * 2)
                        target = self._changelog_target()
                        if target is not None:
                            producer = target[0]
                        continue  # the same records again (less those written since)
                pending = pending[taken:]

    def _changelog_delivered(self, no: int, rids: list[str], delivered: asyncio.Future[Any]) -> None:
        """A changelog batch's delivery: when it failed, its residents are written again.

        aiokafka retries a batch until its delivery timeout; Faust's flush before a commit
        waits for it but does not look at the result. So a failed batch holds back every
        commit (``unwritten``, :meth:`WorkerApp.may_commit`) until the next checkpoint has
        written these monitors (as they are then) again; a resident written again meanwhile
        by a later call is already on its way. This callback runs before the flush returns.
        """
        if not delivered.cancelled() and delivered.exception() is None:
            return
        reason = "cancelled" if delivered.cancelled() else type(delivered.exception()).__name__
        held = self.held()
        again = [rid for rid in rids if self._snapshot_of.get(rid) == no and rid in held]
        log.error("state changelog: a batch of %d residents failed (%s); written again", len(rids), reason)
        for rid in again:
            self.unwritten.add(rid)
            self.dirty[rid] = held[rid]

    def may_commit(self) -> bool:
        """Whether offsets may be committed: no failed state write waits to be written again."""
        return not self.unwritten

    def _changelog_target(self) -> tuple[Any, str] | None:
        """Faust's running aiokafka producer and the state changelog topic; None before the start."""
        producer = getattr(getattr(self.app, "_producer", None), "_producer", None)
        if producer is None:
            return None
        if self._changelog_topic is None:
            changelog = getattr(self.state, "changelog_topic", None)
            if changelog is None:
                return None
            self._changelog_topic = changelog.get_topic_name()
        return producer, self._changelog_topic

    async def _send_candidates(self, candidates: list[AlertCandidate]) -> None:
        """Send and await every candidate; while Kafka refuses, retry (back-pressure), never drop.

        An exception here would end the iteration and let Faust ack the batch, so the
        candidates would be lost: the agent waits instead. Sends are idempotent downstream
        (deterministic candidate ids), so a retried send that did arrive is harmless.
        """
        delay = 0.5
        while candidates:
            try:
                futures = [
                    await self.alerts_topic.send(key=c.resident_id.encode(), value=c.to_json()) for c in candidates
                ]
                await asyncio.gather(*futures)
                break
            except Exception as exc:
                if getattr(self.app, "should_stop", False):
                    log.error("stopping with %d candidates unsent (%s)", len(candidates), type(exc).__name__)
                    raise
                log.warning("alerts topic unavailable (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
        for c in candidates:
            log.info("candidate %s#%s (%s, %s)", c.incident_key, c.state.value, c.detector, c.severity.value)
        self.stats.candidates += len(candidates)

    async def _dead_letter(self, payload: bytes | None, reason: str, detail: str) -> None:
        import base64
        import json

        body = {
            "v": 1,
            "reason": "bad_event",
            "detail": f"{reason}: {detail}",
            "mqtt_topic": None,
            "payload_b64": base64.b64encode(payload or b"").decode(),
            "received_at": self.clock().isoformat(),
        }
        await self.deadletter_topic.send(key=None, value=json.dumps(body).encode())

    async def handle_feedback(self, raw: EventT) -> None:
        """A nurse's verdict teaches the resident's detector; the state is checkpointed."""
        try:
            fb = Feedback.from_json(raw.value)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad feedback message (%s) skipped", type(exc).__name__)
            return
        m: ResidentMonitor | None = self.state.get(fb.resident_id)
        if m is None:
            return  # a resident this worker does not hold (or never saw): nothing to teach
        m = self.monitor(fb.resident_id, m.home_id)
        m.feedback(fb)
        await self.write_states({fb.resident_id: m})

    async def tick(self) -> None:
        """Deadlines: every monitor this worker holds ticks; lazy changes are checkpointed."""
        start = time.monotonic()
        if (self.unacked or self.dirty) and start - self.last_checkpoint >= self.options.checkpoint_s:
            await self.checkpoint_bulk()  # the bulk lane went quiet: its last records are acked here
        now = self.clock()
        partition_now = self._partition_now(now)
        assigned = self._assigned()
        out = MonitorOutput()
        changed: dict[str, ResidentMonitor] = {}
        held = self.held()
        items = list(held.items())
        partition_of = self.partition_of
        attached = self.attached
        for i, (rid, m) in enumerate(items):
            p = partition_of.get(rid)
            if p is None:
                p = self.partition(rid)
            if p not in assigned:
                continue  # after a rebalance another worker owns this resident: only the owner ticks
            if rid not in attached:
                m = self.monitor(rid, m.home_id, held)
            before = len(out.candidates)
            out.extend(m.tick(partition_now.get(p, now)))
            if len(out.candidates) > before:
                changed[rid] = m
            if i % 1000 == 999:
                await asyncio.sleep(0)  # let the urgent lane in
        # Lazy checkpoints: monitors changed by cheap events longer than lazy_checkpoint_s ago.
        due = time.monotonic() - self.options.lazy_checkpoint_s
        for rid, (m, since) in list(self.lazy.items()):
            if self.partition(rid) not in assigned:
                del self.lazy[rid]  # revoked: the new owner's state must not be overwritten by ours
            elif since <= due:
                changed[rid] = m
        await self._outputs(out, changed)
        self.stats.ticks += 1
        self.stats.last_tick_s = time.monotonic() - start
        if self.stats.ticks % max(1, int(60 / self.options.tick_s)) == 1:
            s = self.stats
            log.info(
                "worker: %d residents held, %d owned partitions; events %d (urgent %d, late %d, replayed %d, bad %d);"
                " candidates %d; checkpoints %d; tick %.0f ms; gc passes %s;"
                " fetches during rebalances %d (read again %d)",
                len(items),
                len(assigned),
                s.events,
                s.urgent,
                s.late,
                s.replayed,
                s.bad,
                s.candidates,
                s.checkpoints,
                s.last_tick_s * 1000,
                "/".join(str(g["collections"]) for g in gc.get_stats()),
                getattr(self.app.consumer, "rebalance_waits", 0),
                getattr(self.app.consumer, "rebalance_holds", 0),
            )

    def partition(self, resident_id: str) -> int:
        """The partition of a resident's events (Kafka's default partitioner: murmur2 of the key)."""
        p = self.partition_of.get(resident_id)
        if p is None:
            p = (murmur2(resident_id.encode()) & 0x7FFFFFFF) % self.settings.kafka_partitions
            self.partition_of[resident_id] = p
        return p

    def _assigned(self) -> set[int]:
        """Partitions of the bulk topic this worker owns now."""
        try:
            return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.topic_events}
        except Exception:  # the consumer is not started yet
            return set()

    def _highwater(self, partition: int) -> int | None:
        try:
            hw = self.app.consumer.highwater(TP(self.settings.topic_events, partition))
        except Exception:  # not assigned (any more) or not fetched yet: nothing known about a lag
            return None
        return hw if isinstance(hw, int) else None

    def _partition_now(self, now: datetime) -> dict[int, datetime]:
        """The time deadlines are judged at, per bulk partition.

        A worker that lags behind its partition (a backlog after a restart, a burst)
        judges that partition's deadlines at the bridge time of the newest event it
        has handled, not at the wall clock: its own backlog must not look like silent
        gateways or still residents. Caught up (or idle), it is the wall clock.
        """
        result: dict[int, datetime] = {}
        for p, position in self.bulk_position.items():
            highwater = self._highwater(p)
            lag = (highwater - position - 1) if highwater else 0
            clock = self.bulk_clock.get(p)
            if lag > LAG_EVENTS and clock is not None:
                result[p] = min(now, clock + timedelta(seconds=self.options.tick_s))
        if set(result) != self._lagging:
            log.info("partitions judged at their own clock (lagging): %s", sorted(result) or "none")
            self._lagging = set(result)
        return result

    async def refresh_plans(self) -> None:
        """Changed care plans and global pauses from the database."""
        if self.plans is None:
            return
        changed = await asyncio.to_thread(self.plans.changed)
        for rid, plan in changed.items():
            self.plan_cache[rid] = plan
            m = self.state.get(rid)
            if m is not None:
                m.plan = plan
        pauses = await asyncio.to_thread(self.plans.global_pauses)
        if pauses is not None:
            wanted = self.base_paused | pauses
            if wanted != set(self.options.paused):
                log.info("globally paused detectors: %s", ", ".join(sorted(wanted)) or "none")
                self.options.paused.clear()
                self.options.paused.update(wanted)


#: The worker process's cyclic-GC thresholds (CPython's default is 700, 10, 10).
GC_THRESHOLD = (50_000, 20, 10)


def tune_gc() -> None:
    """Fewer cyclic-GC passes for a process that holds thousands of monitors.

    With CPython's default thresholds a full collection traverses every monitor's objects
    (millions) every few hundred thousand allocations: 15 full passes took ~8 s of a 21.6 s
    CPU run of ``carechain bench worker`` (10,000 residents, 200,000 events), about 40 % of the
    worker's CPU. Larger young generations let short-lived objects (events, messages, outputs)
    die by reference counting before a pass sees them; cyclic garbage is still collected. The
    objects made at start-up (modules, Faust, the app) are frozen out of every pass.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run_worker(worker: StreamWorker, loglevel: str = "info") -> int:
    """Run until stopped (SIGINT/SIGTERM); Faust's own worker handles signals and shutdown."""
    tune_gc()
    runner = faust.Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner, kept at log level WARNING and above, sets the root logger to DEBUG
    # and spins once per record: every debug line of aiokafka and Faust (one per changelog send)
    # became a LogRecord, ~6 % of the worker in a bench run (which logs at WARNING).
    runner.spinner = None
    runner.execute_from_commandline()
    return 0
