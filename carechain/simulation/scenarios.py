"""Incidents with ground truth, and the scenario sets evaluation runs.

An :class:`Incident` says what happens to which resident when; the generator
(``behaviour.py``, ``gateway.py``) makes it happen in the readings, and
evaluation compares the monitor's alerts with it. ``start`` is the moment
detection delay is measured from (see :data:`START_MEANS`). Pure.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from carechain.simulation.homes import HomeConfig, home_config


class IncidentType(StrEnum):
    FALL = "fall"
    INACTIVITY = "inactivity"
    NIGHT_WANDERING = "night_wandering"
    MISSED_DOSE = "missed_dose"
    ROBOT_FAULT = "robot_fault"
    INFECTION = "infection"
    DECLINE = "decline"
    GATEWAY_OFFLINE = "gateway_offline"
    DEAD_BATTERY = "dead_battery"


#: What ``Incident.start`` is, per type: delays are measured from it.
START_MEANS: dict[IncidentType, str] = {
    IncidentType.FALL: "the fall (the pendant's reading); the resident then lies still",
    IncidentType.INACTIVITY: "the last movement before the resident stops moving (daytime, at home)",
    IncidentType.NIGHT_WANDERING: "the outer door opening at night after leaving the bed",
    IncidentType.MISSED_DOSE: "the end of the dose's grace period (due time + grace)",
    IncidentType.ROBOT_FAULT: "the robot's fault report",
    IncidentType.INFECTION: (
        "onset (05:00, before waking): from here bathroom visits (most at night), restlessness at night and, "
        "in some, temperature and heart rate rise over 2 days; activity falls"
    ),
    IncidentType.DECLINE: "onset: from here activity drifts down over weeks",
    IncidentType.GATEWAY_OFFLINE: "the gateway's last message (silence begins)",
    IncidentType.DEAD_BATTERY: "the device's battery reading first falls below the care plan's low level",
}


@dataclass(frozen=True, slots=True)
class Incident:
    """Ground truth: one incident of one resident."""

    type: IncidentType
    resident_id: str
    start: datetime  # UTC; see START_MEANS
    window: timedelta  # an alert counts as a detection when it comes within start + window
    duration: timedelta = timedelta(0)  # how long the condition lasts in the readings
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "resident_id": self.resident_id,
            "start": self.start.isoformat(),
            "window_s": self.window.total_seconds(),
            "duration_s": self.duration.total_seconds(),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Scenario:
    """One home over a time range with the incidents planned in it (none: a healthy resident)."""

    name: str
    seed: int
    home: HomeConfig
    start: datetime
    end: datetime
    incidents: tuple[Incident, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.incidents


def local_time(home: HomeConfig, day: date, minutes: float) -> datetime:
    """UTC instant of ``minutes`` after local midnight of ``day`` in the resident's time zone."""
    tz = ZoneInfo(home.plan.timezone)
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC) + timedelta(minutes=minutes)


