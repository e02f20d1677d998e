"""A resident's day: sleep and waking, meals, bathroom, outings, home care, doses, vitals.

:func:`resident_readings` turns a home's habits, a time range and the planned
incidents into the sensor readings the home's devices would report. Every day
draws from its own random stream (seed, home, date), so any time range gives
the same readings for the same day. Times are float seconds since the Unix
epoch (UTC) inside, for speed. Pure.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from carechain.events import Kind
from carechain.simulation.homes import HomeConfig
from carechain.simulation.scenarios import Incident, IncidentType

Value = bool | float | int | str | None

MIN = 60.0
HOUR = 3600.0
DAY = 86400.0
#: Battery levels are a function of absolute time counted from here (batteries are
#: replaced at 25 %, so a healthy home never reports a low battery).
BATTERY_EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
#: Day-to-day spread (SD) of the day's mean body temperature (C) and heart rate (bpm) of a well person.
VITALS_DAY_SD = (0.1, 2.0)
#: The robot reports a dose not taken this long after it was due.
ROBOT_MISSED_AFTER_S = 60 * MIN


@dataclass(frozen=True, slots=True)
class SimReading:
    """One reading a device reports (before the gateway batches it)."""

    t: float  # seconds since the epoch, UTC
    device_id: str
    kind: Kind
    value: Value


@dataclass(frozen=True, slots=True)
class _Segment:
    start: float
    end: float
    room: str | None  # None: away from home
    mode: str  # active, sit, bed, transit, away


@dataclass(slots=True)
class _DayMods:
    """How the planned incidents change one day."""

    no_outing: bool = False
    no_nap: bool = False
    night_bathroom: float = 1.0
    day_bathroom: float = 1.0
    interval: float = 1.0  # motion interval multiplier (larger = less active)
    outing: float = 1.0
    nap_boost: float = 0.0
    wake_shift_min: float = 0.0
    bed_shift_min: float = 0.0
    temp_shift: float = 0.0
    hr_shift: float = 0.0
    restless: float = 0.0  # extra turning over and getting up at night (0: a usual night)


def _local_midnight(day: date, tz: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def _mods(day: date, incidents: Sequence[Incident], tz: ZoneInfo) -> _DayMods:
    m = _DayMods()
    noon = _local_midnight(day, tz) + 12 * HOUR
    for inc in incidents:
        s = inc.start.timestamp()
        on_day = _local_midnight(day, tz) <= s < _local_midnight(day, tz) + DAY
        if inc.type in (IncidentType.FALL, IncidentType.INACTIVITY) and on_day:
            m.no_outing = m.no_nap = True
        elif inc.type is IncidentType.INFECTION:
            d = (noon - _local_midnight(inc.start.astimezone(tz).date(), tz)) / DAY  # 0.5 on the onset day
            if 0.0 <= d < inc.duration.total_seconds() / DAY:
                ramp = min(1.0, (d + 0.5) / 2.0)
                x = inc.detail
                m.night_bathroom = 1.0 + (float(x.get("night_x", 3.5)) - 1.0) * ramp
                m.day_bathroom = 1.0 + (float(x.get("day_x", 1.8)) - 1.0) * ramp
                m.temp_shift += float(x.get("temp_c", 0.5)) * ramp
                m.hr_shift += float(x.get("hr_bpm", 5.0)) * ramp
                m.restless += float(x.get("restless", 0.0)) * ramp
                slower = float(x.get("slower", 0.0)) * ramp
                m.interval *= 1.0 + slower
                m.outing *= 1.0 - 2.0 * slower
                m.nap_boost += slower
        elif inc.type is IncidentType.DECLINE:
            g = min(1.0, max(0.0, (noon - s) / DAY / 28.0))
            if g > 0:
                m.interval *= 1.0 + 1.2 * g
                m.outing *= 1.0 - g
                m.nap_boost += 0.5 * g
                m.wake_shift_min += 45 * g
                m.bed_shift_min -= 45 * g
    return m


class _DayBuilder:
    """Builds one resident day, from waking on ``day`` to waking the next day."""

    def __init__(
        self, seed: int, home: HomeConfig, day: date, incidents: Sequence[Incident], hr_interval_s: float = 300.0
    ) -> None:
        self.seed = seed
        self.hr_interval_s = hr_interval_s
        self.home = home
        self.day = day
        self.incidents = incidents
        self.tz = ZoneInfo(home.plan.timezone)
        self.rng = random.Random(f"day|{seed}|{home.layout.home_id}|{day.isoformat()}")
        self.mods = _mods(day, incidents, self.tz)
        self.midnight = _local_midnight(day, self.tz)
        self.wake = self._wake(day)
        self.bed = self._bed(day)
        self.next_wake = self._wake(day + timedelta(days=1))
        self.segments: list[_Segment] = []
        self.out: list[SimReading] = []
        self.blackouts: list[tuple[float, float]] = []
        self._trips: list[tuple[float, float]] = []  # night trips to the bathroom (out of bed, back)

    # --- when the resident gets up and goes to bed ---------------------------------
    def _wake(self, day: date) -> float:
        rng = random.Random(f"wake|{self.seed}|{self.home.layout.home_id}|{day.isoformat()}")
        mods = _mods(day, self.incidents, self.tz)
        p = self.home.profile
        minutes = p.wake_min + rng.gauss(0.0, 20.0) + mods.wake_shift_min
        minutes = min(max(minutes, p.wake_min - 60), 8 * 60 + 15)
        return _local_midnight(day, self.tz) + minutes * MIN

    def _bed(self, day: date) -> float:
        rng = random.Random(f"bed|{self.seed}|{self.home.layout.home_id}|{day.isoformat()}")
        p = self.home.profile
        minutes = p.bed_min + rng.gauss(0.0, 25.0) + self.mods.bed_shift_min
        return self.midnight + max(minutes, 20 * 60 + 45) * MIN

    # --- readings ------------------------------------------------------------------
    def emit(self, t: float, device_id: str, kind: Kind, value: Value) -> None:
        self.out.append(SimReading(t, device_id, kind, value))

    def seg(self, start: float, end: float, room: str | None, mode: str) -> float:
        if end > start:
            self.segments.append(_Segment(start, end, room, mode))
        return end

    def walk(self, t: float, to_room: str) -> float:
        """Pass through the hall to ``to_room``; returns the arrival time."""
        self.seg(t, t + self.rng.uniform(8, 25), "hall", "transit")
        return t + self.rng.uniform(25, 40) if to_room != "hall" else t

    def bed_event(self, t: float, value: str) -> None:
        self.emit(t, self.home.layout.device("bed"), Kind.BED, value)

    def door(self, t: float) -> None:
        dev = self.home.layout.device("door")
        self.emit(t, dev, Kind.DOOR, "open")
        self.emit(t + self.rng.uniform(5, 20), dev, Kind.DOOR, "closed")

    # --- the day -------------------------------------------------------------------
    def build(self) -> list[SimReading]:
        rng = self.rng
        t = self.wake
        self.bed_event(t, "out")
        t = self.seg(t, t + rng.uniform(3, 10) * MIN, "bedroom", "active")
        t = self.walk(t, "bathroom")
        t = self.seg(t, t + rng.uniform(5, 15) * MIN, "bathroom", "active")
        t = self.walk(t, "kitchen")
        t = self.seg(t, t + rng.uniform(20, 40) * MIN, "kitchen", "active")
        acts = self._activities(t)
        acts.sort()
        cursor = t
        end_of_day = self.bed - 20 * MIN
        for start, dur, room, mode in acts:
            s = max(start, cursor)
            if s + dur > end_of_day or (mode == "away" and s > start + 30 * MIN):
                continue
            if s > cursor:
                cursor = self.walk(cursor, "living")
                cursor = self.seg(cursor, s, "living", "sit")
            if mode == "away":
                self.seg(s, s + 20, "hall", "transit")
                self.door(s + 25)
                self.seg(s + 45, s + dur, None, "away")
                self.door(s + dur)
                cursor = self.seg(s + dur + 5, s + dur + 40, "hall", "transit")
                continue
            cursor = self.walk(s, room)
            if mode == "bed":
                self.bed_event(cursor + 30, "in")
                self.bed_event(cursor + dur, "out")
            cursor = self.seg(cursor, cursor + dur, room, mode)
        if cursor < end_of_day:
            cursor = self.walk(cursor, "living")
            cursor = self.seg(cursor, end_of_day, "living", "sit")
        cursor = self.walk(cursor, "bathroom")
        cursor = self.seg(cursor, cursor + rng.uniform(5, 10) * MIN, "bathroom", "active")
        cursor = self.walk(cursor, "bedroom")
        cursor = self.seg(cursor, max(self.bed, cursor + 2 * MIN), "bedroom", "active")
        self.bed_event(cursor, "in")
        self._night(cursor)
        self._visits()
        self._incidents()
        self._motion()
        self._robot()
        self._vitals()
        self._batteries()
        return self.out

    def _activities(self, after: float) -> list[tuple[float, float, str, str]]:
        rng, m, p = self.rng, self.mods, self.home.profile
        mid = self.midnight
        acts: list[tuple[float, float, str, str]] = [
            (mid + (12 * 60 + rng.gauss(0, 15)) * MIN, max(10.0, rng.gauss(25, 8)) * MIN, "kitchen", "active"),
            (mid + (17 * 60 + 30 + rng.gauss(0, 20)) * MIN, max(15.0, rng.gauss(30, 8)) * MIN, "kitchen", "active"),
        ]
        if rng.random() < 0.6:
            acts.append((mid + (15 * 60 + rng.gauss(0, 20)) * MIN, rng.uniform(8, 15) * MIN, "kitchen", "active"))
        awake_h = max(1.0, (self.bed - self.wake) / HOUR)
        for _ in range(_poisson(rng, p.day_bathroom_per_day * m.day_bathroom * awake_h / 16.0)):
            acts.append((rng.uniform(after + HOUR, self.bed - 30 * MIN), rng.uniform(3, 8) * MIN, "bathroom", "active"))
        for _ in range(_poisson(rng, 3.0)):
            room = rng.choice(("kitchen", "bedroom", "kitchen"))
            acts.append((rng.uniform(after, self.bed - 30 * MIN), rng.uniform(2, 6) * MIN, room, "active"))
        if not m.no_nap and rng.random() < min(0.9, 0.3 + m.nap_boost):
            dur = rng.uniform(20, 60) + 60 * m.nap_boost
            acts.append((mid + rng.uniform(13 * 60, 14 * 60 + 30) * MIN, dur * MIN, "bedroom", "bed"))
        if not m.no_outing and rng.random() < p.outing_probability * m.outing:
            start = mid + rng.uniform(10 * 60, 15 * 60) * MIN
            acts.append((start, rng.uniform(40, 150) * MIN, "", "away"))
        return acts

    def _night(self, in_bed: float) -> None:
        rng, m, p = self.rng, self.mods, self.home.profile
        lo, hi = in_bed + 20 * MIN, self.next_wake - 20 * MIN
        n = _poisson(rng, p.night_bathroom_per_night * m.night_bathroom)
        trips = sorted(rng.uniform(lo, hi) for _ in range(n)) if hi > lo else []
        busy = self._night_incident_windows()
        last = -math.inf
        for t in trips:
            if t < last + 15 * MIN or any(a <= t <= b for a, b in busy):
                continue
            last = self._bathroom_trip(t)
            self._trips.append((t, last))
        self.seg(in_bed, self.next_wake, "bedroom", "bed")
        for _ in range(_poisson(rng, 0.8)):  # turning over in bed
            self.emit(rng.uniform(lo, max(lo, hi)), self.home.layout.motion("bedroom"), Kind.MOTION, True)
        if m.restless > 0 and hi > lo:
            # A restless night (infection): turning over more, and getting up without going anywhere.
            for _ in range(_poisson(rng, 3.0 * m.restless)):
                self.emit(rng.uniform(lo, hi), self.home.layout.motion("bedroom"), Kind.MOTION, True)
            for _ in range(_poisson(rng, 1.5 * m.restless)):
                t = rng.uniform(lo, hi)
                if any(a - 5 * MIN <= t <= b + 5 * MIN for a, b in self._trips + busy):
                    continue
                self.bed_event(t, "out")
                self.seg(t, t + rng.uniform(60, 240), "bedroom", "active")
                self.bed_event(t + rng.uniform(250, 400), "in")

    def _bathroom_trip(self, t: float) -> float:
        rng = self.rng
        self.bed_event(t, "out")
        a = self.seg(t, t + rng.uniform(20, 50), "bedroom", "transit")
        a = self.walk(a, "bathroom")
        a = self.seg(a, a + rng.uniform(3, 8) * MIN, "bathroom", "active")
        a = self.walk(a, "bedroom")
        a = self.seg(a, a + rng.uniform(20, 60), "bedroom", "transit")
        self.bed_event(a, "in")
        return a

    def _night_incident_windows(self) -> list[tuple[float, float]]:
        out = []
        for inc in self.incidents:
            s = inc.start.timestamp()
            if inc.type in (IncidentType.NIGHT_WANDERING, IncidentType.FALL) and self.bed < s < self.next_wake:
                out.append((s - 20 * MIN, s + inc.duration.total_seconds() + 40 * MIN))
        return out

    def _visits(self) -> None:
        rng = self.rng
        away = [(s.start, s.end) for s in self.segments if s.mode == "away"]
        blocked = away + [
            (i.start.timestamp() - 45 * MIN, (i.start + i.duration).timestamp())
            for i in self.incidents
            if i.type in (IncidentType.FALL, IncidentType.INACTIVITY)
        ]
        for v in self.home.profile.care_visits:
            start = self.midnight + (v + rng.gauss(0, 10)) * MIN
            dur = rng.uniform(15, 40) * MIN
            if any(a < start + dur and start < b for a, b in blocked):
                continue
            self._visitor(start, dur)

    def _visitor(self, start: float, dur: float) -> None:
        """Home care: the door, then a carer moving about kitchen, bathroom and bedroom."""
        rng = self.rng
        self.door(start)
        t = self.seg(start + 20, start + 60, "hall", "transit")
        rooms = ["kitchen", "bathroom", "bedroom", "kitchen"]
        share = (dur - 120) / len(rooms)
        for room in rooms:
            t = self.seg(t, t + share * rng.uniform(0.7, 1.0), room, "active")
        self.seg(start + dur - 60, start + dur - 20, "hall", "transit")
        self.door(start + dur)

    def _incidents(self) -> None:
        lay = self.home.layout
        rng = random.Random(f"incident-day|{self.seed}|{lay.home_id}|{self.day.isoformat()}")
        lo, hi = self.wake, self.next_wake
        for inc in self.incidents:
            s = inc.start.timestamp()
            dur = inc.duration.total_seconds()
            if not lo <= s < hi:
                continue
            if inc.type is IncidentType.FALL:
                if inc.detail.get("night"):
                    # Up to the bathroom, and the fall on the way.
                    self.bed_event(s - 90, "out")
                    self.seg(s - 80, s - 50, "bedroom", "transit")
                    self.seg(s - 45, s - 30, "hall", "transit")
                    self.seg(s - 25, s - 5, "bathroom", "transit")
                self.blackouts.append((s, s + dur))
                self.emit(s, lay.device("pendant"), Kind.FALL, True)
                # Help arrives: the carer at the door, then both of them moving.
                self._visitor(s + dur, rng.uniform(20, 40) * MIN)
            elif inc.type is IncidentType.INACTIVITY:
                self.blackouts.append((s, s + dur))
            elif inc.type is IncidentType.NIGHT_WANDERING:
                self.bed_event(s - rng.uniform(60, 300), "out")
                self.seg(s - 50, s - 20, "bedroom", "transit")
                self.seg(s - 15, s, "hall", "transit")
                self.door(s)
                self.door(s + dur)
                self.seg(s + dur + 10, s + dur + 40, "hall", "transit")
                self.seg(s + dur + 45, s + dur + 90, "bedroom", "transit")
                self.bed_event(s + dur + 100, "in")
                # The wanderer was not in bed meanwhile: drop the 'in bed' stillness there.
                self.blackouts.append((s + 1, s + dur - 1))
            elif inc.type is IncidentType.ROBOT_FAULT:
                self.emit(s, lay.device("robot"), Kind.ROBOT_FAULT, str(inc.detail.get("code", "E_JAM")))

    def _motion(self) -> None:
        rng = self.rng
        lay = self.home.layout
        base = self.home.profile.motion_interval_s * self.mods.interval
        for sg in self.segments:
            if sg.room is None or sg.mode in ("bed", "away"):
                continue
            dev = lay.motion(sg.room)
            if sg.mode == "transit":
                self.emit(sg.start + rng.uniform(0, 3), dev, Kind.MOTION, True)
                continue
            mean = base * (2.5 if sg.mode == "sit" else 1.0)
            t = sg.start + rng.uniform(0, 5)
            while t < sg.end:
                self.emit(t, dev, Kind.MOTION, True)
                t += max(30.0, rng.expovariate(1.0 / mean))
        # Nobody moves during a blackout (fall, long inactivity); the carer's arrival is added after.
        if self.blackouts:
            quiet = (Kind.MOTION, Kind.BED, Kind.DOOR)
            self.out = [
                r
                for r in self.out
                if r.kind not in quiet
                or not any(a < r.t < b for a, b in self.blackouts)
                or (r.kind is Kind.DOOR and self._is_incident_door(r.t))
            ]

    def _is_incident_door(self, t: float) -> bool:
        for inc in self.incidents:
            if inc.type is IncidentType.NIGHT_WANDERING:
                s, e = inc.start.timestamp(), (inc.start + inc.duration).timestamp()
                if abs(t - s) < 30 or abs(t - e) < 30:
                    return True
        return False

    def _robot(self) -> None:
        rng = self.rng
        robot = self.home.layout.device("robot")
        p = self.home.profile
        for dose in self.home.plan.doses:
            due = self.midnight + (dose.at.hour * 60 + dose.at.minute) * MIN + rng.uniform(0, 3)
            if not self.wake - 2 * HOUR <= due < self.next_wake:
                continue
            self.emit(due, robot, Kind.DOSE_DUE, dose.slot)
            missed = any(
                i.type is IncidentType.MISSED_DOSE
                and i.detail.get("slot") == dose.slot
                and abs(i.start.timestamp() - dose.grace_min * MIN - due) < HOUR
                for i in self.incidents
            )
            delay = min(max(rng.gauss(p.dose_delay_mean_min, 3.0), 0.5), dose.grace_min - 5.0) * MIN
            taken = due + delay
            if taken < self.wake:
                taken = self.wake + rng.uniform(3, 8) * MIN
            for a, b in self.blackouts:
                if a <= taken <= b:
                    taken = b + rng.uniform(3, 10) * MIN
            if missed or taken > due + ROBOT_MISSED_AFTER_S:
                self.emit(due + ROBOT_MISSED_AFTER_S, robot, Kind.DOSE_MISSED, dose.slot)
                continue
            self.emit(taken - rng.uniform(10, 40), robot, Kind.DOSE_DISPENSED, dose.slot)
            self.emit(taken, robot, Kind.DOSE_TAKEN, dose.slot)

    def _vitals(self) -> None:
        """Wristband vitals on a fixed grid over the calendar day, with a daily rhythm."""
        rng, m, p = self.rng, self.mods, self.home.profile
        dev = self.home.layout.device("wristband")
        # Nobody's day is the same: the day's mean temperature and resting heart rate wander too
        # (own stream, so the rest of the day is unchanged).
        day_rng = random.Random(f"vitals-day|{self.seed}|{self.home.layout.home_id}|{self.day.isoformat()}")
        temp_day = day_rng.gauss(0.0, VITALS_DAY_SD[0])
        hr_day = day_rng.gauss(0.0, VITALS_DAY_SD[1])
        start, end = self.midnight, self.midnight + DAY
        grid = ((self.hr_interval_s, Kind.HEART_RATE), (15 * MIN, Kind.SPO2), (30 * MIN, Kind.TEMPERATURE))
        for interval, kind in grid:
            t = math.ceil(start / interval) * interval
            while t < end:
                hour = (t - start) / HOUR
                asleep = t < self.wake or t >= self.bed
                if kind is Kind.HEART_RATE:
                    v = p.hr_base + 5.0 * math.sin((hour - 10.0) / 24.0 * 2 * math.pi) + m.hr_shift + hr_day
                    v += -7.0 if asleep else rng.uniform(0.0, 8.0)
                    value: float = round(min(max(v + rng.gauss(0, 2.5), 47.0), 115.0))
                elif kind is Kind.SPO2:
                    value = round(min(max(p.spo2_base + rng.gauss(0, 0.8) - (0.7 if asleep else 0.0), 91.0), 100.0))
                else:
                    v = p.temp_base + 0.25 * math.sin((hour - 12.0) / 24.0 * 2 * math.pi) + m.temp_shift + temp_day
                    value = round(min(max(v + rng.gauss(0, 0.08), 35.7), 37.9), 1)
                self.emit(t + 0.2, dev, kind, float(value))
                t += interval

    def _batteries(self) -> None:
        start = self.midnight
        for i, (dev, level0) in enumerate(sorted(self.home.profile.battery_start.items())):
            drain = self.home.profile.battery_drain_per_day[dev]
            for k in range(4):  # every 6 hours, staggered per device
                t = start + k * 6 * HOUR + (i + 1) * 97.0
                self.emit(t, dev, Kind.BATTERY, battery_level(level0, drain, t))


def battery_level(level0: float, drain_per_day: float, t: float) -> float:
    """A healthy battery's level at time ``t``: drains steadily, replaced at 25 %."""
    used = (100.0 - level0) + drain_per_day * (t - BATTERY_EPOCH) / DAY
    return round(100.0 - used % 75.0, 1)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def _dead_battery(readings: list[SimReading], home: HomeConfig, inc: Incident) -> list[SimReading]:
    """The device's battery sinks below the low level at ``start``, dies, then is replaced."""
    dev = str(inc.detail["device_id"])
    s = inc.start.timestamp()
    low = home.plan.battery_low_pct
    dies = s + 18 * HOUR
    replaced = s + inc.duration.total_seconds()
    out = [r for r in readings if r.device_id != dev or not (s - 12 * HOUR <= r.t < replaced)]
    t = s - 12 * HOUR
    while t < dies:
        level = low + 10.0 * (s - t) / (12 * HOUR) if t < s else low * (1.0 - (t - s) / (dies - s))
        # Reported below the low level from ``start`` on (a tiny offset keeps the boundary exact).
        level = max(0.0, min(level, 100.0) - (0.01 if t >= s else 0.0))
        out.append(SimReading(t + 0.5, dev, Kind.BATTERY, round(level, 2)))
        t += HOUR
    out.append(SimReading(replaced + 60, dev, Kind.BATTERY, 100.0))
    return out


def resident_readings(
    seed: int,
    home: HomeConfig,
    start: datetime,
    end: datetime,
    incidents: Sequence[Incident] = (),
    hr_interval_s: float = 300.0,
) -> list[SimReading]:
    """Every reading the home's devices report in ``[start, end)``, sorted by time.

    ``hr_interval_s`` is how often the wristband reports the heart rate (a
    streaming wristband reports every second: a load knob for ``--rate``).
    """
    tz = ZoneInfo(home.plan.timezone)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    readings: list[SimReading] = []
    day = first
    while day <= last:
        readings += _DayBuilder(seed, home, day, incidents, hr_interval_s).build()
        day += timedelta(days=1)
    for inc in incidents:
        if inc.type is IncidentType.DEAD_BATTERY:
            readings = _dead_battery(readings, home, inc)
    lo, hi = start.timestamp(), end.timestamp()
    readings = [r for r in readings if lo <= r.t < hi]
    readings.sort(key=lambda r: (r.t, r.device_id))
    return readings


def devices_seen(readings: Iterable[SimReading]) -> set[str]:
    """The device ids that occur in ``readings`` (for tests and the seed check)."""
    return {r.device_id for r in readings}
