"""Daily rhythm: where and when the resident is active, against their learned profile.

The profile is the resident's usual activity per room and hour (an
exponentially weighted mean over days, float32, at most 8 rooms x 24 hours).
Each closed day gets a score: the share of the day's activity that fell in a
different room or hour than usual (total-variation distance, 0..1). The day
alerts when the score is both above 0.35 and more than ``k`` standard
deviations above the resident's own usual score (river ``Var``). Quiet for 14
days. Feedback: "false alarm" raises ``k`` by 0.5 (max 6), "true incident"
lowers it by 0.25 (min 3).
"""

from __future__ import annotations

import base64
import sys
from array import array
from datetime import date
from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Feedback, Outcome, Severity
from streams import clock
from streams.day import Day
from streams.detector import Detector
from streams.models.baseline import Baseline

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

WARM_UP_DAYS = 14
ALPHA = 1 / 7  # a week's weight in the profile
DEFAULT_K = 3.0
MAX_K = 6.0
MIN_SCORE = 0.35


def _little_endian(p: array[float]) -> array[float]:
    """The codec stores float32 little-endian whatever the machine (byte swapping is its own inverse)."""
    if sys.byteorder == "big":
        p = array("f", p)
        p.byteswap()
    return p


class DailyRhythm(Detector):
    name = "rhythm"
    version = "1.0"
    family = Family.CLINICAL
    purpose = "Flag a day whose activity per room and hour differs clearly from the resident's usual rhythm."
    warm_up = f"{WARM_UP_DAYS} days"
    feedback_effect = "false alarm: threshold +0.5 SD (max 6); true incident: -0.25 SD (min 3)"
    __slots__ = ("_scores", "days", "k", "profile")

    def __init__(self) -> None:
        super().__init__()
        self.profile: dict[int, array[float]] = {}
        self.days = 0
        self._scores: Baseline | None = None  # made on the first day: a new resident costs little
        self.k = DEFAULT_K

    @property
    def scores(self) -> Baseline:
        if self._scores is None:
            self._scores = Baseline(memory=28)
        return self._scores

    def on_day_closed(self, m: ResidentMonitor, day: Any) -> None:
        assert isinstance(day, Day)
        if day.degraded or day.activity == 0:
            return  # a blind day, or nobody home: nothing to learn about the rhythm
        rooms = set(self.profile) | set(day.room_hours)
        total_p = sum(sum(v) for v in self.profile.values()) or 1.0
        total_q = sum(sum(v) for v in day.room_hours.values()) or 1
        tv = 0.0
        diffs: list[tuple[float, int, int]] = []
        for r in rooms:
            p = self.profile.get(r)
            q = day.room_hours.get(r)
            for h in range(24):
                d = (q[h] / total_q if q else 0.0) - (p[h] / total_p if p else 0.0)
                tv += abs(d)
                diffs.append((d, r, h))
        tv /= 2
        t = day.next_midnight - 1
        if self.days >= WARM_UP_DAYS:
            threshold = max(MIN_SCORE, self.scores.mean + self.k * max(self.scores.std, 0.03))
            alert = tv > threshold
            m.score(self, t, tv, round(threshold, 3), alert, {"activity": day.activity})
            self._judge(m, day, t, tv, threshold, alert, diffs)
        if self.days < WARM_UP_DAYS or tv <= MIN_SCORE:
            self.scores.learn(tv)
        self._learn(day)

    def _judge(
        self,
        m: ResidentMonitor,
        day: Day,
        t: float,
        tv: float,
        threshold: float,
        alert: bool,
        diffs: list[tuple[float, int, int]],
    ) -> None:
        open_keys = m.open_keys(self.name)
        if not alert:
            for key in open_keys:
                m.clear(key, t, "The daily rhythm is back to the usual.", "Dygnsrytmen är som vanligt igen.")
            return
        if open_keys:
            return
        words = []
        for d, r, h in sorted(diffs, key=lambda x: -abs(x[0]))[:3]:
            room = m.rooms[r] if r < len(m.rooms) else "another room"
            words.append(f"{'more' if d > 0 else 'less'} activity in the {room} {h:02d}-{(h + 1) % 24:02d} than usual")
        iso = date.fromordinal(day.ordinal).isoformat()
        m.fire(
            self,
            "rhythm_change",
            f"{m.resident_id}:rhythm:{iso}",
            Severity.LOW,
            day.midnight,
            t,
            f"The resident's day on {iso} looked clearly different from their usual rhythm ({words[0]}).",
            f"Brukarens dygn {iso} skilde sig tydligt från den vanliga rytmen.",
            Evidence(
                features={"activity": day.activity, "usual_score": round(self.scores.mean, 3)},
                score=round(tv, 3),
                threshold=round(threshold, 3),
                window_start=clock.to_dt(day.midnight),
                window_end=clock.to_dt(day.next_midnight),
                contributing=words,
                data_quality=m.quality(t),
            ),
        )

    def _learn(self, day: Day) -> None:
        a = ALPHA if self.days >= 1 else 1.0
        for r in set(self.profile) | set(day.room_hours):
            p = self.profile.get(r)
            if p is None:
                p = self.profile[r] = array("f", [0.0] * 24)
            q = day.room_hours.get(r)
            for h in range(24):
                p[h] = (1 - a) * p[h] + a * (q[h] if q else 0)
        self.days += 1

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        super().on_feedback(m, fb)
        if fb.outcome == Outcome.FALSE_ALARM:
            self.k = min(MAX_K, self.k + 0.5)
        elif fb.outcome == Outcome.TRUE_INCIDENT:
            self.k = max(DEFAULT_K, self.k - 0.25)

    def dump_state(self) -> list[Any]:
        return [
            self.days,
            self.k,
            None if self._scores is None else self._scores.dump(),
            {str(r): base64.b64encode(_little_endian(p).tobytes()).decode() for r, p in self.profile.items()},
        ]

    def load_state(self, raw: list[Any]) -> None:
        self.days, self.k = int(raw[0]), float(raw[1])
        if raw[2] is not None:
            self.scores.load(raw[2])
        self.profile = {}
        for r, b64 in raw[3].items():
            p = self.profile[int(r)] = array("f")
            p.frombytes(base64.b64decode(b64))
            self.profile[int(r)] = _little_endian(p)
