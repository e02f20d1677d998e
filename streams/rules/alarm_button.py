"""Alarm button: the resident pressed their safety alarm. Critical, at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

#: Presses within this many seconds of the previous one are the same call for help.
SAME_CALL_S = 60.0


class AlarmButton(Detector):
    name = "alarm_button"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Raise a critical alert when the resident presses the safety alarm button."
    kinds = frozenset({Kind.ALARM_BUTTON.value})
    __slots__ = ("last",)

    def __init__(self) -> None:
        super().__init__()
        self.last = float("-inf")

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if ev.value is not True or abs(t - self.last) <= SAME_CALL_S:
            return
        self.last = t
        m.fire(
            self,
            "alarm",
            f"{m.resident_id}:alarm:{int(t)}",
            Severity.CRITICAL,
            t,
            t,
            f"The resident pressed the alarm button at {m.hhmm(t)}.",
            f"Brukaren tryckte på larmknappen kl. {m.hhmm(t)}.",
            Evidence(
                features={"device": ev.device_id},
                score=1.0,
                threshold=1.0,
                window_start=ev.ts,
                window_end=ev.ts,
                event_ids=[ev.event_id],
                contributing=["the alarm button was pressed"],
                data_quality=m.quality(t),
            ),
        )

    def dump_state(self) -> list[Any]:
        return [None if self.last == float("-inf") else self.last]

    def load_state(self, raw: list[Any]) -> None:
        self.last = float("-inf") if raw[0] is None else float(raw[0])
