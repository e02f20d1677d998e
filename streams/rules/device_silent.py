"""Device silent: one sensor stopped reporting while its gateway still talks.

A motion sensor in a spare room can rightly be quiet for hours, so the limit
is the care plan's ``device_silence_min`` or 1.5 times the longest silence
this sensor had in the last one to two weeks, whichever is longer; a sensor
is judged only after two days of history, and until it has a week of history
(when its longest normal silence, a night or an outing, is not yet known) the
limit is at least 12 hours, so a dead sensor is still reported within half a
day. Not raised while the gateway itself is silent (one incident per dead hub,
not per sensor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carechain.candidates import Evidence, Family, Severity
from streams import clock
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor

WARM_UP_S = 2 * 86400
#: Before a sensor has a week of history, its silence limit is at least this long.
LEARNING_S = 7 * 86400
LEARNING_FLOOR_S = 12 * 3600


class DeviceSilent(Detector):
    name = "device_silent"
    version = "1.1"
    family = Family.TECHNICAL
    purpose = "Alert when one sensor stops reporting for much longer than it usually does."
    warm_up = "2 days of the sensor's history"
    __slots__ = ()

    def on_tick(self, m: ResidentMonitor, now: float) -> None:
        open_keys = m.open_keys(self.name)  # asked again after every change (10 sensors, usually none open)
        floor = m.plan.device_silence_min * 60
        for device_id, dev in m.devices.items():
            open_key = None
            if open_keys:
                prefix = f"{m.resident_id}:device_silent:{device_id}:"
                open_key = next((k for k in open_keys if k.startswith(prefix)), None)
            gap = dev.max_gap if dev.max_gap > dev.prev_max_gap else dev.prev_max_gap
            limit = floor if floor > 1.5 * gap else 1.5 * gap
            if dev.last - dev.since < LEARNING_S:
                limit = max(limit, LEARNING_FLOOR_S)
            silent = now - dev.last
            if silent <= limit:
                if open_key is not None:
                    m.clear(
                        open_key,
                        now,
                        f"Sensor {device_id} is reporting again.",
                        f"Sensorn {device_id} rapporterar igen.",
                    )
                    open_keys = m.open_keys(self.name)
                continue
            if open_key is not None or dev.last - dev.since < WARM_UP_S or m.is_gateway_silent(dev.gateway, now):
                continue
            hours = round(silent / 3600, 1)
            m.fire(
                self,
                "device_silent",
                f"{m.resident_id}:device_silent:{device_id}:{int(dev.last)}",
                Severity.LOW,
                dev.last,
                now,
                f"Sensor {device_id} has sent nothing for {hours} hours, much longer than usual.",
                f"Sensorn {device_id} har inte skickat något på {hours} timmar, mycket längre än vanligt.",
                Evidence(
                    features={
                        "device": device_id,
                        "silent_h": hours,
                        "usual_max_gap_h": round(dev.usual_max_gap() / 3600, 1),
                    },
                    score=round(silent / 60),
                    threshold=round(limit / 60),
                    window_start=clock.to_dt(dev.last),
                    window_end=clock.to_dt(now),
                    contributing=[f"silent for {hours} h"],
                    data_quality=[f"sensor {device_id} silent"],
                ),
            )
            open_keys = m.open_keys(self.name)

    def next_due(self, m: ResidentMonitor, now: float) -> float:
        """When :meth:`on_tick` may next act: the first sensor past its limit (an open incident: every tick).

        A sensor already past its limit that cannot be reported (warming up, or its
        incident already proposed) waits until it is heard again (the monitor then
        checks within the plan's silence limit).
        """
        if m.open_keys(self.name):
            return now
        due = float("inf")
        floor = m.plan.device_silence_min * 60
        for device_id, dev in m.devices.items():
            gap = dev.max_gap if dev.max_gap > dev.prev_max_gap else dev.prev_max_gap
            limit = floor if floor > 1.5 * gap else 1.5 * gap
            if dev.last - dev.since < LEARNING_S:
                limit = max(limit, LEARNING_FLOOR_S)
            at = dev.last + limit
            if at <= now:
                if (
                    dev.last - dev.since < WARM_UP_S
                    or f"{m.resident_id}:device_silent:{device_id}:{int(dev.last)}" in m.keys
                ):
                    continue
                return now  # due (the gateway may be silent: checked again every tick)
            due = min(due, at)
        return due
