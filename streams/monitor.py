"""The per-resident monitor: state in, event or tick in, observations, scores and candidates out.

Pure: no Kafka, Faust, PostgreSQL or MQTT. The same object runs in the Faust
worker, the embedded demo, the backtest and the unit tests.

Event time. Every event is judged by its own time ``ts``. The lateness
watermark ``W`` of a lane is the largest event time seen on the resident's
lane minus the allowed lateness. An event older than ``W``, or one that reached
the bridge (``received_at``) more than the lateness after it happened — a
gateway's backfill after a reconnect — is *late*: it is returned
as an observation with ``extra["late"] = True``, counted, and may only add
evidence that the resident is well (latest activity, a dose taken) — it never
raises, clears or reopens an alert. ``W`` moves with event time only, so a
backlog (a worker restart, a lagging lane) is processed as on time, in order.

Order. Detectors that compare one reading with the previous one (vitals
bounds, bed/door for night wandering, battery, robot faults) are ``ordered``:
their events wait in a small buffer and are judged in event-time order once
the release point passes them (``W``, or ``now`` minus the lateness from
``tick`` when a home falls quiet), so any arrival order within the lateness
gives the same alerts. Instant detectors (fall, alarm, medication reports) act
on arrival: each of their decisions depends on one event. Deadlines
(inactivity, not up, dose overdue, gateway silent) fire from ``tick(now)``.
"""

from __future__ import annotations

import heapq
import json
import sys
import zlib
from array import array
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from functools import lru_cache
from typing import Any

import orjson

from carechain.candidates import (
    AlertCandidate,
    CandidateState,
    Evidence,
    Family,
    Feedback,
    Severity,
)
from carechain.care_plan import CarePlan
from carechain.events import URGENT_KINDS, Event, Kind
from streams import clock
from streams.day import MAX_ROOMS, Day
from streams.detector import Detector

#: Codec version of :meth:`ResidentMonitor.to_bytes`. Bump on any layout change (keep a reader for the old one).
CODEC_VERSION = 2
_MAGIC = b"\xcc\x4d"  # "CareChain Monitor"
_FLAG_ZLIB = 0x01
_HEAD_PLAIN = _MAGIC + bytes([CODEC_VERSION, 0])
_HEAD_ZLIB = _MAGIC + bytes([CODEC_VERSION, _FLAG_ZLIB])
#: Codec-2 bodies longer than this are zlib-compressed (level 1); shorter ones are stored as they are.
COMPRESS_ABOVE = 4096
_INT63 = 2**63 - 1
#: The codec-2 body: one JSON array with these fields in this order (devices: 6 values each,
#: buffered events: 10 values each, flattened).
_V2_FIELDS = (
    "resident_id", "home_id", "lateness_s", "watermark", "watermark_urgent", "released", "closed_through",
    "max_ts", "last_activity", "since", "doses_taken", "last_activity_id", "last_activity_what",
    "events_count", "late_count", "suppressed_count", "gateways", "gateway_offline", "gateway_back",
    "devices [id, gateway|null=as before, last, since|null=last, max_gap, prev_max_gap]*", "rooms", "days",
    "buffer [id, gateway|null, device index|id, room, kind, value, ts, seq, received_at|null=ts, unit]*",
    "open", "keys", "positions", "detectors",
)  # fmt: skip

#: Default allowed lateness (seconds).
DEFAULT_LATENESS_S = 120.0
#: Gateways and devices not heard from for this long are forgotten (replaced hardware).
FORGET_AFTER_S = 7 * 86400
#: Incident keys are remembered this long, so one incident never produces two candidates.
REMEMBER_KEYS_S = 14 * 86400
#: Deadlines are checked this much before they are computed to fall due (float rounding; costs nothing).
_DUE_MARGIN_S = 0.5
_MIDNIGHT = time(0)

_Dispatch = tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]], tuple[str, ...], tuple[str, ...]]
_DISPATCH: dict[tuple[tuple[type, str], ...], _Dispatch] = {}

ACTIVITY_KINDS = frozenset({Kind.MOTION, Kind.DOOR, Kind.BED, Kind.DOSE_TAKEN})
# Plain strings for the per-event comparisons (an enum member lookup costs ten times a constant's).
_MOTION = Kind.MOTION.value
_DOSE_TAKEN = Kind.DOSE_TAKEN.value
_GATEWAY_STATUS = Kind.GATEWAY_STATUS.value
_GATEWAY_KINDS = frozenset({Kind.GATEWAY_HEARTBEAT.value, Kind.GATEWAY_STATUS.value})
_NEG_INF = float("-inf")
_INF = float("inf")
_BATHROOM_WORDS = ("bath", "toilet", "wc", "badrum", "toalett")


