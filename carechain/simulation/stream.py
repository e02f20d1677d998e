"""A home's messages over an open-ended run, generated an hour at a time, and demo incidents.

Used by the live publisher and the demo: the same pure generator as
evaluation, sliced so a run of days never holds more than an hour in memory.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from carechain.simulation.behaviour import resident_readings
from carechain.simulation.gateway import GatewayMessage, gateway_messages, outages
from carechain.simulation.homes import HomeConfig
from carechain.simulation.scenarios import Incident, IncidentType, plan_incident

CHUNK = timedelta(hours=1)


def home_stream(
    seed: int,
    home: HomeConfig,
    start: datetime,
    end: datetime | None = None,
    incidents: Sequence[Incident] = (),
    hr_interval_s: float = 300.0,
) -> Iterator[GatewayMessage]:
    """The gateway's messages from ``start`` until ``end`` (None: for ever), in time order."""
    mine = [i for i in incidents if i.resident_id == home.resident_id]
    down = outages(mine)
    t = start
    first = True
    while end is None or t < end:
        hi = t + CHUNK
        for a, b, _ in down:
            if a < hi.timestamp() <= b:  # never cut an outage: its buffered readings would be lost
                hi = datetime.fromtimestamp(b + 1.0, UTC)
        if end is not None:
            hi = min(hi, end)
        readings = resident_readings(seed, home, t, hi, mine, hr_interval_s)
        yield from gateway_messages(home, readings, t, hi, mine, announce=first)
        first = False
        t = hi


def merged(streams: Sequence[Iterator[GatewayMessage]]) -> Iterator[GatewayMessage]:
    """Many homes' messages as one stream in time order."""
    return heapq.merge(*streams, key=lambda m: m.at)


def demo_incidents(
    seed: int, homes: Sequence[HomeConfig], start: datetime, fall_after_s: float = 20.0
) -> list[Incident]:
    """A few incidents spread over the demo's first hours, the first a fall ``fall_after_s`` in.

    Home 1 falls; home 2's gateway drops out after 2 minutes; others get a robot
    fault, a long inactivity, a missed dose and a night of wandering, so the
    nurse's inbox fills within the demo's first minutes and hours.
    """
    out: list[Incident] = []
    if not homes:
        return out
    rng = random.Random(f"demo|{seed}")
    fall = Incident(
        IncidentType.FALL,
        homes[0].resident_id,
        start + timedelta(seconds=fall_after_s),
        timedelta(minutes=10),
        timedelta(minutes=30),
        {"night": False},
    )
    out.append(fall)
    if len(homes) > 1:
        out.append(
            Incident(
                IncidentType.GATEWAY_OFFLINE,
                homes[1].resident_id,
                start + timedelta(minutes=2),
                timedelta(minutes=10),
                timedelta(minutes=10),
                {"backfill": True},
            )
        )
    if len(homes) > 2:
        out.append(
            Incident(
                IncidentType.ROBOT_FAULT,
                homes[2].resident_id,
                start + timedelta(minutes=1),
                timedelta(minutes=10),
                timedelta(0),
                {"code": "E_JAM"},
            )
        )
    if len(homes) > 3:
        out.append(
            Incident(
                IncidentType.INACTIVITY,
                homes[3].resident_id,
                start + timedelta(minutes=3),
                timedelta(hours=3),
                timedelta(hours=3),
            )
        )
    if len(homes) > 4:
        # The next dose due at least five minutes from the start: the inbox shows it the same day.
        home = homes[4]
        tz = ZoneInfo(home.plan.timezone)
        local = start.astimezone(tz)
        slots = sorted(
            datetime.combine(local.date() + timedelta(days=d), dose.at, tz) + timedelta(minutes=dose.grace_min)
            for d in (0, 1)
            for dose in home.plan.doses
        )
        end_of_grace = next(t for t in slots if t - timedelta(minutes=35) > local + timedelta(minutes=5))
        slot = next(
            d.slot for d in home.plan.doses if (end_of_grace - timedelta(minutes=d.grace_min)).time() == d.at
        )
        out.append(
            Incident(
                IncidentType.MISSED_DOSE,
                home.resident_id,
                end_of_grace.astimezone(UTC),
                timedelta(minutes=30),
                timedelta(minutes=30),
                {"slot": slot},
            )
        )
    if len(homes) > 5:
        tomorrow = start.astimezone(ZoneInfo(homes[5].plan.timezone)).date() + timedelta(days=1)
        out.append(plan_incident(IncidentType.NIGHT_WANDERING, homes[5], tomorrow, rng))
    return out


def utc_now() -> datetime:
    return datetime.now(UTC)
