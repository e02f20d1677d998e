"""Signs of a urinary infection: several of the resident's own daily habits and vitals, weighed together.

A urinary infection in an older person shows as more bathroom visits (most of
all at night), restless nights, often (not always) a raised temperature and
heart rate, and less activity by day. Each closed day the model compares
six daily features with the resident's own baseline and turns each into
evidence (a log-likelihood ratio, "as an infection changes it" against
"usual"), each with a floor and a cap so that no single feature decides:

* **night trips**: bed out -> bathroom motion -> bed in within 45 minutes,
  outside the daytime nap hours (10:00-18:00 local), counted for the night
  they belong to (the local date twelve hours earlier); homes without a bed
  sensor fall back to 15-minute night slots with bathroom motion. Poisson
  mean, alternative x3.
* **day visits**: 15-minute slots with bathroom motion outside the night
  hours. Poisson mean, alternative x1.5.
* **restless night**: motion while in bed (turning over, sitting up) and
  getting out of bed without going to the bathroom, per night. Poisson mean,
  alternative x3.
* **temperature**: the day's mean body temperature from the wristband, in the
  resident's own SDs (floor 0.1 C); evidence z - 1, at most 1.5.
* **resting heart rate**: mean heart rate 00:00-05:00, in the resident's own
  SDs (floor 1.5 bpm); evidence z - 1, at most 1.5. Temperature and heart rate
  together at most 2 a day, so a fever alone needs three days.
* **activity**: log of the day's activity events, in the resident's own SDs
  (floor 0.05); evidence -z - 1 (a quieter day), at most 1.

A one-sided CUSUM (never below zero) sums the days, so a change must be
sustained (one restless night is drained by ordinary days); an alert needs the
sum above the threshold. That sum weighs the vitals as a fever/no-fever mixture
each day, so every normal temperature costs an infection without fever about
0.9: over three days more than the other signs of a mild one can make up. So a
second test looks for the infection **without fever** (4.0): the other signs plus
the vitals weighed for a small rise (0.5 of the resident's SDs, at most 1 a day
either way), summed over the last **three days** only (the detection window; a
short window cannot drift up over weeks of ordinary days), alerting above the
threshold + 1. Either test alerts; while an alert raised without a fever is
open, a day with a fever (vitals evidence at its cap) raises a second one
("now with a fever"). Quiet for the first 7 days. Days when the gateway was
silent teach nothing; days of a suspected infection do not teach the baseline.
Feedback: "false alarm" raises the threshold by 1 (max 10), "true incident"
lowers it by 0.5 (never below the default). The per-resident state is a
handful of numbers (river ``stats.Var`` baselines and Poisson means), the last
three days' afebrile evidence, plus the open nights' counts: about 320 bytes encoded.
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
DEFAULT_K = 3.5
MAX_K = 10.0
MEMORY_DAYS = 28
#: The alternative the evidence is weighed for: how an infection raises each count.
NIGHT_RATIO = 2.5
DAY_RATIO = 1.5
RESTLESS_RATIO = 3.0
#: Floors on the learned means: a resident who never gets up at night is not alarmed by one trip.
MIN_NIGHT_MEAN = 0.5
MIN_DAY_MEAN = 2.0
MIN_RESTLESS_MEAN = 0.75
#: Floor on one count's evidence for a day (against an infection), and a cap (for it).
MIN_LLR = -0.5
MAX_LLR = 4.0
MAX_DAY_LLR = 3.0
MAX_RESTLESS = 3.0
TRIP_MAX_S = 45 * 60
NAP_HOURS = (10, 18)  # bed out in these local hours is a nap, not a night
#: Resting heart rate: readings in these local hours.
REST_HOURS = (0, 5)
#: A suspected infection does not teach the baseline: learn only while the evidence sum stays below this.
LEARN_BELOW = 1.0
#: Nights / days of counts kept while open; older ones are dropped.
MAX_NIGHTS = 4
#: Vitals as evidence: an infection raises temperature and resting heart rate in FEVER_SHARE of
#: older people (by about these many of the resident's own SDs); at most MAX_VITALS a day either way.
FEVER_SHARE = 0.6
TEMP_SHIFT_SD = 3.0
HR_SHIFT_SD = 2.5
MAX_VITALS = 2.0
MIN_VITALS = -1.0
#: Threshold added for a resident without vitals (no wristband readings that day).
NO_VITALS_EXTRA_K = 1.0
MAX_Z = 6.0
MIN_RESTLESS_LLR = -1.0
MIN_TEMP_SD = 0.1
MIN_HR_SD = 1.5
MIN_TEMP_READINGS = 12  # half a day of wristband readings at 30 min
MIN_HR_READINGS = 12  # an hour at 5 min
#: Less activity as evidence: (-z - 1), at most this, z in SDs of log activity.
MAX_ACTIVITY = 1.0
MIN_ACTIVITY_SD = 0.05
#: The test for an infection without fever: the other signs and vitals weighed for a small rise
#: (AFEBRILE_SHIFT_SD of the resident's own SDs each, the day's vitals evidence within
#: +-AFEBRILE_MAX_VITALS), summed over the last AFEBRILE_DAYS days, alerting above the threshold
#: plus AFEBRILE_EXTRA_K (chosen on evaluation seeds 1-10; docs/detection.md).
AFEBRILE_DAYS = 3
AFEBRILE_SHIFT_SD = 0.5
AFEBRILE_MAX_VITALS = 1.0
AFEBRILE_EXTRA_K = 1.0
#: Incident keys of alerts raised on a day with a fever end so; an open alert without it is followed by a
#: second alert when a fever comes.
FEVER_KEY = ":fever"


def poisson_llr(count: float, mean: float, ratio: float) -> float:
    """Log-likelihood ratio of ``count`` under Poisson(mean * ratio) against Poisson(mean)."""
    return count * math.log(ratio) - mean * (ratio - 1.0)


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def count_llr(count: float, mean: float, min_mean: float, ratio: float, lo: float, hi: float) -> float:
    """A day's count as evidence, between ``lo`` and ``hi``.

    For the count the mean is floored at ``min_mean`` (one trip is no news to a resident who
    never gets up); against it no more than the resident's own mean supports (a quiet sleeper's
    quiet night is no news either).
    """
    llr = poisson_llr(count, max(mean, min_mean), ratio)
    return _clip(llr, max(lo, -mean * (ratio - 1.0)), hi)


def vitals_llr(temp_z: float | None, hr_z: float | None) -> float:
    """Log-likelihood ratio of the day's temperature and resting heart rate (z against the resident's own).

    The alternative is a mixture: with probability FEVER_SHARE the infection raises both
    (by TEMP_SHIFT_SD and HR_SHIFT_SD), otherwise neither; so a normal temperature is only
    weak evidence against an infection (log(1 - FEVER_SHARE) at the least).
    """
    x = 0.0
    if temp_z is not None:
        x += TEMP_SHIFT_SD * temp_z - TEMP_SHIFT_SD**2 / 2.0
    if hr_z is not None:
        x += HR_SHIFT_SD * hr_z - HR_SHIFT_SD**2 / 2.0
    if temp_z is None and hr_z is None:
        return 0.0
    return math.log((1.0 - FEVER_SHARE) + FEVER_SHARE * math.exp(min(x, 30.0)))


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


def afebrile_vitals_llr(temp_z: float | None, hr_z: float | None) -> float:
    """Evidence of the day's vitals for an infection without fever: a small rise (AFEBRILE_SHIFT_SD) in each."""
    x = sum(AFEBRILE_SHIFT_SD * z - AFEBRILE_SHIFT_SD**2 / 2.0 for z in (temp_z, hr_z) if z is not None)
    return _clip(x, -AFEBRILE_MAX_VITALS, AFEBRILE_MAX_VITALS)


