"""Fall: a fall sensor reported a fall. Critical, at once, from the urgent lane."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

#: Repeated reports from the same sensor within this many seconds are one fall.
SAME_FALL_S = 30.0


class Fall(Detector):
    name = "fall"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Raise a critical alert when a fall sensor reports a fall."
    kinds = frozenset({Kind.FALL.value})
    __slots__ = ("last",)

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, float] = {}  # device -> time of its last fall report

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if ev.value is not True:
            return
        prev = self.last.get(ev.device_id)
        if prev is not None and abs(t - prev) <= SAME_FALL_S:
            return
        self.last = {d: x for d, x in self.last.items() if t - x < 3600}
        self.last[ev.device_id] = t
        room = ev.room or "home"
        m.fire(
            self,
            "fall",
            f"{m.resident_id}:fall:{int(t)}",
            Severity.CRITICAL,
            t,
            t,
            f"A fall was detected in the {room} at {m.hhmm(t)}.",
            f"Ett fall registrerades i {room} kl. {m.hhmm(t)}.",
            Evidence(
                features={"room": ev.room, "device": ev.device_id},
                score=1.0,
                threshold=1.0,
                window_start=ev.ts,
                window_end=ev.ts,
                event_ids=[ev.event_id],
                contributing=["the fall sensor triggered"],
                data_quality=m.quality(t),
            ),
        )

    def dump_state(self) -> list[Any]:
        return [self.last]

    def load_state(self, raw: list[Any]) -> None:
        self.last = {k: float(v) for k, v in raw[0].items()}
