"""Bathroom visits by day and trips out of bed at night: a sustained rise is a sign of urinary infection.

Night: a *trip* is bed out -> bathroom motion -> bed in within 45 minutes,
outside the daytime nap hours (10:00-18:00 local), counted for the night it
belongs to (the local date twelve hours earlier). Counting trips while the
resident is in bed leaves out the evening routine and visits that straddle two
15-minute slots. Homes without a bed sensor fall back to night slots with
bathroom motion. Day: 15-minute slots with bathroom motion outside the night
hours.

Both are counts, so the per-person baseline is a Poisson mean (bounded memory
of 28 days). Each closed day adds the Poisson log-likelihood ratio of "rate
raised the way an infection raises it" (night trips x3, day visits x1.5)
against "usual rate" for the night before and the day itself; a one-sided
CUSUM (never below zero) sums this over consecutive days, so a rise must be
sustained — one restless night is drained by ordinary days. A raised body
temperature (the day's mean from the wristband against the resident's own,
in SDs with a floor of 0.1 C) is supporting evidence: at most 1.5 a day, so
fever alone needs three days. An alert needs the sum above the threshold (4.5
by default). Quiet for the first 7 days. Days when
the gateway was silent teach nothing. Feedback: "false alarm" raises the
threshold by 1 (max 10), "true incident" lowers it by 0.5 (min 4.5).
"""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Feedback, Outcome, Severity
from carechain.events import Kind
from streams import clock
from streams.day import Day
from streams.detector import Detector
from streams.models.baseline import Baseline

if TYPE_CHECKING:
    from carechain.events import Event
    from streams.monitor import ResidentMonitor

WARM_UP_DAYS = 7
DEFAULT_K = 4.5
MAX_K = 10.0
MEMORY_DAYS = 28
#: The alternative the evidence is weighed for: the infection's rise, as published for passive sensors.
NIGHT_RATIO = 3.0
DAY_RATIO = 1.5
#: Floors on the learned means: a resident who never gets up at night is not alarmed by one trip.
MIN_NIGHT_MEAN = 0.5
MIN_DAY_MEAN = 2.0
TRIP_MAX_S = 45 * 60
NAP_HOURS = (10, 18)  # bed out in these local hours is a nap, not a night
#: Days whose evidence is below this teach the baseline (a suspected infection must not).
LEARN_BELOW = 1.0
#: Night trip counts kept (nights still open); older ones are dropped.
MAX_NIGHTS = 4
#: Floor on one count's evidence for a day (against an infection).
MIN_LLR = -1.0
#: Fever as supporting evidence: (z - 1) per day, at most this, z in SDs of the daily mean temperature.
MAX_FEVER = 1.5
MIN_TEMP_SD = 0.1
MIN_TEMP_READINGS = 12  # half a day of wristband readings at 30 min


def poisson_llr(count: float, mean: float, ratio: float) -> float:
    """Log-likelihood ratio of ``count`` under Poisson(mean * ratio) against Poisson(mean)."""
    return count * math.log(ratio) - mean * (ratio - 1.0)


class PoissonMean:
    """A count's mean over the last ``memory`` observations (approximately exponentially weighted)."""

    __slots__ = ("mean", "memory", "n")

    def __init__(self, memory: int = MEMORY_DAYS) -> None:
        self.memory = memory
        self.n = 0
        self.mean = 0.0

    def learn(self, x: float) -> None:
        self.n = min(self.n + 1, self.memory)
        self.mean += (x - self.mean) / self.n

    def dump(self) -> list[Any]:
        return [self.n, round(self.mean, 4)]

    def load(self, raw: list[Any]) -> None:
        self.n, self.mean = int(raw[0]), float(raw[1])