def plan_incident(kind: IncidentType, home: HomeConfig, day: date, rng: random.Random) -> Incident:
    """Place an incident of ``kind`` on ``day`` at a realistic time for this resident."""
    rid = home.resident_id
    if kind is IncidentType.FALL:
        night = rng.random() < 0.3
        minutes = rng.uniform(60, 240) if night else rng.uniform(10.5 * 60, 16 * 60)
        lie = timedelta(minutes=rng.uniform(20, 90))
        return Incident(kind, rid, local_time(home, day, minutes), timedelta(minutes=10), lie, {"night": night})
    if kind is IncidentType.INACTIVITY:
        start = local_time(home, day, rng.uniform(10 * 60, 13 * 60))
        dur = timedelta(minutes=home.plan.inactivity_limit_min + rng.uniform(45, 120))
        return Incident(kind, rid, start, dur, dur)
    if kind is IncidentType.NIGHT_WANDERING:
        start = local_time(home, day, rng.uniform(60, 240))
        away = timedelta(minutes=rng.uniform(10, 40))
        return Incident(kind, rid, start, timedelta(minutes=10), away)
    if kind is IncidentType.MISSED_DOSE:
        dose = rng.choice(home.plan.doses)
        due = local_time(home, day, dose.at.hour * 60 + dose.at.minute)
        start = due + timedelta(minutes=dose.grace_min)
        return Incident(kind, rid, start, timedelta(minutes=30), timedelta(minutes=dose.grace_min), {"slot": dose.slot})
    if kind is IncidentType.ROBOT_FAULT:
        start = local_time(home, day, rng.uniform(9 * 60, 19 * 60))
        code = rng.choice(["E_JAM", "E_EMPTY_CUP"])
        return Incident(kind, rid, start, timedelta(minutes=10), timedelta(0), {"code": code})
    if kind is IncidentType.INFECTION:
        # The day's changed habits begin when the resident gets up (never before 05:00).
        start = local_time(home, day, 5 * 60)
        return Incident(kind, rid, start, timedelta(days=3), timedelta(days=7), infection_signs(rng))
    if kind is IncidentType.DECLINE:
        start = local_time(home, day, 0)
        return Incident(kind, rid, start, timedelta(days=14), timedelta(days=42))
    if kind is IncidentType.GATEWAY_OFFLINE:
        start = local_time(home, day, rng.uniform(0, 22 * 60))
        dur = timedelta(minutes=rng.uniform(5, 90))
        return Incident(kind, rid, start, dur, dur, {"backfill": rng.random() < 0.5})
    if kind is IncidentType.DEAD_BATTERY:
        dev = rng.choice([d for d in home.layout.devices if d.battery and d.device_kind != "pendant"])
        start = local_time(home, day, rng.uniform(0, 24 * 60))
        return Incident(kind, rid, start, timedelta(hours=3), timedelta(days=1), {"device_id": dev.device_id})
    raise ValueError(f"unknown incident type {kind}")


#: Share of urinary infections in older people that come with a raised temperature: fever is
#: often blunted or absent at this age (a third to a half of cases without it).
FEVER_SHARE = 0.6


def infection_signs(rng: random.Random) -> dict[str, Any]:
    """How strongly one urinary infection shows, at its full strength (reached on the second day).

    Always: more bathroom visits, most at night (x3.5), and by day (x1.8). Varies per
    infection: a raised temperature and heart rate (with fever, +0.4..1.0 C and +5..12 bpm;
    without, at most +0.15 C and +4 bpm), restless nights (turning over, getting up without
    going to the bathroom), and less activity by day (slower, fewer outings).
    """
    fever = rng.random() < FEVER_SHARE
    return {
        "night_x": 3.5,
        "day_x": 1.8,
        "fever": fever,
        "temp_c": round(rng.uniform(0.4, 1.0) if fever else rng.uniform(0.0, 0.15), 2),
        "hr_bpm": round(rng.uniform(5.0, 12.0) if fever else rng.uniform(0.0, 4.0), 1),
        "restless": round(rng.uniform(0.3, 1.0), 2),
        "slower": round(rng.uniform(0.1, 0.35), 2),
    }


#: Ordinary life before an incident's day: the rules need some history, the learned
#: detectors a baseline (bathroom visits warm up in 7 days, slow decline in 21).
WARMUP: dict[IncidentType, timedelta] = {
    IncidentType.FALL: timedelta(hours=6),
    IncidentType.INACTIVITY: timedelta(hours=6),
    IncidentType.NIGHT_WANDERING: timedelta(hours=6),
    IncidentType.MISSED_DOSE: timedelta(hours=6),
    IncidentType.ROBOT_FAULT: timedelta(hours=6),
    IncidentType.GATEWAY_OFFLINE: timedelta(hours=6),
    IncidentType.DEAD_BATTERY: timedelta(hours=6),
    IncidentType.INFECTION: timedelta(days=10),
    IncidentType.DECLINE: timedelta(days=24),
}
EPOCH = date(2026, 9, 7)  # a Monday; scenarios start here unless told otherwise


