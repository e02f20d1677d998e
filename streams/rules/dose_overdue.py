"""Dose overdue: a scheduled dose not taken within its grace period (a timer).

Only for residents with a medication robot (a medication event seen in the
last week). Shares its incident key with ``dose_missed`` (the robot's own
report), so a dose is one incident whichever notices first. Taking the dose
later clears it.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from carechain.candidates import Evidence, Family, Severity
from carechain.events import MEDICATION_KINDS, Event, Kind
from streams import clock
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

ROBOT_FORGOTTEN_S = 7 * 86400
#: A dose not reported within this long after its deadline is left to the nurse's round.
GIVE_UP_S = 12 * 3600


def dose_key(m: ResidentMonitor, ordinal: int, slot: str) -> str:
    """One incident per resident, day and dose slot."""
    return f"{m.resident_id}:dose_missed:{date.fromordinal(ordinal).isoformat()}:{slot}"


def clear_taken(m: ResidentMonitor, ev: Event, t: float) -> None:
    """A dose taken clears its incident, whichever detector opened it."""
    if not isinstance(ev.value, str):
        return
    m.clear(
        dose_key(m, m.local(t)[0], ev.value),
        t,
        f"The {ev.value} dose was taken at {m.hhmm(t)}.",
        f"Dosen kl. {ev.value} togs kl. {m.hhmm(t)}.",
        Evidence(event_ids=[ev.event_id]),
    )


class DoseOverdue(Detector):
    name = "dose_overdue"
    version = "1.0"
    family = Family.WELFARE
    purpose = "Alert when a scheduled medication dose has not been taken within its grace period."
    kinds = frozenset(k.value for k in MEDICATION_KINDS)
    __slots__ = ("robot_seen",)

    def __init__(self) -> None:
        super().__init__()
        self.robot_seen = float("-inf")

    def on_event(self, m: ResidentMonitor, ev: Event, t: float) -> None:
        if t > self.robot_seen:
            self.robot_seen = t
            m.recheck()  # a robot (again): its doses have deadlines
        if ev.kind == Kind.DOSE_TAKEN:
            clear_taken(m, ev, t)

    def on_tick(self, m: ResidentMonitor, now: float) -> None:
        if now - self.robot_seen > ROBOT_FORGOTTEN_S or m.home_blind(now):
            return
        tz = m.plan.timezone
        ordinal = m.local(now)[0]
        for dose in m.plan.doses:
            due = clock.at_local(tz, ordinal, dose.at)
            deadline = due + dose.grace_min * 60
            if not deadline <= now < deadline + GIVE_UP_S or m.since > due:
                continue
            if f"{ordinal}:{dose.slot}" in m.doses_taken:
                continue
            m.fire(
                self,
                "dose_missed",
                dose_key(m, ordinal, dose.slot),
                Severity.MEDIUM,
                due,
                now,
                f"The {dose.slot} dose has not been taken within its {dose.grace_min}-minute grace period.",
                f"Dosen kl. {dose.slot} har inte tagits inom {dose.grace_min} minuter.",
                Evidence(
                    features={"slot": dose.slot, "grace_min": dose.grace_min},
                    score=round((now - due) / 60, 1),
                    threshold=float(dose.grace_min),
                    window_start=clock.to_dt(due),
                    window_end=clock.to_dt(now),
                    contributing=["no dose-taken report from the medication robot"],
                    data_quality=m.quality(now),
                ),
            )

    def next_due(self, m: ResidentMonitor, now: float) -> float:
        """When :meth:`on_tick` may next act: the next dose deadline today or tomorrow, or now in a window."""
        if self.robot_seen == float("-inf"):
            return float("inf")  # no robot: a medication event rechecks
        tz = m.plan.timezone
        ordinal = m.local(now)[0]
        due = float("inf")
        for day in (ordinal, ordinal + 1):
            for dose in m.plan.doses:
                start = clock.at_local(tz, day, dose.at)
                deadline = start + dose.grace_min * 60
                if now < deadline:
                    due = min(due, deadline)
                elif (
                    day == ordinal
                    and now < deadline + GIVE_UP_S
                    and m.since <= start
                    and f"{day}:{dose.slot}" not in m.doses_taken
                    and dose_key(m, day, dose.slot) not in m.keys
                ):
                    return now  # overdue and not proposed yet (the home blind or the rule paused): every tick
        return due if due <= self.robot_seen + ROBOT_FORGOTTEN_S else float("inf")

    def dump_state(self) -> list[Any]:
        return [None if self.robot_seen == float("-inf") else self.robot_seen]

    def load_state(self, raw: list[Any]) -> None:
        self.robot_seen = float("-inf") if raw[0] is None else float(raw[0])
