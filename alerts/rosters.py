"""On-call rosters, pure: who of a team is on duty at an instant, in the team's local time.

Days are weekdays, weekends or holidays; Swedish public holidays (the ``holidays`` package, with
the de-facto days midsommarafton, julafton and nyårsafton that home care staffs as holidays) use the
holiday roster. A shift whose end is not after its start runs past midnight and belongs to the day it
starts on, so the night shift of julafton is a holiday shift until the morning of juldagen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays


class DayType(StrEnum):
    WEEKDAY = "weekday"
    WEEKEND = "weekend"
    HOLIDAY = "holiday"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Shift:
    team_id: str
    user_id: str
    email: str | None
    day_type: DayType
    starts: time
    ends: time
    priority: int = 0

    @property
    def overnight(self) -> bool:
        return self.ends <= self.starts


@lru_cache(maxsize=64)
def _swedish(year: int) -> holidays.HolidayBase:
    return holidays.Sweden(years=year, categories=("public", "de_facto"), language="sv")


def holiday_name(d: date) -> str | None:
    """The Swedish name of a public (or de-facto) holiday, e.g. 'Midsommarafton', else None."""
    name = _swedish(d.year).get(d)
    return str(name) if name else None


def day_type(d: date) -> DayType:
    if holiday_name(d):
        return DayType.HOLIDAY
    return DayType.WEEKEND if d.weekday() >= 5 else DayType.WEEKDAY


def _covers(shift: Shift, local: datetime, holiday_as_weekend: bool = False) -> bool:
    t = local.time()
    today, yesterday = local.date(), local.date() - timedelta(days=1)

    def fits(d: date) -> bool:
        kind = day_type(d)
        if holiday_as_weekend and kind is DayType.HOLIDAY:
            kind = DayType.WEEKEND
        return shift.day_type is DayType.ANY or kind is shift.day_type

    if not shift.overnight:
        return fits(today) and shift.starts <= t < shift.ends
    # Overnight: the evening part belongs to today, the morning part to yesterday's shift.
    return (t >= shift.starts and fits(today)) or (t < shift.ends and fits(yesterday))


def on_call(shifts: Iterable[Shift], at: datetime, tz: str = "Europe/Stockholm") -> list[Shift]:
    """The shifts covering instant ``at`` (aware), best first. On a holiday the holiday roster applies;
    a team without one falls back to its weekend roster (never to nobody because of a holiday)."""
    local = at.astimezone(ZoneInfo(tz))
    shifts = list(shifts)
    covering = [s for s in shifts if _covers(s, local)]
    if not covering:
        covering = [s for s in shifts if _covers(s, local, holiday_as_weekend=True)]
    specific = [s for s in covering if s.day_type is not DayType.ANY]
    chosen = specific or covering
    return sorted(chosen, key=lambda s: (-s.priority, s.user_id))
