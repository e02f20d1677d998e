"""Crafted events for one home: used by the tests, the benchmark and examples.

Not a simulator of behaviour (that is ``carechain.simulation``): it only
builds well-formed :class:`~carechain.events.Event` values with deterministic
ids, so a test reads as a little story of readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from carechain.events import NUMERIC_RANGES, Event, Kind, make_event_id


@dataclass
class Home:
    """One resident's home: makes events with increasing sequence numbers per device."""

    resident_id: str = "r-1"
    home_id: str = "h-1"
    gateway_id: str = "gw-1"
    seq: dict[str, int] = field(default_factory=dict)

    def event(
        self,
        kind: Kind | str,
        value: bool | float | int | str | None,
        ts: datetime,
        device: str | None = None,
        room: str | None = None,
        received_at: datetime | None = None,
    ) -> Event:
        """One event at ``ts``; the device defaults to one per kind and room."""
        kind = Kind(kind)
        device = device or f"{self.home_id}-{kind.value.split('.')[0]}-{room or 'home'}"
        if kind == Kind.GATEWAY_HEARTBEAT or kind == Kind.GATEWAY_STATUS:
            device = self.gateway_id
        n = self.seq[device] = self.seq.get(device, 0) + 1
        unit = NUMERIC_RANGES[kind][2] if kind in NUMERIC_RANGES else None
        return Event(
            event_id=make_event_id(device, n, ts),
            resident_id=self.resident_id,
            home_id=self.home_id,
            gateway_id=self.gateway_id,
            device_id=device,
            room=room,
            kind=kind.value,
            value=value,
            ts=ts,
            seq=n,
            received_at=received_at or ts,
            unit=unit,
        )

    def motion(self, ts: datetime, room: str = "kitchen") -> Event:
        return self.event(Kind.MOTION, True, ts, room=room)

    def heartbeat(self, ts: datetime) -> Event:
        return self.event(Kind.GATEWAY_HEARTBEAT, None, ts)

    def heartbeats(self, start: datetime, end: datetime, every_s: float = 15.0) -> list[Event]:
        """Gateway heartbeats from ``start`` up to ``end``."""
        out = []
        t = start
        while t < end:
            out.append(self.heartbeat(t))
            t += timedelta(seconds=every_s)
        return out
