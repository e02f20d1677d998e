"""A resident's care plan: the limits the welfare rules check against.

Every field has a default, used when the plan is silent. Times of day are local
(Europe/Stockholm unless the plan says otherwise). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Any


@dataclass(frozen=True, slots=True)
class Dose:
    """One scheduled dose: the robot's slot (e.g. "08:00") and its grace period."""

    slot: str  # "HH:MM" local time; also the dose id the robot reports
    grace_min: int = 30

    @property
    def at(self) -> time:
        return time.fromisoformat(self.slot)


@dataclass(frozen=True, slots=True)
class VitalsBounds:
    heart_rate: tuple[float, float] = (45.0, 120.0)  # bpm
    spo2_min: float = 90.0  # %
    temperature: tuple[float, float] = (35.5, 38.0)  # Cel


@dataclass(frozen=True, slots=True)
class CarePlan:
    """Per-resident limits; defaults are the product's, overridable per resident."""

    resident_id: str
    timezone: str = "Europe/Stockholm"
    day_start: time = time(7, 0)
    day_end: time = time(22, 0)
    night_start: time = time(22, 0)
    night_end: time = time(6, 0)
    #: No movement at home during the day for longer than this -> alert.
    inactivity_limit_min: int = 120
    #: The resident usually gets up by this time; alert after wake_margin_min more.
    usual_wake: time = time(8, 0)
    wake_margin_min: int = 60
    doses: tuple[Dose, ...] = field(default_factory=lambda: (Dose("08:00"), Dose("20:00")))
    vitals: VitalsBounds = field(default_factory=VitalsBounds)
    battery_low_pct: float = 15.0
    #: Gateways heartbeat every 15 s; silent after this many seconds (<= 60 s promise).
    gateway_silence_s: int = 45
    #: A single sensor that reports nothing for this long is "device silent".
    device_silence_min: int = 180
    #: Detectors paused for this resident (names as in the AI register).
    paused_detectors: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, resident_id: str, d: dict[str, Any] | None) -> CarePlan:
        """Build from the JSON stored in the registry; unknown keys are ignored."""
        d = dict(d or {})
        kw: dict[str, Any] = {}
        for name in ("day_start", "day_end", "night_start", "night_end", "usual_wake"):
            if name in d:
                kw[name] = time.fromisoformat(d[name])
        for name in (
            "timezone",
            "inactivity_limit_min",
            "wake_margin_min",
            "battery_low_pct",
            "gateway_silence_s",
            "device_silence_min",
        ):
            if name in d:
                kw[name] = d[name]
        if "doses" in d:
            kw["doses"] = tuple(Dose(x["slot"], int(x.get("grace_min", 30))) for x in d["doses"])
        if "vitals" in d:
            v = d["vitals"]
            base = VitalsBounds()
            kw["vitals"] = VitalsBounds(
                heart_rate=tuple(v.get("heart_rate", base.heart_rate)),
                spo2_min=float(v.get("spo2_min", base.spo2_min)),
                temperature=tuple(v.get("temperature", base.temperature)),
            )
        if "paused_detectors" in d:
            kw["paused_detectors"] = frozenset(d["paused_detectors"])
        return cls(resident_id=resident_id, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "day_start": self.day_start.isoformat("minutes"),
            "day_end": self.day_end.isoformat("minutes"),
            "night_start": self.night_start.isoformat("minutes"),
            "night_end": self.night_end.isoformat("minutes"),
            "inactivity_limit_min": self.inactivity_limit_min,
            "usual_wake": self.usual_wake.isoformat("minutes"),
            "wake_margin_min": self.wake_margin_min,
            "doses": [{"slot": d.slot, "grace_min": d.grace_min} for d in self.doses],
            "vitals": {
                "heart_rate": list(self.vitals.heart_rate),
                "spo2_min": self.vitals.spo2_min,
                "temperature": list(self.vitals.temperature),
            },
            "battery_low_pct": self.battery_low_pct,
            "gateway_silence_s": self.gateway_silence_s,
            "device_silence_min": self.device_silence_min,
            "paused_detectors": sorted(self.paused_detectors),
        }