class BathroomSeries:
    """Daily (day visits, night trips) -> evidence sum, alert, for the monitor and for backtests."""

    __slots__ = ("cusum", "day", "days", "k", "night", "temp")

    def __init__(self, k: float = DEFAULT_K) -> None:
        self.day = PoissonMean()
        self.night = PoissonMean()
        self.temp = Baseline(memory=MEMORY_DAYS)  # the day's mean body temperature
        self.days = 0
        self.k = k
        self.cusum = 0.0

    def step(
        self, day_visits: float, night_trips: float, temp: float | None = None
    ) -> tuple[float, bool, bool, dict[str, float]]:
        """(score = evidence sum, alert, warm, per-day evidence) for one day; learns it unless it is unusual.

        ``temp`` is the day's mean body temperature, None without a wristband.
        """
        warm = self.days >= WARM_UP_DAYS
        ln = ld = fever = 0.0
        if self.days:
            # Fewer visits than usual is weak evidence against an infection (a count can only fall so far).
            ln = max(MIN_LLR, poisson_llr(night_trips, max(self.night.mean, MIN_NIGHT_MEAN), NIGHT_RATIO))
            ld = max(MIN_LLR, poisson_llr(day_visits, max(self.day.mean, MIN_DAY_MEAN), DAY_RATIO))
        if temp is not None and self.temp.n >= 3:
            fever = min(MAX_FEVER, max(0.0, self.temp.z(temp, MIN_TEMP_SD) - 1.0))
        if warm:
            self.cusum = max(0.0, self.cusum + ln + ld + fever)
        alert = warm and self.cusum > self.k
        if not warm or (ln + ld < LEARN_BELOW and fever == 0.0):
            self.day.learn(day_visits)
            self.night.learn(night_trips)
            if temp is not None:
                self.temp.learn(temp)
            self.days += 1
        return self.cusum, alert, warm, {"llr_night": round(ln, 2), "llr_day": round(ld, 2), "fever": round(fever, 2)}

    def dump(self) -> list[Any]:
        return [self.days, self.k, round(self.cusum, 4), self.day.dump(), self.night.dump(), self.temp.dump()]

    def load(self, raw: list[Any]) -> None:
        self.days, self.k, self.cusum = int(raw[0]), float(raw[1]), float(raw[2])
        self.day.load(raw[3])
        self.night.load(raw[4])
        self.temp.load(raw[5])


class NightTrips:
    """Trips out of bed to the bathroom, counted per night (a few small numbers of state)."""

    __slots__ = ("bath", "has_bed", "nights", "out_at", "temps")

    def __init__(self) -> None:
        self.out_at: float | None = None  # epoch of the last bed out, while a trip may be under way
        self.bath = False  # bathroom motion since that bed out
        self.has_bed = False  # a bed sensor has been heard: count trips, not slots
        self.nights: dict[int, int] = {}  # night (ordinal of its evening) -> trips
        self.temps: dict[int, list[float]] = {}  # local day -> [sum, count] of body temperatures

    def bed_out(self, t: float) -> None:
        self.has_bed = True
        self.out_at, self.bath = t, False

    def bathroom(self, t: float) -> None:
        if self.out_at is not None and self.out_at <= t <= self.out_at + TRIP_MAX_S:
            self.bath = True

    def bed_in(self, t: float, night: int, local_hour: int) -> bool:
        """Back in bed: True (and counted for ``night``) if it closes a night trip to the bathroom."""
        self.has_bed = True
        out, self.out_at = self.out_at, None
        if out is None or not self.bath or not 0 <= t - out <= TRIP_MAX_S:
            return False
        if NAP_HOURS[0] <= local_hour < NAP_HOURS[1]:
            return False
        self.nights[night] = self.nights.get(night, 0) + 1
        if len(self.nights) > MAX_NIGHTS:
            del self.nights[min(self.nights)]
        return True

    def temperature(self, day: int, value: float) -> None:
        acc = self.temps.get(day)
        if acc is None:
            acc = self.temps[day] = [0.0, 0.0]
            if len(self.temps) > MAX_NIGHTS:
                del self.temps[min(self.temps)]
        acc[0] += value
        acc[1] += 1

    def day_temperature(self, day: int) -> float | None:
        """The day's mean body temperature (None with too few readings); forgets it and older days."""
        acc = self.temps.get(day)
        for k in [k for k in self.temps if k <= day]:
            del self.temps[k]
        return None if acc is None or acc[1] < MIN_TEMP_READINGS else acc[0] / acc[1]

    def take(self, night: int) -> int:
        """Trips of ``night``; forgets it and every older night."""
        n = self.nights.get(night, 0)
        for k in [k for k in self.nights if k <= night]:
            del self.nights[k]
        return n

    def dump(self) -> list[Any]:
        return [
            self.out_at,
            int(self.bath),
            int(self.has_bed),
            [[k, v] for k, v in sorted(self.nights.items())],
            [[k, round(v[0], 2), v[1]] for k, v in sorted(self.temps.items())],
        ]

    def load(self, raw: list[Any]) -> None:
        self.out_at = None if raw[0] is None else float(raw[0])
        self.bath, self.has_bed = bool(raw[1]), bool(raw[2])
        self.nights = {int(k): int(v) for k, v in raw[3]}
        self.temps = {int(k): [float(v), float(n)] for k, v, n in (raw[4] if len(raw) > 4 else [])}


