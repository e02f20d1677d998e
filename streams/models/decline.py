"""Slow decline: daily activity drifting down over weeks.

Two views of the same daily totals against the resident's long baseline (28
days of log activity, river ``Var``, not taught by days of decline): a short
exponentially weighted mean (a week) and its relative drop, and a one-sided
CUSUM of the day's log activity below the baseline, in the resident's own
standard deviations (allowance 0.5 SD a day, threshold 6 SD, SD at least 0.1). The CUSUM fires
about a week into a slowing that reaches a third in two weeks, where the
one-week mean alone needed 11-13 days. An alert needs the CUSUM over its
threshold, or the drop to reach 30%. Quiet for 21 days; days when the gateway
was silent are skipped. Feedback: "false alarm" raises the drop threshold by 5
points (max 60%) and the CUSUM threshold by 1 SD, and restarts the CUSUM.
"""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Feedback, Outcome, Severity
from streams import clock
from streams.day import Day
from streams.detector import Detector
from streams.models.baseline import Baseline

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

WARM_UP_DAYS = 21
SHORT_ALPHA = 0.25  # about a week
DEFAULT_DROP = 0.30
MAX_DROP = 0.60


#: CUSUM on log activity, in the resident's standard deviations.
ALLOWANCE_SD = 0.5
DEFAULT_H = 6.0
MAX_H = 12.0
#: Floor on the day-to-day deviation of log activity: a very regular resident is not alarmed by 10% less.
MIN_SD = 0.1


class DeclineSeries:
    """Daily activity totals -> (score = relative drop, alert, warm, drift), for the monitor and backtests."""

    __slots__ = ("cusum", "days", "h", "long", "short", "threshold")

    def __init__(self, threshold: float = DEFAULT_DROP) -> None:
        self.long = Baseline(memory=28)  # of log(1 + activity)
        self.short = math.nan
        self.cusum = 0.0
        self.h = DEFAULT_H
        self.days = 0
        self.threshold = threshold

    @property
    def usual(self) -> float:
        """The usual daily activity (geometric mean of the baseline)."""
        return math.exp(self.long.mean) - 1.0 if self.long.n else 0.0

    def step(self, x: float) -> tuple[float, bool, bool, bool]:
        """(drop, alert, warm, drift) for one day's activity total; drift = the CUSUM is over its threshold."""
        self.short = x if math.isnan(self.short) else (1 - SHORT_ALPHA) * self.short + SHORT_ALPHA * x
        warm = self.days >= WARM_UP_DAYS
        base = max(self.usual, 1.0)
        drop = (base - self.short) / base if self.days else 0.0
        lx = math.log1p(max(0.0, x))
        if self.days >= 7:
            z = (self.long.mean - lx) / max(self.long.std, MIN_SD)
            self.cusum = max(0.0, self.cusum + z - ALLOWANCE_SD)
        drifted = self.cusum > self.h
        alert = warm and (drifted or drop >= self.threshold)
        if not warm or (drop < self.threshold / 2 and self.cusum < self.h / 2):
            self.long.learn(lx)
        self.days += 1
        return drop, alert, warm, drifted

    def dump(self) -> list[Any]:
        return [
            self.days,
            self.threshold,
            None if math.isnan(self.short) else round(self.short, 3),
            self.long.dump(),
            [round(self.cusum, 4), self.h],
        ]

    def load(self, raw: list[Any]) -> None:
        self.days, self.threshold = int(raw[0]), float(raw[1])
        self.short = math.nan if raw[2] is None else float(raw[2])
        self.long.load(raw[3])
        self.cusum, self.h = float(raw[4][0]), float(raw[4][1])


class SlowDecline(Detector):
    name = "decline"
    version = "2.0"
    family = Family.CLINICAL
    purpose = "Flag a sustained fall in daily activity over weeks (slow decline)."
    warm_up = f"{WARM_UP_DAYS} days"
    feedback_effect = (
        "false alarm: drop threshold +5 points (max 60%), CUSUM threshold +1 SD (max 12), CUSUM restarted; "
        "true incident: -2.5 points"
    )
    __slots__ = ("_series",)

    def __init__(self) -> None:
        super().__init__()
        self._series: DeclineSeries | None = None  # made on the first day: a new resident costs little

    @property
    def series(self) -> DeclineSeries:
        if self._series is None:
            self._series = DeclineSeries()
        return self._series

    def on_day_closed(self, m: ResidentMonitor, day: Any) -> None:
        assert isinstance(day, Day)
        if day.degraded:
            return
        s = self.series
        usual = s.usual
        drop, alert, warm, drifted = s.step(day.activity)
        if not warm:
            return
        t = day.next_midnight - 1
        m.score(self, t, drop, s.threshold, alert, {"activity": day.activity, "drift": int(drifted)})
        open_keys = m.open_keys(self.name)
        if not alert:
            if open_keys and drop < s.threshold / 2:
                for key in open_keys:
                    m.clear(
                        key, t, "Daily activity is back to the usual.", "Den dagliga aktiviteten är som vanligt igen."
                    )
            return
        if open_keys:
            return
        iso = date.fromordinal(day.ordinal).isoformat()
        pct = round(100 * drop)
        m.fire(
            self,
            "decline",
            f"{m.resident_id}:decline:{iso}",
            Severity.MEDIUM,
            day.midnight - 7 * 86400,
            t,
            f"The resident's daily activity has fallen by about {pct}% over the last week compared with their usual.",
            f"Brukarens dagliga aktivitet har minskat med ungefär {pct} % den senaste veckan jämfört med det vanliga.",
            Evidence(
                features={
                    "activity_today": day.activity,
                    "recent_mean": round(s.short, 1),
                    "usual_mean": round(usual, 1),
                },
                score=round(drop, 3),
                threshold=s.threshold,
                window_start=clock.to_dt(day.midnight - 7 * 86400),
                window_end=clock.to_dt(day.next_midnight),
                contributing=[f"activity down {pct}% against the 4-week baseline"]
                + ([f"a sustained downward drift was detected (CUSUM {s.cusum:.1f} SD)"] if drifted else []),
                data_quality=m.quality(t),
            ),
        )

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        super().on_feedback(m, fb)
        if fb.outcome == Outcome.FALSE_ALARM:
            self.series.threshold = min(MAX_DROP, self.series.threshold + 0.05)
            self.series.h = min(MAX_H, self.series.h + 1.0)
            self.series.cusum = 0.0
        elif fb.outcome == Outcome.TRUE_INCIDENT:
            self.series.threshold = max(DEFAULT_DROP, self.series.threshold - 0.025)

    def dump_state(self) -> list[Any]:
        return [None if self._series is None else self._series.dump()]

    def load_state(self, raw: list[Any]) -> None:
        if raw[0] is not None:
            self.series.load(raw[0])