@dataclass(frozen=True, slots=True)
class Score:
    """A detector's score for a resident at an event time, stored next to the observations."""

    resident_id: str
    home_id: str
    detector: str
    detector_version: str
    ts: datetime
    value: float
    threshold: float | None
    alert: bool
    features: dict[str, float | int | str | None] = field(default_factory=dict)


@dataclass(slots=True)
class MonitorOutput:
    """What one ``process`` or ``tick`` produced."""

    observations: list[Event] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    candidates: list[AlertCandidate] = field(default_factory=list)

    def extend(self, other: MonitorOutput) -> None:
        self.observations.extend(other.observations)
        self.scores.extend(other.scores)
        self.candidates.extend(other.candidates)


#: Where detectors write outside process/tick (nothing does; it stays empty).
_IDLE = MonitorOutput()


def is_activity(ev: Event) -> bool:
    """Does the event show the resident moving (not a fall, not a device talking)?"""
    if ev.kind == _MOTION:
        return ev.value is True
    return ev.kind in ACTIVITY_KINDS


@lru_cache(maxsize=4096)
def _bathroom_name(room: str) -> bool:
    low = room.lower()
    return any(w in low for w in _BATHROOM_WORDS)


def is_bathroom(room: str | None) -> bool:
    """Is this room a bathroom or toilet (by its registry name, English or Swedish)?"""
    return room is not None and _bathroom_name(room)


