"""Local time of a resident's home, cached, so rules can ask cheap questions of epochs.

Rules think in local time ("during the day", "by 08:00"), the monitor in UTC
epoch seconds. Converting with zoneinfo costs microseconds, so day boundaries
are cached per time zone and hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for a name (cached)."""
    return ZoneInfo(name)


@lru_cache(maxsize=4096)
def _day_of_hour(tz: str, hour_bucket: int) -> tuple[int, float, float]:
    local = datetime.fromtimestamp(hour_bucket * 3600, zone(tz))
    d = local.date()
    midnight = datetime.combine(d, time(0), zone(tz)).timestamp()
    nxt = datetime.combine(d + timedelta(days=1), time(0), zone(tz)).timestamp()
    return d.toordinal(), midnight, nxt


def local_day(tz: str, epoch: float) -> tuple[int, float, float]:
    """``(date ordinal, local midnight epoch, next local midnight epoch)`` of an instant."""
    ordinal, midnight, nxt = _day_of_hour(tz, int(epoch // 3600))
    # A zone with a non-whole-hour offset can put midnight inside the cached hour.
    if epoch < midnight:
        return _day_of_hour(tz, int(epoch // 3600) - 1)
    if epoch >= nxt:
        return _day_of_hour(tz, int(epoch // 3600) + 1)
    return ordinal, midnight, nxt


@lru_cache(maxsize=4096)
def at_local(tz: str, ordinal: int, t: time) -> float:
    """Epoch of local wall-clock time ``t`` on the day ``ordinal``."""
    return datetime.combine(date.fromordinal(ordinal), t, zone(tz)).timestamp()


def in_window(tz: str, epoch: float, start: time, end: time) -> bool:
    """Is the instant inside the daily local window [start, end) (which may cross midnight)?"""
    ordinal, _midnight, _ = local_day(tz, epoch)
    s = at_local(tz, ordinal, start)
    e = at_local(tz, ordinal, end)
    if start <= end:
        return s <= epoch < e
    return epoch >= s or epoch < e


def hour_of(tz: str, epoch: float) -> int:
    """Local hour of day (0-23)."""
    return datetime.fromtimestamp(epoch, zone(tz)).hour


def to_dt(epoch: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(epoch, UTC)


def local_hhmm(tz: str, epoch: float) -> str:
    """ "HH:MM" local, for sentences a nurse reads."""
    return datetime.fromtimestamp(epoch, zone(tz)).strftime("%H:%M")
