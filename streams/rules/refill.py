"""Refill needed: the medication robot is running low. One incident until it is refilled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor


class RefillNeeded(Detector):
    name = "refill_needed"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when the medication robot needs a refill (cleared when it reports more doses left)."
    kinds = frozenset({Kind.REFILL_NEEDED.value})
    ordered = True
    __slots__ = ("left",)

    def __init__(self) -> None:
        super().__init__()
        self.left: int | None = None

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        left = int(ev.value) if isinstance(ev.value, int | float) else 0
        previous, self.left = self.left, left
        open_keys = m.open_keys(self.name)
        if open_keys and previous is not None and left > previous:
            for key in open_keys:
                m.clear(key, t, "The medication robot was refilled.", "Medicinroboten har fyllts på.")
            return
        if open_keys:
            return
        m.fire(
            self,
            "refill_needed",
            f"{m.resident_id}:refill_needed:{int(t)}",
            Severity.LOW,
            t,
            t,
            f"The medication robot needs a refill: {left} doses left.",
            f"Medicinroboten behöver fyllas på: {left} doser kvar.",
            Evidence(
                features={"doses_left": left},
                score=float(left),
                event_ids=[ev.event_id],
                contributing=[f"{left} doses left in the robot"],
                data_quality=m.quality(t),
            ),
        )

    def dump_state(self) -> list[Any]:
        return [self.left]

    def load_state(self, raw: list[Any]) -> None:
        self.left = None if raw[0] is None else int(raw[0])
