"""One local day of a resident's activity, accumulated in any order.

Everything here is a count or a set (commutative), so events that arrive out
of order within the allowed lateness land in the same place. The learned
models read a day when the watermark has passed its end.
"""

from __future__ import annotations

from array import array
from typing import Any

#: Bathroom visits are counted as distinct 15-minute slots with bathroom motion.
SLOT_S = 900
SLOTS_PER_DAY = 96
#: At most this many rooms are told apart per resident; more fall into the last.
MAX_ROOMS = 8


class Day:
    """Counts for one local calendar day: activity, per room and hour, bathroom slots."""

    __slots__ = ("activity", "bath_slots", "degraded", "midnight", "next_midnight", "ordinal", "room_hours")

    def __init__(self, ordinal: int, midnight: float, next_midnight: float) -> None:
        self.ordinal = ordinal
        self.midnight = midnight
        self.next_midnight = next_midnight
        self.activity = 0
        self.bath_slots = 0  # bit i set: bathroom motion in slot i (15 min)
        self.room_hours: dict[int, array[int]] = {}
        self.degraded = False  # the gateway was silent for part of the day

    def add_activity(self, t: float, room_index: int | None, bathroom: bool) -> None:
        """Count one activity event at epoch ``t`` in a room."""
        self.activity += 1
        offset = t - self.midnight
        if room_index is not None:
            hour = min(23, max(0, int(offset // 3600)))
            counts = self.room_hours.get(room_index)
            if counts is None:
                counts = self.room_hours[room_index] = array("I", bytes(96))
            counts[hour] += 1
        if bathroom:
            slot = min(SLOTS_PER_DAY - 1, max(0, int(offset // SLOT_S)))
            self.bath_slots |= 1 << slot

    def bathroom_visits(self, night_end_s: float, night_start_s: float) -> tuple[int, int]:
        """(day visits, night visits): slots with bathroom motion outside / inside the night hours."""
        day = night = 0
        bits = self.bath_slots
        i = 0
        while bits:
            if bits & 1:
                start = i * SLOT_S
                if start < night_end_s or start >= night_start_s:
                    night += 1
                else:
                    day += 1
            bits >>= 1
            i += 1
        return day, night

    def dump(self) -> list[Any]:
        return [
            self.ordinal,
            self.midnight,
            self.next_midnight,
            self.activity,
            self.bath_slots,
            int(self.degraded),
            {str(k): v.tolist() for k, v in self.room_hours.items()},
        ]

    @classmethod
    def load(cls, raw: list[Any]) -> Day:
        d = cls(int(raw[0]), float(raw[1]), float(raw[2]))
        d.activity = int(raw[3])
        d.bath_slots = int(raw[4])
        d.degraded = bool(raw[5])
        d.room_hours = {int(k): array("I", v) for k, v in raw[6].items()}
        return d
