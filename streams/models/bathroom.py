"""Bathroom visits per day and per night: a sustained rise is a sign of urinary infection.

A visit is a 15-minute slot with bathroom motion. Each closed day is compared
with the resident's own baseline (28 days, river ``Var``); the score is the
larger of the day and night z-scores. An alert needs two days in a row above
the threshold (sustained, not one restless night). Quiet for the first 7
days. Days when the gateway was silent teach nothing. Feedback: "false alarm"
raises the threshold by 0.5 (max 5), "true incident" lowers it by 0.25 (min 2).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Feedback, Outcome, Severity
from streams import clock
from streams.day import Day
from streams.detector import Detector
from streams.models.baseline import Baseline

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

WARM_UP_DAYS = 7
DEFAULT_K = 2.0
MAX_K = 5.0
SUSTAINED_DAYS = 2


class BathroomSeries:
    """Daily (day visits, night visits) -> score and alert, for the monitor and for backtests."""

    __slots__ = ("day", "days", "k", "night", "recent")

    def __init__(self, k: float = DEFAULT_K) -> None:
        self.day = Baseline(memory=28)
        self.night = Baseline(memory=28)
        self.days = 0
        self.k = k
        self.recent: list[float] = []  # scores of the last few days

    def step(self, day_visits: float, night_visits: float) -> tuple[float, bool, bool, dict[str, float]]:
        """(score, alert, warm, z-scores) for one day; learns the day unless it is unusual."""
        warm = self.days >= WARM_UP_DAYS
        zd = self.day.z(day_visits, 1.0) if self.days else 0.0
        zn = self.night.z(night_visits, 0.7) if self.days else 0.0
        score = max(zd, zn)
        self.recent = [*self.recent[-(SUSTAINED_DAYS - 1) :], score] if SUSTAINED_DAYS > 1 else [score]
        alert = warm and len(self.recent) >= SUSTAINED_DAYS and min(self.recent) > self.k
        if not warm or score < self.k:
            self.day.learn(day_visits)
            self.night.learn(night_visits)
            self.days += 1
        return score, alert, warm, {"z_day": round(zd, 2), "z_night": round(zn, 2)}

    def dump(self) -> list[Any]:
        return [self.days, self.k, list(self.recent), self.day.dump(), self.night.dump()]

    def load(self, raw: list[Any]) -> None:
        self.days, self.k = int(raw[0]), float(raw[1])
        self.recent = [float(x) for x in raw[2]]
        self.day.load(raw[3])
        self.night.load(raw[4])


class BathroomVisits(Detector):
    name = "bathroom"
    version = "1.0"
    family = Family.CLINICAL
    purpose = "Flag a sustained rise in bathroom visits by day or night (a sign of urinary infection)."
    warm_up = f"{WARM_UP_DAYS} days"
    feedback_effect = "false alarm: threshold +0.5 SD (max 5); true incident: -0.25 SD (min 2)"
    __slots__ = ("_series",)

    def __init__(self) -> None:
        super().__init__()
        self._series: BathroomSeries | None = None  # made on the first day: a new resident costs little

    @property
    def series(self) -> BathroomSeries:
        if self._series is None:
            self._series = BathroomSeries()
        return self._series

    def on_day_closed(self, m: ResidentMonitor, day: Any) -> None:
        assert isinstance(day, Day)
        if day.degraded:
            return
        plan = m.plan
        night_end = plan.night_end.hour * 3600 + plan.night_end.minute * 60
        night_start = plan.night_start.hour * 3600 + plan.night_start.minute * 60
        dv, nv = day.bathroom_visits(night_end, night_start)
        score, alert, warm, z = self.series.step(dv, nv)
        t = day.next_midnight - 1
        if not warm:
            return
        m.score(self, t, score, self.series.k, alert, {"day_visits": dv, "night_visits": nv, **z})
        iso = date.fromordinal(day.ordinal).isoformat()
        open_keys = m.open_keys(self.name)
        if not alert:
            if open_keys and score < self.series.k / 2:
                for key in open_keys:
                    m.clear(key, t, "Bathroom visits are back to the usual.", "Toalettbesöken är som vanligt igen.")
            return
        if open_keys:
            return
        m.fire(
            self,
            "infection_signs",
            f"{m.resident_id}:bathroom:{iso}",
            Severity.MEDIUM,
            day.midnight - 86400 * (SUSTAINED_DAYS - 1),
            t,
            f"Bathroom visits have been unusually frequent for {SUSTAINED_DAYS} days ({dv} by day, {nv} at night "
            f"on {iso}); this can be a sign of urinary infection.",
            f"Toalettbesöken har varit ovanligt många i {SUSTAINED_DAYS} dagar ({dv} på dagen, {nv} på natten "
            f"{iso}); det kan vara tecken på urinvägsinfektion.",
            Evidence(
                features={"day_visits": dv, "night_visits": nv, **z, "usual_night": round(self.series.night.mean, 1)},
                score=round(score, 2),
                threshold=self.series.k,
                window_start=clock.to_dt(day.midnight - 86400 * (SUSTAINED_DAYS - 1)),
                window_end=clock.to_dt(day.next_midnight),
                contributing=[
                    f"{nv} night visits against usually {self.series.night.mean:.1f}",
                    f"{dv} day visits against usually {self.series.day.mean:.1f}",
                ],
                data_quality=m.quality(t),
            ),
        )

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        super().on_feedback(m, fb)
        if fb.outcome == Outcome.FALSE_ALARM:
            self.series.k = min(MAX_K, self.series.k + 0.5)
        elif fb.outcome == Outcome.TRUE_INCIDENT:
            self.series.k = max(DEFAULT_K, self.series.k - 0.25)

    def dump_state(self) -> list[Any]:
        return [None if self._series is None else self._series.dump()]

    def load_state(self, raw: list[Any]) -> None:
        if raw[0] is not None:
            self.series.load(raw[0])
