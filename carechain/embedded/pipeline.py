"""The demo's pipeline in one process: bridge routing -> in-process queue -> monitors -> sinks.

The same pure pieces as the distributed system: :func:`ingest.routing.route`
decides what a message becomes; two asyncio queues stand in for Kafka's two
lanes (urgent first, so a fall never waits behind telemetry); one
:class:`streams.monitor.ResidentMonitor` per resident; candidates and
observations go to sinks (the alert service core and the storage writer when
they are wired). No I/O library is imported here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from carechain.candidates import AlertCandidate
from carechain.care_plan import CarePlan
from carechain.events import Event, Lane
from ingest.routing import DeadLetter, Discarded, Forward, RegistrySnapshot, internal_error, route
from streams.monitor import MonitorOutput, ResidentMonitor

log = logging.getLogger(__name__)

CandidateSink = Callable[[AlertCandidate, datetime], Awaitable[None]]
ObservationSink = Callable[[MonitorOutput], Awaitable[None]]
DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]


async def _ignore_output(out: MonitorOutput) -> None:
    return None


async def _ignore_dead_letter(dl: DeadLetter) -> None:
    return None


@dataclass(slots=True)
class PipelineStats:
    messages: int = 0
    events: int = 0
    urgent: int = 0
    candidates: int = 0
    discarded: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    last_candidate: str = ""


class Pipeline:
    """MQTT messages in; alert candidates and observations out, through the pure cores."""

    def __init__(
        self,
        registry: RegistrySnapshot,
        plans: dict[str, CarePlan],
        on_candidate: CandidateSink,
        on_output: ObservationSink = _ignore_output,
        on_dead_letter: DeadLetterSink = _ignore_dead_letter,
        now: Callable[[], float] = time.time,
        queue_max: int = 100_000,
    ) -> None:
        self.registry = registry
        self.plans = plans
        self.on_candidate = on_candidate
        self.on_output = on_output
        self.on_dead_letter = on_dead_letter
        self.now = now
        self.urgent: asyncio.Queue[Event] = asyncio.Queue(queue_max)
        self.bulk: asyncio.Queue[Event] = asyncio.Queue(queue_max)
        self.monitors: dict[str, ResidentMonitor] = {}
        self.stats = PipelineStats()
        self._wake = asyncio.Event()

    # The MQTT side: what the bridge does, with a queue instead of a Kafka producer.
    async def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        self.stats.messages += 1
        now = datetime.fromtimestamp(self.now(), UTC)
        try:
            outputs = route(topic, payload, self.registry, now, retained=retained)
        except Exception as exc:  # routing never raises on bad input; this guards our own bugs
            outputs = [internal_error(topic, payload, now, exc)]
        for out in outputs:
            if isinstance(out, Forward):
                ev = Event.from_json(out.value)
                await (self.urgent if out.lane is Lane.URGENT else self.bulk).put(ev)
                self._wake.set()
            elif isinstance(out, Discarded):
                self.stats.discarded += 1
            elif isinstance(out, DeadLetter):
                self.stats.dead_letters[out.reason] += 1
                await self.on_dead_letter(out)

    def monitor(self, ev: Event) -> ResidentMonitor:
        m = self.monitors.get(ev.resident_id)
        if m is None:
            plan = self.plans.get(ev.resident_id) or CarePlan(ev.resident_id)
            m = self.monitors[ev.resident_id] = ResidentMonitor(ev.resident_id, ev.home_id, plan)
        return m

    async def _emit(self, out: MonitorOutput, at: datetime) -> None:
        if out.observations or out.scores:
            await self.on_output(out)
        for c in out.candidates:
            self.stats.candidates += 1
            self.stats.last_candidate = f"{c.kind} {c.resident_id}"
            try:
                await self.on_candidate(c, at)
            except Exception:
                log.exception("the alert sink failed for %s", c.candidate_id)

    async def consume(self) -> None:
        """The stream worker: urgent lane first, then telemetry."""
        while True:
            if self.urgent.empty() and self.bulk.empty():
                self._wake.clear()
                await self._wake.wait()
            ev = self.urgent.get_nowait() if not self.urgent.empty() else self.bulk.get_nowait()
            self.stats.events += 1
            if ev.lane is Lane.URGENT:
                self.stats.urgent += 1
            m = self.monitor(ev)
            await self._emit(m.process(ev), datetime.fromtimestamp(self.now(), UTC))
            if self.stats.events % 200 == 0:
                await asyncio.sleep(0)  # let the broker and the API breathe

    async def tick_forever(self, every_s: float) -> None:
        """Deadlines: every monitor ticks with the (simulated) clock every ``every_s`` seconds."""
        while True:
            await asyncio.sleep(every_s)
            now = datetime.fromtimestamp(self.now(), UTC)
            for m in list(self.monitors.values()):
                await self._emit(m.tick(now), now)


def registry_for(layouts: Sequence[object]) -> RegistrySnapshot:
    """A registry built from simulator layouts (used when the database has none)."""
    from carechain.evaluation import registry_of
    from carechain.simulation.homes import HomeLayout

    devices = []
    for lay in layouts:
        assert isinstance(lay, HomeLayout)
        devices += list(registry_of(lay).devices.values())
    return RegistrySnapshot(devices)
