"""Robot fault: the medication robot reports a fault; cleared when it dispenses again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor


class RobotFault(Detector):
    name = "robot_fault"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when the medication robot reports a fault (one incident until it works again)."
    kinds = frozenset({Kind.ROBOT_FAULT.value, Kind.DOSE_DISPENSED.value, Kind.DOSE_TAKEN.value})
    ordered = True  # fault vs. working again must be judged in event-time order
    __slots__ = ()

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        open_keys = m.open_keys(self.name)
        if ev.kind != Kind.ROBOT_FAULT:
            for key in open_keys:
                m.clear(
                    key,
                    t,
                    f"The medication robot worked again at {m.hhmm(t)}.",
                    f"Medicinroboten fungerade igen kl. {m.hhmm(t)}.",
                    Evidence(event_ids=[ev.event_id]),
                )
            return
        if open_keys:
            return
        m.fire(
            self,
            "robot_fault",
            f"{m.resident_id}:robot_fault:{int(t)}",
            Severity.MEDIUM,
            t,
            t,
            f"The medication robot reported a fault ({ev.value}) at {m.hhmm(t)}.",
            f"Medicinroboten rapporterade ett fel ({ev.value}) kl. {m.hhmm(t)}.",
            Evidence(
                features={"code": str(ev.value), "device": ev.device_id},
                event_ids=[ev.event_id],
                contributing=[f"fault code {ev.value}"],
                data_quality=m.quality(t),
            ),
        )

    def dump_state(self) -> list[Any]:
        return []
