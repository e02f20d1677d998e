"""Daytime inactivity: no movement at home for longer than the care plan allows.

Counts from the resident's latest activity once they have been up today (before
that, "not up" speaks). Quiet while the home's gateway is silent: a dead router
must never look like an unconscious resident. After the gateway returns, the
clock restarts so a resident who stayed still is reported ten minutes later.

Two everyday stillnesses are not inactivity: when the latest sign of life was
the outer door (and nothing moved inside since) the resident is out, and the
rule waits for them to come back; resting in bed during the day (a nap) gets
twice the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carechain.candidates import Evidence, Family, Severity
from carechain.events import Event, Kind
from streams import clock
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

_MOTION = Kind.MOTION.value


#: Resting in bed during the day may last this many times the plan's limit.
NAP_FACTOR = 2


class Inactivity(Detector):
    name = "inactivity"
    version = "1.0"
    family = Family.WELFARE
    purpose = (
        "Alert when there is no movement at home during the day for longer than the care plan's limit "
        "(not while the resident is out; twice the limit resting in bed)."
    )
    kinds = frozenset({Kind.MOTION.value, Kind.DOOR.value, Kind.BED.value, Kind.DOSE_TAKEN.value})
    __slots__ = ()

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if not m.open or (ev.kind == _MOTION and ev.value is not True):
            return  # nothing open to clear (the usual case)
        for key in m.open_keys(self.name):
            if t > float(m.open[key][3]):
                m.clear(
                    key,
                    t,
                    f"The resident moved again at {m.hhmm(t)}.",
                    f"Brukaren rörde sig igen kl. {m.hhmm(t)}.",
                    Evidence(event_ids=[ev.event_id], features={"room": ev.room}),
                )

    def next_due(self, m: ResidentMonitor, now: float) -> float:
        """When :meth:`on_tick` may next act: the latest activity plus the limit, on that activity's day.

        Never while nothing moved, after the outer door (out of the house), or past the
        end of that day (the monitor checks again after the next activity).
        """
        plan = m.plan
        a = m.last_activity
        if a == float("-inf") or m.last_activity_what.startswith(Kind.DOOR.value):
            return float("inf")
        if plan.day_start >= plan.day_end:
            return now  # a day window across midnight: checked every tick
        tz = plan.timezone
        ordinal = m.local(a)[0]
        if a < clock.at_local(tz, ordinal, plan.day_start):
            return float("inf")  # not seen up that day; later days start with a new activity
        in_bed = m.last_activity_what == f"{Kind.BED.value}:in"
        due = m.activity_clock_start(now) + plan.inactivity_limit_min * (NAP_FACTOR if in_bed else 1) * 60
        if due >= clock.at_local(tz, ordinal, plan.day_end) or f"{m.resident_id}:inactivity:{int(a)}" in m.keys:
            return float("inf")
        return due

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
        if m.last_activity_what.startswith(Kind.DOOR.value):
            return  # out of the house: nothing moved inside since the door
        in_bed = m.last_activity_what == f"{Kind.BED.value}:in"
        limit_min = plan.inactivity_limit_min * (NAP_FACTOR if in_bed else 1)
        limit_s = limit_min * 60
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
            f"No movement at home since {since} ({minutes} minutes){' in bed' if in_bed else ''}, longer than "
            f"the {limit_min} minutes allowed.",
            f"Ingen rörelse i hemmet sedan kl. {since} ({minutes} minuter){' i sängen' if in_bed else ''}, "
            f"längre än tillåtna {limit_min} minuter.",
            Evidence(
                features={"minutes_without_movement": minutes, "limit_min": limit_min, "in_bed": int(in_bed)},
                score=round(idle / 60, 1),
                threshold=float(limit_min),
                window_start=clock.to_dt(m.last_activity),
                window_end=clock.to_dt(now),
                event_ids=[m.last_activity_id] if m.last_activity_id else [],
                contributing=[f"no movement for {minutes} minutes during the day"],
                data_quality=m.quality(now),
            ),
        )
