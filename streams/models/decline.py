"""Slow decline: daily activity drifting down over weeks.

Two views of the same daily totals: a short exponentially weighted mean (a
week) against the resident's long baseline (28 days, river ``Var``, not
taught by days of decline), and river's Page-Hinkley drift test on the
day's activity relative to the baseline. An alert needs the drop to reach the
threshold (30% by default), or half of it with drift confirmed. Quiet for 21
days; days when the gateway was silent are skipped. Feedback: "false alarm"
raises the threshold by 5 points (max 60%) and restarts the drift test.
"""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING, Any

from river import drift

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


def _page_hinkley() -> drift.PageHinkley:
    return drift.PageHinkley(min_instances=7, delta=0.02, threshold=1.0, alpha=0.999, mode="down")


class DeclineSeries:
    """Daily activity totals -> (score = relative drop, alert, warm), for the monitor and backtests."""

    __slots__ = ("days", "long", "ph", "short", "threshold")

    def __init__(self, threshold: float = DEFAULT_DROP) -> None:
        self.long = Baseline(memory=28)
        self.short = math.nan
        self.ph = _page_hinkley()
        self.days = 0
        self.threshold = threshold

    def step(self, x: float) -> tuple[float, bool, bool, bool]:
        """(drop, alert, warm, drift) for one day's activity total."""
        self.short = x if math.isnan(self.short) else (1 - SHORT_ALPHA) * self.short + SHORT_ALPHA * x
        warm = self.days >= WARM_UP_DAYS
        base = max(self.long.mean, 1.0)
        drop = (base - self.short) / base if self.days else 0.0
        drifted = False
        if self.days >= 7:
            self.ph.update(x / base)
            drifted = bool(self.ph.drift_detected)
        alert = warm and (drop >= self.threshold or (drifted and drop >= self.threshold / 2))
        if not warm or drop < self.threshold / 2:
            self.long.learn(x)
        self.days += 1
        return drop, alert, warm, drifted

    def dump(self) -> list[Any]:
        ph = self.ph
        return [
            self.days,
            self.threshold,
            None if math.isnan(self.short) else self.short,
            self.long.dump(),
            [
                float(ph._x_mean.n),
                float(ph._x_mean._mean),
                float(ph._sum_increase),
                float(ph._sum_decrease),
                float(ph._max_decrease),
            ],
        ]

    def load(self, raw: list[Any]) -> None:
        self.days, self.threshold = int(raw[0]), float(raw[1])
        self.short = math.nan if raw[2] is None else float(raw[2])
        self.long.load(raw[3])
        self.ph = _page_hinkley()
        n, mean, inc, dec, max_dec = raw[4]
        self.ph._x_mean.n, self.ph._x_mean._mean = float(n), float(mean)
        self.ph._sum_increase, self.ph._sum_decrease, self.ph._max_decrease = float(inc), float(dec), float(max_dec)


class SlowDecline(Detector):
    name = "decline"
    version = "1.0"
    family = Family.CLINICAL
    purpose = "Flag a sustained fall in daily activity over weeks (slow decline)."
    warm_up = f"{WARM_UP_DAYS} days"
    feedback_effect = (
        "false alarm: drop threshold +5 points (max 60%), drift test restarted; true incident: -2.5 points"
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
        usual = s.long.mean
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
                + (["a downward drift was detected (Page-Hinkley)"] if drifted else []),
                data_quality=m.quality(t),
            ),
        )

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        super().on_feedback(m, fb)
        if fb.outcome == Outcome.FALSE_ALARM:
            self.series.threshold = min(MAX_DROP, self.series.threshold + 0.05)
            self.series.ph = _page_hinkley()
        elif fb.outcome == Outcome.TRUE_INCIDENT:
            self.series.threshold = max(DEFAULT_DROP, self.series.threshold - 0.025)

    def dump_state(self) -> list[Any]:
        return [None if self._series is None else self._series.dump()]

    def load_state(self, raw: list[Any]) -> None:
        if raw[0] is not None:
            self.series.load(raw[0])