class BathroomVisits(Detector):
    name = "bathroom"
    version = "2.0"
    family = Family.CLINICAL
    purpose = "Flag a sustained rise in bathroom visits by day or trips out of bed at night (urinary infection)."
    kinds = frozenset({Kind.BED.value, Kind.MOTION.value, Kind.TEMPERATURE.value})
    warm_up = f"{WARM_UP_DAYS} days"
    feedback_effect = "false alarm: evidence threshold +1 (max 10); true incident: -0.5 (min 4.5)"
    __slots__ = ("_series", "_trips")

    def __init__(self) -> None:
        super().__init__()
        self._series: BathroomSeries | None = None  # made on the first day: a new resident costs little
        self._trips: NightTrips | None = None

    @property
    def series(self) -> BathroomSeries:
        if self._series is None:
            self._series = BathroomSeries()
        return self._series

    @property
    def trips(self) -> NightTrips:
        if self._trips is None:
            self._trips = NightTrips()
        return self._trips

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        from streams.monitor import is_bathroom  # the monitor imports this module

        if ev.kind == Kind.MOTION:
            if ev.value is True and self._trips is not None and self._trips.out_at is not None and is_bathroom(ev.room):
                self._trips.bathroom(t)
        elif ev.kind == Kind.TEMPERATURE:
            if isinstance(ev.value, (int, float)) and not isinstance(ev.value, bool):
                self.trips.temperature(m.local(t)[0], float(ev.value))
        elif ev.value == "out":
            self.trips.bed_out(t)
        elif ev.value == "in":
            out = self.trips.out_at
            night = m.local((out if out is not None else t) - 12 * 3600)[0]
            _, midnight, _ = m.local(t)
            self.trips.bed_in(t, night, int((t - midnight) // 3600))

    def on_day_closed(self, m: ResidentMonitor, day: Any) -> None:
        assert isinstance(day, Day)
        trips = self.trips.take(day.ordinal - 1)  # the night that ended this morning
        temp = self.trips.day_temperature(day.ordinal)
        if day.degraded:
            return
        plan = m.plan
        night_end = plan.night_end.hour * 3600 + plan.night_end.minute * 60
        night_start = plan.night_start.hour * 3600 + plan.night_start.minute * 60
        dv, nv = day.bathroom_visits(night_end, night_start)
        night = trips if self.trips.has_bed else nv
        what = "trips out of bed" if self.trips.has_bed else "night visits"
        what_sv = "toalettbesök ur sängen" if self.trips.has_bed else "toalettbesök på natten"
        s = self.series
        usual_night, usual_day = s.night.mean, s.day.mean
        usual_temp = s.temp.mean
        score, alert, warm, z = s.step(dv, night, temp)
        t = day.next_midnight - 1
        if not warm:
            return
        m.score(self, t, score, s.k, alert, {"day_visits": dv, "night_visits": night, **z})
        iso = date.fromordinal(day.ordinal).isoformat()
        open_keys = m.open_keys(self.name)
        if not alert:
            if open_keys and score < s.k / 2:
                for key in open_keys:
                    m.clear(key, t, "Bathroom visits are back to the usual.", "Toalettbesöken är som vanligt igen.")
            return
        if open_keys:
            return
        start = day.midnight - 86400 * 2
        m.fire(
            self,
            "infection_signs",
            f"{m.resident_id}:bathroom:{iso}",
            Severity.MEDIUM,
            start,
            t,
            f"Bathroom visits have been unusually frequent over the last days ({dv} by day on {iso}, {night} {what} "
            f"the night before, usually {usual_day:.1f} and {usual_night:.1f}); this can be a sign of urinary "
            "infection.",
            f"Toalettbesöken har varit ovanligt många de senaste dagarna ({dv} på dagen {iso}, {night} {what_sv} "
            f"natten innan, vanligen {usual_day:.1f} och {usual_night:.1f}); det kan vara tecken på "
            "urinvägsinfektion.",
            Evidence(
                features={
                    "day_visits": dv,
                    "night_visits": night,
                    **z,
                    "usual_night": round(usual_night, 1),
                    "usual_day": round(usual_day, 1),
                },
                score=round(score, 2),
                threshold=s.k,
                window_start=clock.to_dt(start),
                window_end=clock.to_dt(day.next_midnight),
                contributing=[
                    f"{night} {what} against usually {usual_night:.1f}",
                    f"{dv} day visits against usually {usual_day:.1f}",
                ]
                + ([f"body temperature {temp:.1f} C against usually {usual_temp:.1f} C"] if z["fever"] > 0 else []),
                data_quality=m.quality(t),
            ),
        )

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        super().on_feedback(m, fb)
        if fb.outcome == Outcome.FALSE_ALARM:
            self.series.k = min(MAX_K, self.series.k + 1.0)
            self.series.cusum = 0.0
        elif fb.outcome == Outcome.TRUE_INCIDENT:
            self.series.k = max(DEFAULT_K, self.series.k - 0.5)

    def dump_state(self) -> list[Any]:
        return [
            None if self._series is None else self._series.dump(),
            None if self._trips is None else self._trips.dump(),
        ]

    def load_state(self, raw: list[Any]) -> None:
        if raw and raw[0] is not None:
            self.series.load(raw[0])
        if len(raw) > 1 and raw[1] is not None:
            self.trips.load(raw[1])
