"""Vitals outside the care plan's bounds: heart rate, SpO2, body temperature.

Ordered: readings are judged in event-time order, one episode per vital from
the first reading outside the bounds to the first one back inside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

_NAMES = {
    Kind.HEART_RATE.value: ("heart rate", "pulsen", "bpm"),
    Kind.SPO2.value: ("oxygen saturation", "syremättnaden", "%"),
    Kind.TEMPERATURE.value: ("body temperature", "kroppstemperaturen", "°C"),
}


class VitalsBounds(Detector):
    name = "vitals_bounds"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when heart rate, oxygen saturation or body temperature is outside the care plan's bounds."
    kinds = frozenset(_NAMES)
    ordered = True
    __slots__ = ("episodes",)

    def __init__(self) -> None:
        super().__init__()
        self.episodes: dict[str, str] = {}  # vital kind -> open incident key

    def _bounds(self, m: ResidentMonitor, kind: str) -> tuple[float, float]:
        v = m.plan.vitals
        if kind == Kind.HEART_RATE:
            return v.heart_rate
        if kind == Kind.SPO2:
            return v.spo2_min, 101.0
        return v.temperature

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if not isinstance(ev.value, int | float) or isinstance(ev.value, bool):
            return
        value = float(ev.value)
        lo, hi = self._bounds(m, ev.kind)
        en, sv, unit = _NAMES[ev.kind]
        key = self.episodes.get(ev.kind)
        if lo <= value <= hi:
            if key is not None:
                del self.episodes[ev.kind]
                m.clear(
                    key,
                    t,
                    f"The {en} was back within bounds ({value:g} {unit}) at {m.hhmm(t)}.",
                    f"{sv.capitalize()} var åter inom gränserna ({value:g} {unit}) kl. {m.hhmm(t)}.",
                    Evidence(event_ids=[ev.event_id], features={ev.kind: value}),
                )
            return
        if key is not None:
            return
        key = f"{m.resident_id}:vitals_bounds:{ev.kind}:{int(t)}"
        self.episodes[ev.kind] = key
        severe = ev.kind == Kind.SPO2 or value < lo - 10 or value > hi + 20
        if ev.kind == Kind.TEMPERATURE:
            severe = value < lo - 1.5 or value > hi + 1.5
        side = "below" if value < lo else "above"
        side_sv = "under" if value < lo else "över"
        limit = lo if value < lo else hi
        m.fire(
            self,
            f"vitals_{ev.kind}",
            key,
            Severity.HIGH if severe else Severity.MEDIUM,
            t,
            t,
            f"The {en} was {value:g} {unit} at {m.hhmm(t)}, {side} the care plan's limit of {limit:g}.",
            f"{sv.capitalize()} var {value:g} {unit} kl. {m.hhmm(t)}, {side_sv} vårdplanens gräns {limit:g}.",
            Evidence(
                features={ev.kind: value, "low": lo, "high": hi},
                score=value,
                threshold=limit,
                window_start=ev.ts,
                window_end=ev.ts,
                event_ids=[ev.event_id],
                contributing=[f"{en} {side} {limit:g} {unit}"],
                data_quality=m.quality(t),
            ),
        )

    def dump_state(self) -> list[Any]:
        return [self.episodes]

    def load_state(self, raw: list[Any]) -> None:
        self.episodes = {str(k): str(v) for k, v in raw[0].items()}