def incident_scenario(
    kind: IncidentType, n: int, seed: int, first_home: int = 1, epoch: date = EPOCH, warmup: timedelta | None = None
) -> list[Scenario]:
    """``n`` homes, each with one incident of ``kind`` after ordinary days (``warmup``)."""
    out: list[Scenario] = []
    warm = WARMUP[kind] if warmup is None else warmup
    for i in range(n):
        index = first_home + i
        home = home_config(seed, index)
        rng = random.Random(f"incident|{seed}|{kind}|{index}")
        lead = math.ceil(warm / timedelta(days=1))
        day = epoch + timedelta(days=lead + (rng.randrange(0, 3) if lead > 1 else 0))
        incident = plan_incident(kind, home, day, rng)
        start = local_time(home, day, 0) - warm
        # To the end of the incident's day, or an hour past its detection window when that is later.
        end = max(local_time(home, day + timedelta(days=1), 0), incident.start + incident.window + timedelta(hours=1))
        out.append(Scenario(f"{kind.value}-{index:04d}", seed, home, start, end, (incident,)))
    return out


def healthy_scenario(n: int, days: int, seed: int, first_home: int = 1, epoch: date = EPOCH) -> list[Scenario]:
    """``n`` homes of healthy residents over ``days`` days: any alert is a false alert."""
    out = []
    for i in range(n):
        home = home_config(seed, first_home + i)
        out.append(
            Scenario(
                f"healthy-{first_home + i:04d}",
                seed,
                home,
                local_time(home, epoch, 0),
                local_time(home, epoch + timedelta(days=days), 0),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class ScenarioSet:
    """A named collection of scenarios (the quick CI set or the full set)."""

    name: str
    scenarios: tuple[Scenario, ...]


@dataclass(frozen=True, slots=True)
class SetSpec:
    """How many incidents of each type, how many healthy residents for how long."""

    incidents: dict[IncidentType, int]
    healthy: int
    healthy_days: int
    warmup: dict[IncidentType, timedelta] = field(default_factory=dict)  # overrides of WARMUP


#: The quick set runs in CI in under a minute: three infections with the shortest
#: baseline the bathroom model accepts (7 days), no slow decline (each needs ~40 days).
SETS: dict[str, SetSpec] = {
    "quick": SetSpec(
        {
            IncidentType.FALL: 2,
            IncidentType.INACTIVITY: 2,
            IncidentType.NIGHT_WANDERING: 2,
            IncidentType.MISSED_DOSE: 2,
            IncidentType.ROBOT_FAULT: 1,
            IncidentType.GATEWAY_OFFLINE: 2,
            IncidentType.DEAD_BATTERY: 1,
            IncidentType.INFECTION: 3,
        },
        healthy=2,
        healthy_days=4,
        warmup={IncidentType.INFECTION: timedelta(days=7)},
    ),
    "full": SetSpec(
        {
            IncidentType.FALL: 30,
            IncidentType.INACTIVITY: 30,
            IncidentType.NIGHT_WANDERING: 30,
            IncidentType.MISSED_DOSE: 30,
            IncidentType.ROBOT_FAULT: 10,
            IncidentType.GATEWAY_OFFLINE: 30,
            IncidentType.DEAD_BATTERY: 10,
            IncidentType.INFECTION: 20,
            IncidentType.DECLINE: 10,
        },
        healthy=20,
        healthy_days=14,
    ),
}


def scenario_set(name: str, seed: int = 1) -> ScenarioSet:
    """The named scenario set; each scenario has its own home, so residents never overlap."""
    spec = SETS[name]
    scenarios: list[Scenario] = []
    next_home = 1
    for kind, n in spec.incidents.items():
        scenarios += incident_scenario(kind, n, seed, first_home=next_home, warmup=spec.warmup.get(kind))
        next_home += n
    scenarios += healthy_scenario(spec.healthy, spec.healthy_days, seed, first_home=next_home)
    return ScenarioSet(name, tuple(scenarios))
