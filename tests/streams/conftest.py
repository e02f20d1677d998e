"""Helpers for the stream tests: a home, a clock in Stockholm time, and a driver that ticks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from carechain.candidates import AlertCandidate
from carechain.care_plan import CarePlan
from carechain.events import Event
from streams.monitor import MonitorOutput, ResidentMonitor
from streams.synthetic import Home

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def local(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    """A Stockholm wall-clock time in November 2026, as UTC."""
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=STOCKHOLM).astimezone(UTC)


class Driver:
    """Feeds a monitor events in time order with gateway heartbeats and a tick every 5 s, like the worker."""

    def __init__(self, monitor: ResidentMonitor, home: Home, heartbeats: bool = True) -> None:
        self.m = monitor
        self.home = home
        self.heartbeats = heartbeats
        self.now: datetime | None = None
        self.out = MonitorOutput()

    def run(self, until: datetime, events: Iterable[Event] = (), start: datetime | None = None) -> list[AlertCandidate]:
        """Advance to ``until``; returns the candidates produced on the way."""
        pending = sorted(events, key=lambda e: e.ts)
        now = start or self.now or (pending[0].ts if pending else until)
        before = len(self.out.candidates)
        i = 0
        while now <= until:
            while i < len(pending) and pending[i].ts <= now:
                self.out.extend(self.m.process(pending[i]))
                i += 1
            if self.heartbeats and int(now.timestamp()) % 15 == 0:
                self.out.extend(self.m.process(self.home.heartbeat(now)))
            self.out.extend(self.m.tick(now))
            now += timedelta(seconds=5)
        self.now = now
        return self.out.candidates[before:]


@pytest.fixture
def home() -> Home:
    return Home()


@pytest.fixture
def monitor() -> ResidentMonitor:
    return ResidentMonitor("r-1", "h-1", CarePlan(resident_id="r-1"))


@pytest.fixture
def driver(monitor: ResidentMonitor, home: Home) -> Driver:
    return Driver(monitor, home)


def kinds(cands: Iterable[AlertCandidate]) -> list[tuple[str, str]]:
    return [(c.kind, c.state.value) for c in cands]
