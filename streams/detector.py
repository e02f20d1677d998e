"""The tiny interface every rule and learned model implements (river style).

A detector is a plain object holding one resident's state for one purpose. The
monitor hands it events (``on_event``), the passing of time (``on_tick``) and
nurse feedback (``on_feedback``); the detector answers through the monitor
(``fire``, ``clear``, ``score``). ``dump``/``load`` give its state as plain
JSON-able values for the monitor's explicit codec — never pickle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from carechain.candidates import Family, Feedback

if TYPE_CHECKING:
    from carechain.events import Event
    from streams.monitor import ResidentMonitor


class Detector:
    """Base class: override what you need. Class attributes describe it for the AI register."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    family: ClassVar[Family] = Family.WELFARE
    purpose: ClassVar[str] = ""
    #: Event kinds this detector wants (empty: none; the monitor dispatches by kind).
    kinds: ClassVar[frozenset[str]] = frozenset()
    #: True when the detector needs events in event-time order (released at the watermark).
    ordered: ClassVar[bool] = False
    #: Learned models are quiet until warm; documented in the register.
    warm_up: ClassVar[str] = "none"
    #: How nurse feedback changes it, in words (for the register).
    feedback_effect: ClassVar[str] = "counted for precision figures; the care plan sets the limit"

    __slots__ = ("false_alarms", "true_incidents")

    def __init__(self) -> None:
        self.false_alarms = 0
        self.true_incidents = 0

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        """An event of one of ``kinds`` at epoch ``t`` (its event time)."""

    def on_tick(self, m: ResidentMonitor, now: float) -> None:
        """Time passed: check deadlines against ``now`` (epoch seconds)."""

    def on_day_closed(self, m: ResidentMonitor, day: Any) -> None:
        """A local day is complete (the watermark passed its end): learn and score it."""

    def on_feedback(self, m: ResidentMonitor, fb: Feedback) -> None:
        """A nurse's verdict on one of this detector's alerts. Rules only count it."""
        if fb.outcome.value == "false_alarm":
            self.false_alarms += 1
        elif fb.outcome.value == "true_incident":
            self.true_incidents += 1

    def dump(self) -> list[Any]:
        """State as JSON-able values (feedback counts first)."""
        return [self.false_alarms, self.true_incidents, *self.dump_state()]

    def load(self, raw: list[Any]) -> None:
        """Restore from :meth:`dump`."""
        self.false_alarms, self.true_incidents = int(raw[0]), int(raw[1])
        self.load_state(raw[2:])

    def dump_state(self) -> list[Any]:
        """Detector-specific state (override)."""
        return []

    def load_state(self, raw: list[Any]) -> None:
        """Restore detector-specific state (override)."""