class BathroomSeries:
    """Daily features -> evidence sum, alert, for the monitor and for backtests."""

    __slots__ = ("activity", "cusum", "day", "days", "hr", "k", "night", "recent", "restless", "temp")

    def __init__(self, k: float = DEFAULT_K) -> None:
        self.day = PoissonMean()
        self.night = PoissonMean()
        self.restless = PoissonMean()
        self.temp = Baseline(memory=MEMORY_DAYS)  # the day's mean body temperature
        self.hr = Baseline(memory=MEMORY_DAYS)  # the night's resting heart rate
        self.activity = Baseline(memory=MEMORY_DAYS)  # log of the day's activity events
        self.days = 0
        self.k = k
        self.cusum = 0.0
        self.recent: list[float] = []  # the last AFEBRILE_DAYS days' evidence for an infection without fever

    def step(
        self,
        day_visits: float,
        night_trips: float,
        temp: float | None = None,
        hr: float | None = None,
        restless: float | None = None,
        activity: float | None = None,
    ) -> tuple[float, bool, bool, dict[str, float]]:
        """(score, alert, warm, per-feature evidence) for one day; learns it unless unusual.

        The score is the larger of the CUSUM and the afebrile three-day sum moved onto the CUSUM's
        threshold (sum - AFEBRILE_EXTRA_K): an alert when it is above :meth:`threshold`.

        ``temp`` is the day's mean body temperature, ``hr`` the resting heart rate (None without a
        wristband), ``restless`` the night's movements in bed (None without a bed sensor),
        ``activity`` the day's activity events.
        """
        warm = self.days >= WARM_UP_DAYS
        ev = {"llr_night": 0.0, "llr_day": 0.0, "restless": 0.0, "vitals": 0.0, "less_active": 0.0}
        if self.days:
            # Fewer visits than usual is weak evidence against an infection (a count can only fall so far).
            ev["llr_night"] = count_llr(night_trips, self.night.mean, MIN_NIGHT_MEAN, NIGHT_RATIO, MIN_LLR, MAX_LLR)
            ev["llr_day"] = count_llr(day_visits, self.day.mean, MIN_DAY_MEAN, DAY_RATIO, MIN_LLR, MAX_DAY_LLR)
            if restless is not None and self.restless.n:
                ev["restless"] = count_llr(
                    restless, self.restless.mean, MIN_RESTLESS_MEAN, RESTLESS_RATIO, MIN_RESTLESS_LLR, MAX_RESTLESS
                )
        zt = None if temp is None or self.temp.n < 3 else _clip(self.temp.z(temp, MIN_TEMP_SD), -MAX_Z, MAX_Z)
        zh = None if hr is None or self.hr.n < 3 else _clip(self.hr.z(hr, MIN_HR_SD), -MAX_Z, MAX_Z)
        ev["vitals"] = _clip(vitals_llr(zt, zh), MIN_VITALS, MAX_VITALS)
        ev["temp_z"] = 0.0 if zt is None else zt
        ev["hr_z"] = 0.0 if zh is None else zh
        log_activity = None if activity is None else math.log1p(max(0.0, activity))
        if log_activity is not None and self.activity.n >= 3:
            ev["less_active"] = _clip(-self.activity.z(log_activity, MIN_ACTIVITY_SD) - 1.0, 0.0, MAX_ACTIVITY)
        other = ev["llr_night"] + ev["llr_day"] + ev["restless"] + ev["less_active"]
        total = other + ev["vitals"]
        ev["afebrile"] = other + afebrile_vitals_llr(zt, zh)
        if warm:
            self.cusum = max(0.0, self.cusum + total)
            self.recent = [*self.recent, ev["afebrile"]][-AFEBRILE_DAYS:]
        vitals = temp is not None or hr is not None
        score = self.score(vitals)
        alert = warm and score > self.threshold(vitals)
        quiet = self.recent_sum() < (self.k + AFEBRILE_EXTRA_K) / 2.0
        if not warm or (total < LEARN_BELOW and self.cusum < LEARN_BELOW and quiet):
            self.day.learn(day_visits)
            self.night.learn(night_trips)
            if restless is not None:
                self.restless.learn(restless)
            if temp is not None:
                self.temp.learn(temp)
            if hr is not None:
                self.hr.learn(hr)
            if log_activity is not None:
                self.activity.learn(log_activity)
            self.days += 1
        return score, alert, warm, {k: round(v, 2) + 0.0 for k, v in ev.items()}

    def recent_sum(self) -> float:
        """The afebrile test's sum: the most evidence of the last days ending today (at least 0)."""
        acc = best = 0.0
        for x in reversed(self.recent):
            acc += x
            best = max(best, acc)
        return best

    def score(self, vitals: bool = True) -> float:
        """The CUSUM, or the afebrile sum on the CUSUM's scale when that is closer to alerting."""
        afebrile = self.recent_sum() + self.threshold(vitals) - (self.k + AFEBRILE_EXTRA_K)
        return max(self.cusum, afebrile)

    def threshold(self, vitals: bool = True) -> float:
        """The evidence sum that alerts; without a wristband (no vitals, no evidence from them either way)
        the other signs must say more. The afebrile sum alerts above ``k + AFEBRILE_EXTRA_K`` either way."""
        return self.k if vitals else self.k + NO_VITALS_EXTRA_K

    def dump(self) -> list[Any]:
        return [
            self.days,
            self.k,
            round(self.cusum, 4),
            self.day.dump(),
            self.night.dump(),
            self.temp.dump(),
            self.restless.dump(),
            self.hr.dump(),
            self.activity.dump(),
            [round(x, 3) for x in self.recent],
        ]

    def load(self, raw: list[Any]) -> None:
        self.days, self.k, self.cusum = int(raw[0]), float(raw[1]), float(raw[2])
        self.day.load(raw[3])
        self.night.load(raw[4])
        self.temp.load(raw[5])
        if len(raw) > 8:  # version 3 state; version 2 learns these afresh
            self.restless.load(raw[6])
            self.hr.load(raw[7])
            self.activity.load(raw[8])
        self.recent = [float(x) for x in raw[9]] if len(raw) > 9 else []  # version 4


