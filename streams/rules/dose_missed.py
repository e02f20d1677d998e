"""Dose missed: the medication robot reports a dose it gave out was not taken.

Same incident key as ``dose_overdue``. If the dose is already known to be taken
(reports crossing on the way), the incident is proposed and cleared at once,
so the outcome does not depend on arrival order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams.detector import Detector
from streams.rules.dose_overdue import dose_key

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor


class DoseMissed(Detector):
    name = "dose_missed"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when the medication robot reports a dose as missed."
    kinds = frozenset({Kind.DOSE_MISSED.value})
    __slots__ = ()

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        slot = str(ev.value)
        ordinal = m.local(t)[0]
        key = dose_key(m, ordinal, slot)
        fired = m.fire(
            self,
            "dose_missed",
            key,
            Severity.MEDIUM,
            t,
            t,
            f"The medication robot reports that the {slot} dose was not taken.",
            f"Medicinroboten rapporterar att dosen kl. {slot} inte togs.",
            Evidence(
                features={"slot": slot, "device": ev.device_id},
                score=1.0,
                threshold=1.0,
                window_start=ev.ts,
                window_end=ev.ts,
                event_ids=[ev.event_id],
                contributing=["the robot reported the dose as missed"],
                data_quality=m.quality(t),
            ),
        )
        taken = m.doses_taken.get(f"{ordinal}:{slot}")
        if fired and taken is not None:
            m.clear(
                key,
                t,
                f"The {slot} dose was taken at {m.hhmm(taken)}.",
                f"Dosen kl. {slot} togs kl. {m.hhmm(taken)}.",
            )
