"""Gateway silent: heartbeat supervision of the home's gateway (a technical alert).

Gateways heartbeat every 15 s; with the plan's 45 s silence limit and a tick
every 5 s, a dead gateway is noticed within 60 s of its last word. One
incident per silence of a gateway (not one per sensor); while it lasts the
home's inactivity, not-up and dose rules stay quiet and device-silent alerts
for its sensors are not raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carechain.candidates import Evidence, Family, Severity
from streams import clock
from streams.detector import Detector

if TYPE_CHECKING:
    from streams.monitor import ResidentMonitor


class GatewaySilent(Detector):
    name = "gateway_silent"
    version = "1.0"
    family = Family.TECHNICAL
    purpose = "Alert when a home's gateway stops sending heartbeats or reports itself offline."
    __slots__ = ()

    def on_tick(self, m: ResidentMonitor, now: float) -> None:
        for gw, last in m.gateways.items():
            prefix = f"{m.resident_id}:gateway_silent:{gw}:"
            open_key = next((k for k in m.open_keys(self.name) if k.startswith(prefix)), None)
            if not m.is_gateway_silent(gw, now):
                if open_key is not None:
                    m.clear(
                        open_key,
                        now,
                        f"The home's gateway is sending again (heard at {m.hhmm(last)}).",
                        f"Hemmets gateway skickar igen (hörd kl. {m.hhmm(last)}).",
                    )
                continue
            if open_key is not None:
                continue
            seconds = int(now - last)
            offline = m.gateway_offline.get(gw, float("-inf")) >= last
            m.fire(
                self,
                "gateway_silent",
                f"{prefix}{int(last)}",
                Severity.HIGH,
                last,
                now,
                f"The home's gateway has been silent since {m.hhmm(last)}; the home is not monitored until it returns.",
                f"Hemmets gateway har varit tyst sedan kl. {m.hhmm(last)}; "
                "hemmet övervakas inte förrän den är tillbaka.",
                Evidence(
                    features={"gateway": gw, "silent_s": seconds, "reported_offline": int(offline)},
                    score=float(seconds),
                    threshold=float(m.plan.gateway_silence_s),
                    window_start=clock.to_dt(last),
                    window_end=clock.to_dt(now),
                    contributing=["the gateway said it went offline" if offline else f"no heartbeat for {seconds} s"],
                    data_quality=[f"gateway {gw} offline"],
                ),
            )

    def next_due(self, m: ResidentMonitor, now: float) -> float:
        """When :meth:`on_tick` may next act: a gateway's silence limit (an open incident: every tick)."""
        if m.open_keys(self.name):
            return now  # it clears on the first tick after the gateway is heard again
        due = float("inf")
        silence = m.plan.gateway_silence_s
        for gw, last in m.gateways.items():
            if m.gateway_offline.get(gw, float("-inf")) >= last:
                return now
            due = min(due, last + silence)
        return due
