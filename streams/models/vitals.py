"""Vitals anomaly: a reading unusual for *this* resident (personal baseline per vital sign).

Score first, then learn (an anomaly must not teach the model before it is
judged); anomalous readings are not learned. Quiet until warm: 3 days and 30
readings of that vital. One odd reading is noise (a loose finger clip, a
movement): an alert needs two anomalous readings of the same vital in a row.
A nurse's "false alarm" raises this resident's threshold by 0.5 standard
deviations (up to 8); "true incident" lowers it by 0.25 (not below the default 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Feedback, Outcome, Severity
from carechain.events import Event, Kind
from streams.detector import Detector
from streams.models.baseline import Baseline

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

WARM_UP_S = 3 * 86400
WARM_UP_N = 30
DEFAULT_K = 4.0
#: Anomalous readings of one vital in a row before an alert.
PERSIST = 2
MAX_K = 8.0
#: Smallest standard deviation assumed per vital (sensor resolution), so a flat history is not brittle.
FLOOR = {Kind.HEART_RATE.value: 3.0, Kind.SPO2.value: 0.7, Kind.TEMPERATURE.value: 0.15}
_WORDS = {
    Kind.HEART_RATE.value: ("heart rate", "pulsen", "bpm"),
    Kind.SPO2.value: ("oxygen saturation", "syremättnaden", "%"),
    Kind.TEMPERATURE.value: ("body temperature", "kroppstemperaturen", "°C"),
}


class VitalSignal:
    """One vital sign's personal baseline: ``step(t, x)`` scores, then learns."""

    __slots__ = ("baseline", "first", "floor", "k", "run")

    def __init__(self, floor: float = 1.0, k: float = DEFAULT_K) -> None:
        self.baseline = Baseline(memory=500)
        self.first: float | None = None
        self.floor = floor
        self.k = k
        self.run = 0  # anomalous readings in a row

    def warm(self, t: float) -> bool:
        return self.first is not None and t - self.first >= WARM_UP_S and self.baseline.n >= WARM_UP_N

    def step(self, t: float, x: float) -> tuple[float, bool, bool]:
        """(score = |z|, alert, warm) for a reading at epoch ``t``; learns the reading unless it alerts."""
        if self.first is None:
            self.first = t
        warm = self.warm(t)
        score = abs(self.baseline.z(x, self.floor)) if self.baseline.n > 1 else 0.0
        anomalous = warm and score > self.k
        self.run = self.run + 1 if anomalous else 0
        if not anomalous:
            self.baseline.learn(x)
        return score, self.run >= PERSIST, warm

    def dump(self) -> list[Any]:
        return [self.first, self.k, self.baseline.dump(), self.run]

    def load(self, raw: list[Any]) -> None:
        self.first = None if raw[0] is None else float(raw[0])
        self.k = float(raw[1])
        self.baseline.load(raw[2])
        self.run = int(raw[3]) if len(raw) > 3 else 0  # states written by 1.0 have no run


class VitalsAnomaly(Detector):
    name = "vitals"
    version = "1.1"
    family = Family.CLINICAL
    purpose = "Flag a heart rate, oxygen saturation or temperature reading unusual for this resident."
    kinds = frozenset(FLOOR)
    ordered = True
    warm_up = f"3 days and {WARM_UP_N} readings per vital sign; {PERSIST} unusual readings in a row to alert"
    feedback_effect = "false alarm: threshold +0.5 SD (max 8); true incident: -0.25 SD (min 4)"
    __slots__ = ("episodes", "signals")

    def __init__(self) -> None:
        super().__init__()
        self.signals: dict[str, VitalSignal] = {}
        self.episodes: dict[str, str] = {}

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if not isinstance(ev.value, int | float) or isinstance(ev.value, bool):
            return
        x = float(ev.value)
        sig = self.signals.get(ev.kind)
        if sig is None:
            sig = self.signals[ev.kind] = VitalSignal(FLOOR[ev.kind])
        mean = sig.baseline.mean
        score, alert, warm = sig.step(t, x)
        if not warm:
            return
        m.score(self, t, score, sig.k, alert, {"kind": ev.kind, "value": x, "usual": round(mean, 2)})
        key = self.episodes.get(ev.kind)
        en, sv, unit = _WORDS[ev.kind]
        if not alert:
            if key is not None and score < sig.k - 1:
                del self.episodes[ev.kind]
                m.clear(key, t, f"The {en} is back to the resident's usual.", f"{sv.capitalize()} är som vanligt igen.")
            return
        if key is not None:
            return
        key = f"{m.resident_id}:vitals_anomaly:{ev.kind}:{int(t)}"
        self.episodes[ev.kind] = key
        direction, direction_sv = ("higher", "högre") if x > mean else ("lower", "lägre")
        m.fire(
            self,
            "vitals_anomaly",
            key,
            Severity.MEDIUM,
            t,
            t,
            f"The {en} of {x:g} {unit} at {m.hhmm(t)} is unusually {direction} for this resident "
            f"(usually about {mean:.3g}).",
            f"{sv.capitalize()} {x:g} {unit} kl. {m.hhmm(t)} är ovanligt {direction_sv} för brukaren "
            f"(vanligen runt {mean:.3g}).",
            Evidence(
                features={
                    "kind": ev.kind,
                    "value": x,
                    "usual_mean": round(mean, 2),
                    "usual_sd": round(sig.baseline.std, 2),
                    "unusual_in_a_row": sig.run,
                },
                score=round(score, 2),
                threshold=sig.k,
                window_start=ev.ts,
                window_end=ev.ts,
                event_ids=[ev.event_id],
                contributing=[f"{en} {score:.1f} standard deviations from the resident's usual"],
                data_quality=m.quality(t),
            ),
        )

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        super().on_feedback(m, fb)
        kind = next((k for k in self.signals if f":{k}:" in fb.incident_key), None)
        for name, sig in self.signals.items():
            if kind is not None and name != kind:
                continue
            if fb.outcome == Outcome.FALSE_ALARM:
                sig.k = min(MAX_K, sig.k + 0.5)
            elif fb.outcome == Outcome.TRUE_INCIDENT:
                sig.k = max(DEFAULT_K, sig.k - 0.25)

    def dump_state(self) -> list[Any]:
        return [{k: s.dump() for k, s in self.signals.items()}, self.episodes]

    def load_state(self, raw: list[Any]) -> None:
        self.signals = {}
        for k, v in raw[0].items():
            sig = self.signals[k] = VitalSignal(FLOOR.get(k, 1.0))
            sig.load(v)
        self.episodes = {str(k): str(v) for k, v in raw[1].items()}