class Device:
    """Liveness of one sensor: when last heard and the longest silences it usually has."""

    __slots__ = ("gateway", "last", "max_gap", "prev_max_gap", "since", "week")

    def __init__(self, gateway: str, t: float) -> None:
        self.gateway = gateway
        self.last = t
        self.since = t  # first heard (warm-up)
        self.max_gap = 0.0  # longest silence this week
        self.prev_max_gap = 0.0  # longest silence last week
        self.week = int(t // (7 * 86400))

    def heard(self, t: float) -> None:
        if t <= self.last:
            return
        week = int(t // (7 * 86400))
        if week != self.week:
            self.prev_max_gap = self.max_gap if week == self.week + 1 else 0.0
            self.max_gap = 0.0
            self.week = week
        gap = t - self.last
        if gap > self.max_gap:
            self.max_gap = gap
        self.last = t

    def usual_max_gap(self) -> float:
        return max(self.max_gap, self.prev_max_gap)

    def dump(self) -> list[Any]:
        return [self.gateway, self.last, self.since, self.max_gap, self.prev_max_gap, self.week]

    @classmethod
    def load(cls, raw: list[Any]) -> Device:
        d = cls(sys.intern(str(raw[0])), float(raw[1]))
        d.since, d.max_gap, d.prev_max_gap, d.week = float(raw[2]), float(raw[3]), float(raw[4]), int(raw[5])
        return d


class ResidentMonitor:
    """One resident's monitoring state and the detectors that watch over them."""

    def __init__(
        self,
        resident_id: str,
        home_id: str,
        plan: CarePlan | None = None,
        paused: Collection[str] = frozenset(),
        lateness_s: float = DEFAULT_LATENESS_S,
        detectors: Iterable[Detector] | None = None,
    ) -> None:
        from streams.registry import build_detectors

        self.resident_id = resident_id
        self.home_id = home_id
        self.plan = plan or CarePlan(resident_id=resident_id)
        #: Globally paused detector names; a shared, mutable set from the worker or registry.
        self.paused = paused
        self.lateness_s = float(lateness_s)
        #: Lateness watermark: largest bulk-lane event time minus the lateness (event time only).
        self.watermark = float("-inf")
        self.watermark_urgent = float("-inf")  # the same on the urgent lane
        #: Ordered events up to here are judged and days before it closed (event time, or ``now`` from ticks).
        self.released = float("-inf")
        self.closed_through = 0  # ordinal of the last local day judged by the learned models
        self.max_ts = float("-inf")  # largest bulk-lane event time
        self.last_activity = float("-inf")
        self.last_activity_id = ""
        self.last_activity_what = ""  # "kind:value" of the latest activity, e.g. "door:closed", "bed:in"
        self.since = float("-inf")  # first event time seen (rules need history before they judge)
        self.doses_taken: dict[str, float] = {}  # "ordinal:slot" -> when taken (monotone evidence)
        self.late_count = 0
        self.events_count = 0
        self.suppressed_count = 0  # candidates not proposed because a detector was paused
        self.gateways: dict[str, float] = {}  # gateway -> last heard (event time)
        self.gateway_offline: dict[str, float] = {}  # gateway -> time of an "offline" status
        self.gateway_back: dict[str, float] = {}  # gateway -> when it was heard again after silence
        self.devices: dict[str, Device] = {}
        self.rooms: list[str] = []
        self.days: dict[int, Day] = {}
        # (ts, event id, event) heap; ties broken by id so arrival order never matters
        self.buffer: list[tuple[float, str, Event]] = []
        self.open: dict[str, list[Any]] = {}  # incident key -> [detector, kind, severity, start]
        self.keys: dict[str, float] = {}  # incident key -> when it fired (dedup memory)
        self.positions: dict[str, int] = {}  # source (e.g. "events/3") -> last applied offset
        self.detectors: dict[str, Detector] = {}
        #: Due-only ticks: before ``_due`` (event time, epoch s) a tick only releases ordered events and
        #: closes days; the rules' deadlines, silent gateways and forgetting wait for it. Computed by a full
        #: tick at ``_due_at`` with the plan ``_due_plan``; lowered by whatever an event changes that can
        #: bring a deadline earlier. Not part of the state: a loaded monitor ticks fully first.
        self._due = float("-inf")
        self._due_at = float("inf")
        self._due_plan: CarePlan | None = None
        self._close_at = float("inf")  # the earliest next_midnight of ``days``: when a day may close
        self._cur_day: Day | None = None  # the day of the latest activity (most events fall in it)
        self._cur_tz = ""
        for d in detectors if detectors is not None else build_detectors():
            self.detectors[d.name] = d
        self._dispatch()
        self._out = _IDLE

    def _dispatch(self) -> None:
        # Shared between monitors with the same detector set: 10,000 residents, one table.
        signature = tuple((type(d), d.name) for d in self.detectors.values())
        tables = _DISPATCH.get(signature)
        if tables is None:
            instant: dict[str, tuple[str, ...]] = {}
            ordered: dict[str, tuple[str, ...]] = {}
            for d in self.detectors.values():
                table = ordered if d.ordered else instant
                for k in d.kinds:
                    table[k] = (*table.get(k, ()), d.name)
            # Only detectors that override a hook are called for it (ticks run for every resident).
            ticking = tuple(d.name for d in self.detectors.values() if type(d).on_tick is not Detector.on_tick)
            daily = tuple(
                d.name for d in self.detectors.values() if type(d).on_day_closed is not Detector.on_day_closed
            )
            tables = _DISPATCH[signature] = (instant, ordered, ticking, daily)
        self._instant, self._ordered, self._ticking, self._daily = tables

    # ------------------------------------------------------------------ inputs

    def process(self, ev: Event) -> MonitorOutput:
        """Take one event; return the observation (late or not), scores and candidates it caused."""
        out = self._out = MonitorOutput()
        t = ev.ts.timestamp()
        self.events_count += 1
        kind = ev.kind
        urgent = kind in URGENT_KINDS
        # Late: it reached the bridge more than the lateness after it happened (e.g. backfill after a
        # reconnect), or it is older than its lane's watermark. Delays after the bridge (a lagging
        # lane, a worker restart) never make an event late: received_at is the bridge's clock.
        late = ev.received_at.timestamp() - t > self.lateness_s or t < (
            self.watermark_urgent if urgent else self.watermark
        )
        if t < self.since or self.since == _NEG_INF:
            self.since = t
            self._due = _NEG_INF  # rules that need history from before a time may now judge
        self._heard(ev, t)
        active = ev.value is True if kind == _MOTION else kind in ACTIVITY_KINDS  # is_activity(ev)
        # Monotone evidence of wellbeing, taken from late events too: it can only prevent alerts.
        if active and t > self.last_activity:
            self.last_activity = t
            self.last_activity_id = ev.event_id
            self.last_activity_what = f"{ev.kind}:{ev.value}"
            due = t + self.plan.inactivity_limit_min * 60  # the earliest an inactivity deadline can be
            if due < self._due:
                self._due = due
        if kind == _DOSE_TAKEN and isinstance(ev.value, str):
            key = f"{self.local(t)[0]}:{ev.value}"
            if key not in self.doses_taken:
                self.doses_taken[key] = t
                self._due = _NEG_INF  # forgotten after two days: let a full tick time it
        if late:
            self.late_count += 1
            out.observations.append(replace(ev, extra={**ev.extra, "late": True}))
            self._out = _IDLE
            return out
        out.observations.append(ev)
        if urgent:
            self.watermark_urgent = max(self.watermark_urgent, t - self.lateness_s)
        elif t > self.max_ts:
            self.max_ts = t
            self._advance(t - self.lateness_s, event_time=True)
        if active:
            self._count_activity(ev, t)
        names = self._instant.get(kind)
        if names:
            detectors = self.detectors
            for name in names:
                detectors[name].on_event(self, ev, t)
        if kind in self._ordered:
            # A redelivered reading (same event id, later received_at) must not be buffered twice: equal
            # (t, event_id) keys make heapq/sorted compare the Events themselves -> TypeError, worker crash.
            if not any(b[1] == ev.event_id for b in self.buffer):
                heapq.heappush(self.buffer, (t, ev.event_id, ev))
            self._release()
        self._out = _IDLE  # hold no output between calls (10,000 monitors in one worker)
        return out

    def tick(self, now: datetime) -> MonitorOutput:
        """Time passes: release ordered events, close finished days, check every deadline.

        Deadlines are checked only when one may be due (:meth:`next_due`); until then a
        tick does exactly what a full one would: nothing beyond releasing and closing.
        """
        out = self._out = MonitorOutput()
        n = now.timestamp()
        self._advance(n - self.lateness_s, event_time=False)
        if n >= self._due or n < self._due_at or self.plan is not self._due_plan:
            if self.home_blind(n):
                day = self._day(n)
                if day is not None:
                    day.degraded = True
            for name in self._ticking:
                self.detectors[name].on_tick(self, n)
            self._forget(n)
            self._due = self._next_due(n)
            self._due_at = n
            self._due_plan = self.plan
        self._out = _IDLE
        return out

    def next_due(self) -> float:
        """Epoch seconds before which a tick checks no deadline (-inf: the next tick checks them all).

        For a worker that wants to skip monitors: a tick before this time only releases
        ordered events (``buffer[0][0] + lateness_s``) and closes days (``next_midnight +
        lateness_s``), which :meth:`tick` always does.
        """
        return self._due

    def recheck(self) -> None:
        """Something a rule's deadline depends on changed: the next tick checks every deadline."""
        self._due = float("-inf")

    def _next_due(self, now: float) -> float:
        """After a full tick at ``now``: the earliest time a later tick may act, the state staying as it is."""
        gateways = self.gateways
        if gateways:
            silence = self.plan.gateway_silence_s
            offline = self.gateway_offline
            due = min(gateways.values()) + silence  # a gateway falls silent: the home is blind
            for gw, last in gateways.items():
                if offline.get(gw, float("-inf")) >= last or now - last > silence:
                    return now  # blind now: every tick marks the day and checks
            due = min(due, min(gateways.values()) + FORGET_AFTER_S)
        else:
            due = float("inf")
        for name in self._ticking:
            det = self.detectors[name]
            # A rule with a deadline tells when it may next act; one that does not is checked every tick.
            next_due = getattr(det, "next_due", None)
            d = now if next_due is None else next_due(self, now)
            if d < due:
                due = d
        if self.devices:
            due = min(due, min(d.last for d in self.devices.values()) + FORGET_AFTER_S)
        if self.doses_taken:
            first = min(int(k.split(":", 1)[0]) for k in self.doses_taken)
            due = min(due, clock.at_local(self.plan.timezone, first + 3, _MIDNIGHT) - 3600)
        if self.open:
            due = min(due, min(float(inc[3]) for inc in self.open.values()) + REMEMBER_KEYS_S)
        if self.keys:
            due = min(due, min(self.keys.values()) + REMEMBER_KEYS_S)
        return due - _DUE_MARGIN_S

    def flush(self) -> MonitorOutput:
        """End of input (backtests): judge the ordered events still waiting for the watermark."""
        out = self._out = MonitorOutput()
        while self.buffer:
            t, _, ev = heapq.heappop(self.buffer)
            for name in self._ordered.get(ev.kind, ()):
                self.detectors[name].on_event(self, ev, t)
        self._out = _IDLE
        return out

    def feedback(self, fb: Feedback) -> None:
        """A nurse's verdict on an alert teaches the detector that raised it."""
        d = self.detectors.get(fb.detector)
        if d is not None:
            d.on_feedback(self, fb)
            self._due = float("-inf")

    def seen_position(self, source: str, offset: int) -> bool:
        """Idempotency guard for replays: True if this source offset was already applied; else record it."""
        last = self.positions.get(source)
        if last is not None and offset <= last:
            return True
        self.positions[source] = offset
        return False

    # ------------------------------------------------------------ event time

    def _advance(self, w: float, event_time: bool) -> None:
        """Move the release point (and, from event time only, the lateness watermark) to ``w``."""
        if event_time and w > self.watermark:
            self.watermark = w
        if w <= self.released:
            return
        self.released = w
        if self.buffer:
            self._release()
        if w < self._close_at:  # no day ends before w (min next_midnight of the open days)
            return
        for ordinal in sorted(o for o, d in self.days.items() if d.next_midnight <= w):
            day = self.days.pop(ordinal)
            self.closed_through = max(self.closed_through, ordinal)
            for name in self._daily:
                self.detectors[name].on_day_closed(self, day)
        self._days_changed()

    def _days_changed(self) -> None:
        self._close_at = min((d.next_midnight for d in self.days.values()), default=_INF)

    def _release(self) -> None:
        buf = self.buffer
        while buf and buf[0][0] <= self.released:
            t, _, ev = heapq.heappop(buf)
            for name in self._ordered.get(ev.kind, ()):
                self.detectors[name].on_event(self, ev, t)

    def _heard(self, ev: Event, t: float) -> None:
        gw = sys.intern(ev.gateway_id)
        last = self.gateways.get(gw)
        if last is None:
            self._due = _NEG_INF  # a new gateway to supervise
        kind = ev.kind
        if kind == _GATEWAY_STATUS and ev.value == "offline":
            if t > self.gateway_offline.get(gw, _NEG_INF):
                self.gateway_offline[gw] = t
                self._due = _NEG_INF
            if last is None:
                self.gateways[gw] = t
            return
        if last is None:
            self.gateways[gw] = t
        elif t > last:
            offline = self.gateway_offline.get(gw, _NEG_INF) if self.gateway_offline else _NEG_INF
            if t - last > self.plan.gateway_silence_s or offline >= last:
                self.gateway_back[gw] = t  # heard again after a silence
            self.gateways[gw] = t
        if kind in _GATEWAY_KINDS:
            return
        dev = self.devices.get(ev.device_id)
        if dev is None:
            self.devices[sys.intern(ev.device_id)] = Device(gw, t)
        else:
            dev.heard(t)
        # A sensor heard (new, past its warm-up, a new week's gaps): its silence limit is at least the plan's.
        due = t + self.plan.device_silence_min * 60
        if due < self._due:
            self._due = due

    def _count_activity(self, ev: Event, t: float) -> None:
        room_index = None
        if ev.room is not None:
            try:
                room_index = self.rooms.index(ev.room)
            except ValueError:
                if len(self.rooms) < MAX_ROOMS:
                    self.rooms.append(sys.intern(ev.room))
                    room_index = len(self.rooms) - 1
                else:
                    room_index = MAX_ROOMS - 1
        day = self._day(t)
        if day is not None:
            day.add_activity(t, room_index, is_bathroom(ev.room))

    def _day(self, t: float) -> Day | None:
        """The accumulator of the local day of ``t``; None when that day is already judged."""
        tz = self.plan.timezone
        day = self._cur_day
        if (
            day is not None
            and day.midnight <= t < day.next_midnight
            and tz is self._cur_tz
            and self.days.get(day.ordinal) is day
        ):
            return day  # the local day is the one of [midnight, next midnight) that holds t
        ordinal, midnight, nxt = clock.local_day(tz, t)
        day = self.days.get(ordinal)
        if day is None:
            if ordinal <= self.closed_through:
                return None
            day = self.days[ordinal] = Day(ordinal, midnight, nxt)
            if nxt < self._close_at:
                self._close_at = nxt
        self._cur_day, self._cur_tz = day, tz
        return day

    def _forget(self, now: float) -> None:
        for gw in [g for g, t in self.gateways.items() if now - t > FORGET_AFTER_S]:
            self.gateways.pop(gw, None)
            self.gateway_offline.pop(gw, None)
            self.gateway_back.pop(gw, None)
        for dev in [d for d, s in self.devices.items() if now - s.last > FORGET_AFTER_S]:
            del self.devices[dev]
        cutoff = self.local(now)[0] - 2
        for k in [k for k in self.doses_taken if int(k.split(":", 1)[0]) < cutoff]:
            del self.doses_taken[k]
        for k in [k for k, inc in self.open.items() if now - float(inc[3]) > REMEMBER_KEYS_S]:
            del self.open[k]  # e.g. a fall nobody closed: keep the key (dedup), drop the open entry
        if len(self.keys) > 64 or (self.keys and now - min(self.keys.values()) > REMEMBER_KEYS_S):
            for k in [k for k, t in self.keys.items() if now - t > REMEMBER_KEYS_S and k not in self.open]:
                del self.keys[k]

    # --------------------------------------------------------- for detectors

    def is_gateway_silent(self, gw: str, now: float) -> bool:
        """No word from the gateway for longer than the plan allows, or it said it went offline."""
        last = self.gateways.get(gw, float("-inf"))
        if self.gateway_offline.get(gw, float("-inf")) >= last:
            return True
        return now - last > self.plan.gateway_silence_s

    def home_blind(self, now: float) -> list[str]:
        """Data-quality flags: which of the home's gateways are silent now (empty: all well)."""
        return [f"gateway {gw} offline" for gw in self.gateways if self.is_gateway_silent(gw, now)]

    def activity_clock_start(self, now: float) -> float:
        """Latest activity, or the time a silent gateway came back, whichever tells us more.

        While a gateway was silent we could not see the resident; after it returns
        the clock restarts so that a resident who was still the whole time is
        reported ten minutes after the gateway is back, not at once.
        """
        start = self.last_activity
        limit = self.plan.inactivity_limit_min * 60
        for back in self.gateway_back.values():
            start = max(start, back - limit + 600)
        return start

    def local(self, t: float) -> tuple[int, float, float]:
        """(date ordinal, local midnight, next local midnight) of an instant in the home's zone."""
        return clock.local_day(self.plan.timezone, t)

    def hhmm(self, t: float) -> str:
        """Local "HH:MM" of an instant, for sentences."""
        return clock.local_hhmm(self.plan.timezone, t)

    def quality(self, now: float) -> list[str]:
        """Data-quality flags for evidence: silent gateways and late input so far."""
        flags = self.home_blind(now)
        if self.late_count:
            flags.append(f"{self.late_count} late events so far")
        return flags

    def is_paused(self, detector: str) -> bool:
        return detector in self.paused or detector in self.plan.paused_detectors

    def fire(
        self,
        det: Detector,
        kind: str,
        key: str,
        severity: Severity,
        start: float,
        at: float,
        reason: str,
        reason_sv: str,
        evidence: Evidence,
    ) -> bool:
        """Propose an alert. Returns False when the incident was already proposed or the detector is paused."""
        if key in self.keys:
            return False
        if self.is_paused(det.name):
            self.suppressed_count += 1
            return False
        self.keys[key] = at
        self.open[key] = [det.name, kind, severity.value, start]
        due = min(at, start) + REMEMBER_KEYS_S  # when the key and the open entry are forgotten
        if due < self._due:
            self._due = due
        self._out.candidates.append(
            AlertCandidate(
                resident_id=self.resident_id,
                home_id=self.home_id,
                kind=kind,
                family=det.family,
                severity=severity,
                detector=det.name,
                detector_version=det.version,
                incident_key=key,
                state=CandidateState.FIRING,
                event_time=clock.to_dt(start),
                detected_at=clock.to_dt(at),
                reason=reason,
                reason_sv=reason_sv,
                evidence=evidence,
            )
        )
        return True

    def clear(self, key: str, at: float, reason: str, reason_sv: str, evidence: Evidence | None = None) -> bool:
        """The condition of an open incident ended: propose its clearing."""
        inc = self.open.pop(key, None)
        if inc is None:
            return False
        name, kind, severity, start = inc
        det = self.detectors.get(name)
        self._out.candidates.append(
            AlertCandidate(
                resident_id=self.resident_id,
                home_id=self.home_id,
                kind=kind,
                family=det.family if det else Family.WELFARE,
                severity=Severity(severity),
                detector=name,
                detector_version=det.version if det else "?",
                incident_key=key,
                state=CandidateState.CLEARED,
                event_time=clock.to_dt(start),
                detected_at=clock.to_dt(at),
                reason=reason,
                reason_sv=reason_sv,
                evidence=evidence or Evidence(),
            )
        )
        return True

    def open_keys(self, detector: str) -> list[str]:
        """Open incident keys of one detector."""
        if not self.open:
            return []
        return [k for k, inc in self.open.items() if inc[0] == detector]

    def score(
        self,
        det: Detector,
        t: float,
        value: float,
        threshold: float | None,
        alert: bool,
        features: dict[str, float | int | str | None] | None = None,
    ) -> None:
        """Record a detector's score (stored with the observations)."""
        self._out.scores.append(
            Score(
                self.resident_id,
                self.home_id,
                det.name,
                det.version,
                clock.to_dt(t),
                float(value),
                threshold,
                alert,
                features or {},
            )
        )

    # ------------------------------------------------------------------ codec

    def to_bytes(self) -> bytes:
        """Explicit, versioned, compact state (codec 2). Never pickle.

        ``magic (2) | version 2 | flags | body``: the body is one JSON array (layout in
        :data:`_V2_FIELDS`, written with orjson), zlib-compressed (level 1, flag bit 0)
        only when longer than :data:`COMPRESS_ABOVE` bytes — most states are not.
        Devices and buffered events name a gateway only when it differs from the one
        before; a buffered event's device is its index among the devices when known;
        a device's week is derived from its last time. Every number is kept exactly.
        """
        devices: list[Any] = []
        index: dict[str, int] = {}
        gw: str | None = None
        for i, (k, d) in enumerate(self.devices.items()):
            index[k] = i
            g = d.gateway
            devices += (
                k,
                None if g == gw else g,
                d.last,
                None if d.since == d.last else d.since,
                d.max_gap,
                d.prev_max_gap,
            )
            gw = g
        buffer: list[Any] = []
        gw = None
        for t, _, e in sorted(self.buffer):
            g = e.gateway_id
            r = e.received_at.timestamp()
            buffer += (
                e.event_id,
                None if g == gw else g,
                index.get(e.device_id, e.device_id),
                e.room,
                e.kind,
                e.value,
                t,
                e.seq,
                None if r == t else r,
                e.unit,
            )
            gw = g
        days = []
        for day in self.days.values():
            rooms = []
            for room, counts in day.room_hours.items():
                raw = counts.tobytes()  # only the hours from the first to the last with activity
                lo = (len(raw) - len(raw.lstrip(b"\0"))) // 4
                hi = -(-len(raw.rstrip(b"\0")) // 4)
                rooms.append([room, lo, *counts[lo:hi]] if hi > lo else [room, 0])
            slots = day.bath_slots
            days.append(
                [
                    day.ordinal,
                    day.midnight,
                    day.next_midnight,
                    day.activity,
                    slots if slots <= _INT63 else f"{slots:x}",  # 96 slot bits: wider than orjson's integers
                    int(day.degraded),
                    rooms,
                ]
            )
        detectors = {}
        for name, det in self.detectors.items():
            raw_det = det.dump()
            if raw_det != _fresh_dump(det):  # a detector as new is left out (most rules, most of the time)
                detectors[name] = raw_det
        body = orjson.dumps(
            [
                self.resident_id,
                self.home_id,
                self.lateness_s,
                _num(self.watermark),
                _num(self.watermark_urgent),
                _num(self.released),
                self.closed_through,
                _num(self.max_ts),
                _num(self.last_activity),
                _num(self.since),
                self.doses_taken,
                self.last_activity_id,
                self.last_activity_what,
                self.events_count,
                self.late_count,
                self.suppressed_count,
                self.gateways,
                self.gateway_offline,
                self.gateway_back,
                devices,
                self.rooms,
                days,
                buffer,
                self.open,
                self.keys,
                self.positions,
                detectors,
            ]
        )
        if len(body) > COMPRESS_ABOVE:
            return _HEAD_ZLIB + zlib.compress(body, 1)
        return _HEAD_PLAIN + body

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        plan: CarePlan | None = None,
        paused: Collection[str] = frozenset(),
    ) -> ResidentMonitor:
        """Rebuild a monitor from :meth:`to_bytes` (codec 2, or codec 1 of earlier versions).

        Raises ValueError on a foreign or newer layout.
        """
        if data[:2] != _MAGIC:
            raise ValueError("not a CareChain monitor state")
        version = data[2]
        if version == 1:
            return cls._from_v1(data, plan, paused)
        if version != CODEC_VERSION:
            raise ValueError(f"monitor state version {version} is not supported (this code reads 1-{CODEC_VERSION})")
        flags = data[3]
        if flags & ~_FLAG_ZLIB:
            raise ValueError(f"monitor state flags {flags:#x} are not supported")
        body = zlib.decompress(data[4:]) if flags & _FLAG_ZLIB else data[4:]
        s = orjson.loads(body)
        if not isinstance(s, list) or len(s) != len(_V2_FIELDS):
            raise ValueError("monitor state body does not have the codec 2 layout")
        r, h, lateness, w, wu, rl, cd, mx, a, since = s[:10]
        dt, ai, aw, n_ev, n_late, n_sup, g, go, gb = s[10:19]
        dv, rm, dy, b, o, k, p, d = s[19:]
        m = cls(r, h, plan, paused, float(lateness))
        m.watermark = _unnum(w)
        m.watermark_urgent = _unnum(wu)
        m.released = _unnum(rl)
        m.closed_through = int(cd)
        m.max_ts = _unnum(mx)
        m.last_activity = _unnum(a)
        m.last_activity_id = ai
        m.last_activity_what = aw
        m.since = _unnum(since)
        m.doses_taken = {key: float(v) for key, v in dt.items()}
        m.events_count, m.late_count, m.suppressed_count = int(n_ev), int(n_late), int(n_sup)
        m.gateways = {sys.intern(key): float(v) for key, v in g.items()}
        m.gateway_offline = {sys.intern(key): float(v) for key, v in go.items()}
        m.gateway_back = {sys.intern(key): float(v) for key, v in gb.items()}
        names: list[str] = []
        gw = ""
        for i in range(0, len(dv), 6):
            name, dg, last, first, max_gap, prev_max_gap = dv[i : i + 6]
            if dg is not None:
                gw = sys.intern(dg)
            dev = Device(gw, float(last))
            if first is not None:
                dev.since = float(first)
            dev.max_gap, dev.prev_max_gap = float(max_gap), float(prev_max_gap)
            name = sys.intern(name)
            names.append(name)
            m.devices[name] = dev
        m.rooms = [sys.intern(room) for room in rm]
        for ordinal, midnight, nxt, activity, slots, degraded, rooms in dy:
            day = Day(int(ordinal), float(midnight), float(nxt))
            day.activity = int(activity)
            day.bath_slots = int(slots, 16) if isinstance(slots, str) else int(slots)
            day.degraded = bool(degraded)
            for room, lo, *hours in rooms:
                counts = day.room_hours[int(room)] = array("I", bytes(4 * 24))
                counts[lo : lo + len(hours)] = array("I", hours)
            m.days[day.ordinal] = day
        m._days_changed()
        gw = ""
        for i in range(0, len(b), 10):
            eid, eg, dev_ref, room, kind, value, t, seq, rec, unit = b[i : i + 10]
            if eg is not None:
                gw = sys.intern(eg)
            t = float(t)
            ev = Event(
                event_id=eid,
                resident_id=m.resident_id,
                home_id=m.home_id,
                gateway_id=gw,
                device_id=names[dev_ref] if isinstance(dev_ref, int) else sys.intern(dev_ref),
                room=room,
                kind=kind,
                value=value,
                ts=clock.to_dt(t),
                seq=int(seq),
                received_at=clock.to_dt(t if rec is None else float(rec)),
                unit=unit,
            )
            m.buffer.append((t, eid, ev))
        heapq.heapify(m.buffer)
        m.open = {key: list(v) for key, v in o.items()}
        m.keys = {key: float(v) for key, v in k.items()}
        m.positions = {key: int(v) for key, v in p.items()}
        for name, raw in d.items():
            if name in m.detectors:
                m.detectors[name].load(raw)
        return m

    @classmethod
    def _from_v1(cls, data: bytes, plan: CarePlan | None, paused: Collection[str]) -> ResidentMonitor:
        """Codec 1 (zlib(JSON object)), written before codec 2: a worker upgraded in place resumes from it."""
        s = json.loads(zlib.decompress(data[3:]))
        m = cls(s["r"], s["h"], plan, paused, float(s["l"]))
        m.watermark = _unnum(s["w"])
        m.watermark_urgent = _unnum(s["wu"])
        m.released = _unnum(s["rl"])
        m.closed_through = int(s["cd"])
        m.max_ts = _unnum(s["m"])
        m.last_activity = _unnum(s["a"])
        m.last_activity_id = s["ai"]
        m.last_activity_what = s["aw"]
        m.since = _unnum(s["s"])
        m.doses_taken = {k: float(v) for k, v in s["dt"].items()}
        m.events_count, m.late_count, m.suppressed_count = s["n"]
        m.gateways = {sys.intern(k): float(v) for k, v in s["g"].items()}
        m.gateway_offline = {sys.intern(k): float(v) for k, v in s["go"].items()}
        m.gateway_back = {sys.intern(k): float(v) for k, v in s["gb"].items()}
        m.devices = {sys.intern(k): Device.load(v) for k, v in s["dv"].items()}
        m.rooms = [sys.intern(r) for r in s["rm"]]
        m.days = {int(raw[0]): Day.load(raw) for raw in s["dy"]}
        m._days_changed()
        for raw in s["b"]:
            ev = _unpack_event(m.resident_id, m.home_id, raw)
            m.buffer.append((float(raw[6]), ev.event_id, ev))
        heapq.heapify(m.buffer)
        m.open = {k: list(v) for k, v in s["o"].items()}
        m.keys = {k: float(v) for k, v in s["k"].items()}
        m.positions = {k: int(v) for k, v in s["p"].items()}
        for name, raw in s["d"].items():
            if name in m.detectors:
                m.detectors[name].load(raw)
        return m


_FRESH: dict[type[Detector], list[Any]] = {}


def _fresh_dump(det: Detector) -> list[Any]:
    """The state of a new detector of this kind (left out of checkpoints; a loaded monitor starts from it)."""
    raw = _FRESH.get(type(det))
    if raw is None:
        raw = _FRESH[type(det)] = type(det)().dump()
    return raw


def _pack_event(e: Event, t: float) -> list[Any]:
    """An event waiting in the ordered buffer, as a flat list (resident and home are the monitor's)."""
    return [e.event_id, e.gateway_id, e.device_id, e.room, e.kind, e.value, t, e.seq, e.received_at.timestamp(), e.unit]


def _unpack_event(resident_id: str, home_id: str, raw: list[Any]) -> Event:
    return Event(
        event_id=raw[0],
        resident_id=resident_id,
        home_id=home_id,
        gateway_id=sys.intern(raw[1]),
        device_id=sys.intern(raw[2]),
        room=raw[3],
        kind=raw[4],
        value=raw[5],
        ts=clock.to_dt(float(raw[6])),
        seq=int(raw[7]),
        received_at=clock.to_dt(float(raw[8])),
        unit=raw[9],
    )


def _num(x: float) -> float | None:
    return None if x == float("-inf") else x


def _unnum(x: float | None) -> float:
    return float("-inf") if x is None else float(x)
