"""The detectors, as data: the API's AI register reads :data:`DETECTORS`.

Each entry names a detector, its family (welfare rules apart from clinical
models, technical supervision apart from both), version, purpose, warm-up and
how nurse feedback changes it. :class:`PauseSwitch` is the global pause.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from streams.detector import Detector
from streams.models.bathroom import BathroomVisits
from streams.models.decline import SlowDecline
from streams.models.rhythm import DailyRhythm
from streams.models.vitals import VitalsAnomaly
from streams.rules.alarm_button import AlarmButton
from streams.rules.battery_low import BatteryLow
from streams.rules.device_silent import DeviceSilent
from streams.rules.dose_missed import DoseMissed
from streams.rules.dose_overdue import DoseOverdue
from streams.rules.fall import Fall
from streams.rules.gateway_silent import GatewaySilent
from streams.rules.inactivity import Inactivity
from streams.rules.night_wandering import NightWandering
from streams.rules.not_up import NotUp
from streams.rules.refill import RefillNeeded
from streams.rules.robot_fault import RobotFault
from streams.rules.vitals_bounds import VitalsBounds

DETECTOR_CLASSES: tuple[type[Detector], ...] = (
    Fall,
    AlarmButton,
    Inactivity,
    NotUp,
    NightWandering,
    DoseOverdue,
    DoseMissed,
    RobotFault,
    RefillNeeded,
    VitalsBounds,
    GatewaySilent,
    DeviceSilent,
    BatteryLow,
    DailyRhythm,
    BathroomVisits,
    VitalsAnomaly,
    SlowDecline,
)


@dataclass(frozen=True, slots=True)
class DetectorInfo:
    """One row of the AI register."""

    name: str
    family: str
    version: str
    purpose: str
    kind: str  # "rule" (from the care plan) or "learned" (river, per resident)
    warm_up: str
    feedback: str
    inputs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DETECTORS: tuple[DetectorInfo, ...] = tuple(
    DetectorInfo(
        name=c.name,
        family=c.family.value,
        version=c.version,
        purpose=c.purpose,
        kind="learned" if c.__module__.startswith("streams.models") else "rule",
        warm_up=c.warm_up,
        feedback=c.feedback_effect,
        inputs=tuple(sorted(c.kinds)) or ("time",),
    )
    for c in DETECTOR_CLASSES
)

DETECTOR_NAMES = frozenset(d.name for d in DETECTORS)


def build_detectors() -> list[Detector]:
    """A fresh set of detectors for one resident."""
    return [c() for c in DETECTOR_CLASSES]


class PauseSwitch(set[str]):
    """Globally paused detector names (a set the worker shares with every monitor).

    Unknown names are refused, so a typo cannot look like a pause.
    """

    def pause(self, name: str) -> None:
        if name not in DETECTOR_NAMES:
            raise ValueError(f"unknown detector {name!r}")
        self.add(name)

    def resume(self, name: str) -> None:
        self.discard(name)