def _add(acc: dict[int, list[float]], key: int, value: float) -> None:
    a = acc.get(key)
    if a is None:
        a = acc[key] = [0.0, 0.0]
        if len(acc) > MAX_NIGHTS:
            del acc[min(acc)]
    a[0] += value
    a[1] += 1


def _take_mean(acc: dict[int, list[float]], key: int, min_n: int) -> float | None:
    """The mean of ``key`` (None with too few values); forgets it and older keys."""
    a = acc.get(key)
    for k in [k for k in acc if k <= key]:
        del acc[k]
    return None if a is None or a[1] < min_n else a[0] / a[1]


def _take_count(acc: dict[int, int], key: int) -> int:
    n = acc.get(key, 0)
    for k in [k for k in acc if k <= key]:
        del acc[k]
    return n


class NightTrips:
    """Trips out of bed to the bathroom and restlessness per night, vitals per day (a few small numbers)."""

    __slots__ = ("bath", "has_bed", "hrs", "in_bed", "nights", "out_at", "restless", "temps")

    def __init__(self) -> None:
        self.out_at: float | None = None  # epoch of the last bed out, while a trip may be under way
        self.bath = False  # bathroom motion since that bed out
        self.has_bed = False  # a bed sensor has been heard: count trips, not slots
        self.in_bed = False  # in bed for the night (not a nap)
        self.nights: dict[int, int] = {}  # night (ordinal of its evening) -> trips
        self.restless: dict[int, int] = {}  # night -> movements in bed and get-ups without a trip
        self.temps: dict[int, list[float]] = {}  # local day -> [sum, count] of body temperatures
        self.hrs: dict[int, list[float]] = {}  # local day -> [sum, count] of resting heart rates

    def bed_out(self, t: float) -> None:
        self.has_bed = True
        self.in_bed = False
        self.out_at, self.bath = t, False

    def bathroom(self, t: float) -> None:
        if self.out_at is not None and self.out_at <= t <= self.out_at + TRIP_MAX_S:
            self.bath = True

    def moved_in_bed(self, night: int) -> None:
        """Motion (not in the bathroom) while in bed for the night."""
        if self.in_bed:
            self._count(self.restless, night)

    def _count(self, acc: dict[int, int], night: int) -> None:
        acc[night] = acc.get(night, 0) + 1
        if len(acc) > MAX_NIGHTS:
            del acc[min(acc)]

    def bed_in(self, t: float, night: int, local_hour: int) -> bool:
        """Back in bed: True (and counted for ``night``) if it closes a night trip to the bathroom.

        Up and back within the trip time without the bathroom is a restless night's get-up.
        """
        self.has_bed = True
        out, self.out_at = self.out_at, None
        if NAP_HOURS[0] <= local_hour < NAP_HOURS[1]:
            self.in_bed = False
            return False
        self.in_bed = True
        if out is None or not 0 <= t - out <= TRIP_MAX_S:
            return False
        if not self.bath:
            self._count(self.restless, night)
            return False
        self._count(self.nights, night)
        return True

    def temperature(self, day: int, value: float) -> None:
        _add(self.temps, day, value)

    def heart_rate(self, day: int, value: float) -> None:
        _add(self.hrs, day, value)

    def day_temperature(self, day: int) -> float | None:
        """The day's mean body temperature (None with too few readings); forgets it and older days."""
        return _take_mean(self.temps, day, MIN_TEMP_READINGS)

    def day_heart_rate(self, day: int) -> float | None:
        """The day's resting heart rate (None with too few readings); forgets it and older days."""
        return _take_mean(self.hrs, day, MIN_HR_READINGS)

    def take(self, night: int) -> int:
        """Trips of ``night``; forgets it and every older night."""
        return _take_count(self.nights, night)

    def take_restless(self, night: int) -> int:
        """Restless movements of ``night``; forgets it and every older night."""
        return _take_count(self.restless, night)

    def dump(self) -> list[Any]:
        return [
            self.out_at,
            int(self.bath),
            int(self.has_bed),
            [[k, v] for k, v in sorted(self.nights.items())],
            [[k, round(v[0], 2), v[1]] for k, v in sorted(self.temps.items())],
            int(self.in_bed),
            [[k, v] for k, v in sorted(self.restless.items())],
            [[k, round(v[0], 1), v[1]] for k, v in sorted(self.hrs.items())],
        ]

    def load(self, raw: list[Any]) -> None:
        self.out_at = None if raw[0] is None else float(raw[0])
        self.bath, self.has_bed = bool(raw[1]), bool(raw[2])
        self.nights = {int(k): int(v) for k, v in raw[3]}
        self.temps = {int(k): [float(v), float(n)] for k, v, n in (raw[4] if len(raw) > 4 else [])}
        if len(raw) > 7:
            self.in_bed = bool(raw[5])
            self.restless = {int(k): int(v) for k, v in raw[6]}
            self.hrs = {int(k): [float(v), float(n)] for k, v, n in raw[7]}


