"""Low battery: a sensor's battery fell below the care plan's level; cleared after a new battery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

#: A battery counts as replaced when it reports this many points above the low level.
REPLACED_MARGIN = 10.0


class BatteryLow(Detector):
    name = "battery_low"
    version = "1.0"
    family = Family.TECHNICAL
    purpose = "Alert when a sensor's battery is below the care plan's level."
    kinds = frozenset({Kind.BATTERY.value})
    ordered = True
    __slots__ = ("low",)

    def __init__(self) -> None:
        super().__init__()
        self.low: dict[str, str] = {}  # device -> open incident key

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if not isinstance(ev.value, int | float) or isinstance(ev.value, bool):
            return
        pct = float(ev.value)
        limit = m.plan.battery_low_pct
        key = self.low.get(ev.device_id)
        if key is not None:
            if pct >= limit + REPLACED_MARGIN:
                del self.low[ev.device_id]
                m.clear(
                    key,
                    t,
                    f"Sensor {ev.device_id} has a new battery ({pct:g}%).",
                    f"Sensorn {ev.device_id} har fått nytt batteri ({pct:g} %).",
                )
            return
        if pct >= limit:
            return
        key = f"{m.resident_id}:battery_low:{ev.device_id}:{int(t)}"
        self.low[ev.device_id] = key
        m.fire(
            self,
            "battery_low",
            key,
            Severity.LOW,
            t,
            t,
            f"The battery of sensor {ev.device_id} is at {pct:g}%; please replace it.",
            f"Batteriet i sensorn {ev.device_id} är på {pct:g} %; byt det.",
            Evidence(
                features={"device": ev.device_id, "battery_pct": pct},
                score=pct,
                threshold=limit,
                event_ids=[ev.event_id],
                contributing=[f"battery {pct:g}% below {limit:g}%"],
            ),
        )

    def dump_state(self) -> list[Any]:
        return [self.low]

    def load_state(self, raw: list[Any]) -> None:
        self.low = {str(k): str(v) for k, v in raw[0].items()}
