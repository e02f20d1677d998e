"""Not up: no sign of the resident getting up by their usual time plus a margin.

Needs history from before the night ended (a monitor started at 09:30 knows
nothing about the morning) and stays quiet while the gateway is silent.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams import clock
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

_MOTION = Kind.MOTION.value


class NotUp(Detector):
    name = "not_up"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when the resident shows no sign of getting up by the usual time plus the care plan's margin."
    kinds = frozenset({Kind.MOTION.value, Kind.DOOR.value, Kind.BED.value, Kind.DOSE_TAKEN.value})
    __slots__ = ()

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if not m.open or (ev.kind == _MOTION and ev.value is not True):
            return  # nothing open to clear (the usual case)
        for key in m.open_keys(self.name):
            m.clear(
                key,
                t,
                f"The resident was up at {m.hhmm(t)}.",
                f"Brukaren var uppe kl. {m.hhmm(t)}.",
                Evidence(event_ids=[ev.event_id], features={"room": ev.room}),
            )

    def next_due(self, m: ResidentMonitor, now: float) -> float:
        """When :meth:`on_tick` may next act: this morning's deadline, or tomorrow's once today is settled."""
        plan = m.plan
        tz = plan.timezone
        ordinal = m.local(now)[0]
        margin = plan.wake_margin_min * 60
        deadline = clock.at_local(tz, ordinal, plan.usual_wake) + margin  # a silent gateway only delays it
        if now < deadline:
            return deadline
        tomorrow = clock.at_local(tz, ordinal + 1, plan.usual_wake) + margin
        morning = clock.at_local(tz, ordinal, plan.night_end)
        if (
            now >= clock.at_local(tz, ordinal, plan.day_end)
            or m.since > morning
            or m.last_activity >= morning
            or f"{m.resident_id}:not_up:{date.fromordinal(ordinal).isoformat()}" in m.keys
        ):
            return tomorrow
        return now

    def on_tick(self, m: ResidentMonitor, now: float) -> None:
        plan = m.plan
        tz = plan.timezone
        ordinal = m.local(now)[0]
        morning = clock.at_local(tz, ordinal, plan.night_end)
        deadline = clock.at_local(tz, ordinal, plan.usual_wake) + plan.wake_margin_min * 60
        for back in m.gateway_back.values():
            if back > morning:
                deadline = max(deadline, back + 600)  # blind this morning: give backfill ten minutes
        if now < deadline or now >= clock.at_local(tz, ordinal, plan.day_end):
            return
        if m.since > morning or m.last_activity >= morning or m.home_blind(now):
            return
        day = date.fromordinal(ordinal).isoformat()
        wake = plan.usual_wake.isoformat("minutes")
        last = m.hhmm(m.last_activity) if m.last_activity > float("-inf") else "-"
        m.fire(
            self,
            "not_up",
            f"{m.resident_id}:not_up:{day}",
            Severity.HIGH,
            deadline,
            now,
            f"No sign of the resident getting up this morning; they are usually up by {wake} (last movement {last}).",
            f"Inga tecken på att brukaren har gått upp i morse; brukaren är vanligen uppe kl. {wake} "
            f"(senaste rörelse {last}).",
            Evidence(
                features={"usual_wake": wake, "margin_min": plan.wake_margin_min},
                score=round((now - morning) / 60, 1),
                threshold=round((deadline - morning) / 60, 1),
                window_start=clock.to_dt(morning),
                window_end=clock.to_dt(now),
                event_ids=[m.last_activity_id] if m.last_activity_id else [],
                contributing=[f"no movement since the night ended ({plan.night_end.isoformat('minutes')})"],
                data_quality=m.quality(now),
            ),
        )