def _said(ev: dict[str, float], usual: dict[str, float], f: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What stood out on the day, in words (English, Swedish), most telling first."""
    en: list[tuple[float, str, str]] = []
    if ev["llr_night"] > 0:
        en.append(
            (
                ev["llr_night"],
                f"{f['night']} {f['what']} at night against usually {usual['night']:.1f}",
                f"{f['night']} {f['what_sv']} på natten mot vanligen {usual['night']:.1f}",
            )
        )
    if ev["llr_day"] > 0:
        en.append(
            (
                ev["llr_day"],
                f"{f['day']} bathroom visits by day against usually {usual['day']:.1f}",
                f"{f['day']} toalettbesök på dagen mot vanligen {usual['day']:.1f}",
            )
        )
    if ev["restless"] > 0:
        en.append(
            (
                ev["restless"],
                f"a restless night with {f['restless']} movements in bed against usually {usual['restless']:.1f}",
                f"en orolig natt med {f['restless']} rörelser i sängen mot vanligen {usual['restless']:.1f}",
            )
        )
    if ev["temp_z"] > 1.5 and f["temp"] is not None:
        en.append(
            (
                ev["temp_z"] / 2.0,
                f"body temperature {f['temp']:.1f} C against usually {usual['temp']:.1f} C",
                f"kroppstemperatur {f['temp']:.1f} °C mot vanligen {usual['temp']:.1f} °C",
            )
        )
    if ev["hr_z"] > 1.5 and f["hr"] is not None:
        en.append(
            (
                ev["hr_z"] / 2.0,
                f"resting heart rate {f['hr']:.0f} against usually {usual['hr']:.0f}",
                f"vilopuls {f['hr']:.0f} mot vanligen {usual['hr']:.0f}",
            )
        )
    if ev["less_active"] > 0:
        en.append((ev["less_active"], "less active than usual by day", "mindre aktiv än vanligt på dagen"))
    en.sort(key=lambda x: -x[0])
    return [e[1] for e in en], [e[2] for e in en]


class BathroomVisits(Detector):
    name = "bathroom"
    version = "4.0"
    family = Family.CLINICAL
    purpose = (
        "Flag signs of a urinary infection: a sustained rise in bathroom visits (most at night), restless nights, "
        "a raised temperature or resting heart rate and less activity, against the resident's own baseline; "
        "with or without a fever."
    )
    kinds = frozenset({Kind.BED.value, Kind.MOTION.value, Kind.TEMPERATURE.value, Kind.HEART_RATE.value})
    warm_up = f"{WARM_UP_DAYS} days"
    feedback_effect = (
        "false alarm: evidence threshold +1 (max 10, both tests) and the sums restart; "
        "true incident: -0.5 (not below the default)"
    )
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

        kind = ev.kind
        if kind == Kind.MOTION:
            trips = self._trips
            if ev.value is not True or trips is None:
                return
            if is_bathroom(ev.room):
                if trips.out_at is not None:
                    trips.bathroom(t)
            elif trips.in_bed:
                trips.moved_in_bed(m.local(t - 12 * 3600)[0])
        elif kind == Kind.TEMPERATURE or kind == Kind.HEART_RATE:
            if not isinstance(ev.value, (int, float)) or isinstance(ev.value, bool):
                return
            day, midnight, _ = m.local(t)
            if kind == Kind.TEMPERATURE:
                self.trips.temperature(day, float(ev.value))
            elif REST_HOURS[0] * 3600 <= t - midnight < REST_HOURS[1] * 3600:
                self.trips.heart_rate(day, float(ev.value))
        elif ev.value == "out":
            self.trips.bed_out(t)
        elif ev.value == "in":
            out = self.trips.out_at
            night = m.local((out if out is not None else t) - 12 * 3600)[0]
            _, midnight, _ = m.local(t)
            self.trips.bed_in(t, night, int((t - midnight) // 3600))

    def on_day_closed(self, m: ResidentMonitor, day: Any) -> None:
        assert isinstance(day, Day)
        tr = self.trips
        trips = tr.take(day.ordinal - 1)  # the night that ended this morning
        restless = tr.take_restless(day.ordinal - 1)
        temp = tr.day_temperature(day.ordinal)
        hr = tr.day_heart_rate(day.ordinal)
        if day.degraded:
            return
        plan = m.plan
        night_end = plan.night_end.hour * 3600 + plan.night_end.minute * 60
        night_start = plan.night_start.hour * 3600 + plan.night_start.minute * 60
        dv, nv = day.bathroom_visits(night_end, night_start)
        night = trips if tr.has_bed else nv
        s = self.series
        usual = {
            "night": s.night.mean,
            "day": s.day.mean,
            "restless": s.restless.mean,
            "temp": s.temp.mean,
            "hr": s.hr.mean,
        }
        score, alert, warm, z = s.step(dv, night, temp, hr, restless if tr.has_bed else None, day.activity)
        t = day.next_midnight - 1
        if not warm:
            return
        features: dict[str, float | int | str | None] = {
            "day_visits": dv,
            "night_visits": night,
            "restless_moves": restless if tr.has_bed else None,
            "temperature": None if temp is None else round(temp, 2),
            "resting_hr": None if hr is None else round(hr, 1),
            "activity": day.activity,
            **z,
        }
        vitals = temp is not None or hr is not None
        k = s.threshold(vitals)
        afebrile = alert and s.cusum <= k  # only the test for an infection without fever is over its threshold
        features["evidence_sum"] = round(s.cusum, 2)
        features["afebrile_sum_3_days"] = round(s.recent_sum(), 2)
        features["afebrile_threshold"] = s.k + AFEBRILE_EXTRA_K
        m.score(self, t, score, k, alert, features)
        iso = date.fromordinal(day.ordinal).isoformat()
        open_keys = m.open_keys(self.name)
        if not alert:
            if open_keys and score < k / 2:
                for key in open_keys:
                    m.clear(
                        key,
                        t,
                        "Bathroom visits, nights and vitals are back to the usual.",
                        "Toalettbesök, nätter och vitalparametrar är som vanligt igen.",
                    )
            return
        # A fever (the day's vitals as strong as they count) after signs without one is news: a second alert.
        fever = z["vitals"] >= MAX_VITALS
        if open_keys and (not fever or any(k.endswith(FEVER_KEY) for k in open_keys)):
            return
        escalated = bool(open_keys)
        what = "trips out of bed" if tr.has_bed else "visits"
        what_sv = "toalettbesök ur sängen" if tr.has_bed else "toalettbesök"
        words, words_sv = _said(
            z,
            usual,
            {"night": night, "day": dv, "restless": restless, "temp": temp, "hr": hr, "what": what, "what_sv": what_sv},
        )
        top = "; ".join(words[:3]) or "small changes over several days"
        top_sv = "; ".join(words_sv[:3]) or "små förändringar under flera dagar"
        if afebrile:
            top += "; no fever, as often at this age"
            top_sv += "; ingen feber, som ofta i hög ålder"
        if escalated:
            top += "; now with a fever, after the signs without one already reported"
            top_sv += "; nu med feber, efter tecknen utan feber som redan rapporterats"
        start = day.midnight - 86400 * 2
        m.fire(
            self,
            "infection_signs",
            f"{m.resident_id}:bathroom:{iso}{FEVER_KEY if fever else ''}",
            Severity.MEDIUM,
            start,
            t,
            f"Signs that can mean a urinary infection have added up over the last days ({top}, on {iso}); "
            "please check on the resident.",
            f"Tecken som kan betyda urinvägsinfektion har samlats de senaste dagarna ({top_sv}, {iso}); "
            "titta till personen.",
            Evidence(
                features={
                    **features,
                    "usual_night": round(usual["night"], 1),
                    "usual_day": round(usual["day"], 1),
                    "usual_restless": round(usual["restless"], 1),
                    "usual_temperature": round(usual["temp"], 2),
                    "usual_resting_hr": round(usual["hr"], 1),
                },
                score=round(score, 2),
                threshold=k,
                window_start=clock.to_dt(start),
                window_end=clock.to_dt(day.next_midnight),
                contributing=words or ["evidence summed over several days"],
                data_quality=m.quality(t),
            ),
        )

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        super().on_feedback(m, fb)
        if fb.outcome == Outcome.FALSE_ALARM:
            self.series.k = min(MAX_K, self.series.k + 1.0)
            self.series.cusum = 0.0
            self.series.recent = []
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
