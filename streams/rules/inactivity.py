"""Daytime inactivity: no movement at home for longer than the care plan allows.

Counts from the resident's latest activity once they have been up today (before
that, "not up" speaks). Quiet while the home's gateway is silent: a dead router
must never look like an unconscious resident. After the gateway returns, the
clock restarts so a resident who stayed still is reported ten minutes later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams import clock
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor


class Inactivity(Detector):
    name = "inactivity"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when there is no movement at home during the day for longer than the care plan's limit."
    kinds = frozenset({Kind.MOTION.value, Kind.DOOR.value, Kind.BED.value, Kind.DOSE_TAKEN.value})
    __slots__ = ()

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if ev.kind == Kind.MOTION and ev.value is not True:
            return
        for key in m.open_keys(self.name):
            if t > float(m.open[key][3]):
                m.clear(
                    key,
                    t,
                    f"The resident moved again at {m.hhmm(t)}.",
                    f"Brukaren rörde sig igen kl. {m.hhmm(t)}.",
                    Evidence(event_ids=[ev.event_id], features={"room": ev.room}),
                )

    def on_tick(self, m: ResidentMonitor, now: float) -> None:
        plan = m.plan
        if m.last_activity == float("-inf"):
            return
        if not clock.in_window(plan.timezone, now, plan.day_start, plan.day_end):
            return
        ordinal = m.local(now)[0]
        day_start = clock.at_local(plan.timezone, ordinal, plan.day_start)
        start = m.activity_clock_start(now)
        if m.last_activity < day_start:
            return  # not seen up today: the not-up rule's business
        limit_s = plan.inactivity_limit_min * 60
        idle = now - start
        if idle <= limit_s or m.home_blind(now):
            return
        minutes = int((now - m.last_activity) // 60)
        since = m.hhmm(m.last_activity)
        m.fire(
            self,
            "inactivity",
            f"{m.resident_id}:inactivity:{int(m.last_activity)}",
            Severity.HIGH,
            m.last_activity,
            now,
            f"No movement at home since {since} ({minutes} minutes), longer than the care plan's "
            f"{plan.inactivity_limit_min} minutes.",
            f"Ingen rörelse i hemmet sedan kl. {since} ({minutes} minuter), längre än vårdplanens "
            f"{plan.inactivity_limit_min} minuter.",
            Evidence(
                features={"minutes_without_movement": minutes, "limit_min": plan.inactivity_limit_min},
                score=round(idle / 60, 1),
                threshold=float(plan.inactivity_limit_min),
                window_start=clock.to_dt(m.last_activity),
                window_end=clock.to_dt(now),
                event_ids=[m.last_activity_id] if m.last_activity_id else [],
                contributing=[f"no movement for {minutes} minutes during the day"],
                data_quality=m.quality(now),
            ),
        )
