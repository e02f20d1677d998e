"""Night wandering: out of bed at night and the outer door opened.

Ordered: bed and door events are compared in event-time order (released at
the watermark), so a late "back in bed" is never overtaken by the door.
Every door sensor counts as the outer door: the registry has no finer kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams import clock
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor


class NightWandering(Detector):
    name = "night_wandering"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when the resident is out of bed at night and the outer door is opened."
    kinds = frozenset({Kind.BED.value, Kind.DOOR.value})
    ordered = True
    __slots__ = ("bed_event", "out_since")

    def __init__(self) -> None:
        super().__init__()
        self.out_since: float | None = None
        self.bed_event = ""

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        plan = m.plan
        if ev.kind == Kind.BED:
            if ev.value == "out":
                if self.out_since is None:
                    self.out_since, self.bed_event = t, ev.event_id
            else:
                self.out_since = None
                for key in m.open_keys(self.name):
                    m.clear(
                        key,
                        t,
                        f"The resident was back in bed at {m.hhmm(t)}.",
                        f"Brukaren var tillbaka i sängen kl. {m.hhmm(t)}.",
                        Evidence(event_ids=[ev.event_id]),
                    )
            return
        if ev.value != "open" or self.out_since is None:
            return
        if not clock.in_window(plan.timezone, t, plan.night_start, plan.night_end):
            return
        if not clock.in_window(plan.timezone, self.out_since, plan.night_start, plan.night_end):
            return  # got up before the night began: an evening outing, not wandering
        minutes = int((t - self.out_since) // 60)
        m.fire(
            self,
            "night_wandering",
            f"{m.resident_id}:night_wandering:{int(self.out_since)}",
            Severity.HIGH,
            self.out_since,
            t,
            f"The resident left the bed at {m.hhmm(self.out_since)} and the outer door was opened at {m.hhmm(t)}.",
            f"Brukaren lämnade sängen kl. {m.hhmm(self.out_since)} och ytterdörren öppnades kl. {m.hhmm(t)}.",
            Evidence(
                features={"minutes_out_of_bed": minutes, "door_room": ev.room},
                score=1.0,
                threshold=1.0,
                window_start=clock.to_dt(self.out_since),
                window_end=ev.ts,
                event_ids=[self.bed_event, ev.event_id],
                contributing=["out of bed during the night", "the outer door opened"],
                data_quality=m.quality(t),
            ),
        )

    def dump_state(self) -> list[Any]:
        return [self.out_since, self.bed_event]

    def load_state(self, raw: list[Any]) -> None:
        self.out_since = None if raw[0] is None else float(raw[0])
        self.bed_event = str(raw[1])
