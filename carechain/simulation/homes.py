"""Homes as the simulator (and the demo seed) lays them out, and each resident's habits.

One resident per home; one gateway per home; the sensors every home has. The
ids are the single source for the demo data: ``carechain.db.seed`` and the
simulator derive them from :func:`home_layout`, so every simulated reading
belongs to a registered device. Pure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from carechain.care_plan import CarePlan

#: Rooms every simulated home has.
ROOMS = ("bedroom", "bathroom", "kitchen", "living", "hall")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One installed device: what it is, where it is, whether it runs on a battery."""

    device_id: str
    device_kind: str  # motion, door, bed, pendant, wristband, robot, gateway
    room: str | None
    battery: bool


@dataclass(frozen=True, slots=True)
class HomeLayout:
    """The ids of one home: its resident (pseudonymous), its gateway and its devices."""

    index: int
    home_id: str
    resident_id: str
    gateway_id: str
    devices: tuple[DeviceSpec, ...]

    def device(self, device_kind: str, room: str | None = None) -> str:
        """The id of the home's device of this kind (and room, for motion sensors)."""
        for d in self.devices:
            if d.device_kind == device_kind and (room is None or d.room == room):
                return d.device_id
        raise KeyError(f"no {device_kind} device in {room or 'the home'}")

    def motion(self, room: str) -> str:
        return self.device("motion", room)


def home_layout(index: int) -> HomeLayout:
    """The layout of demo home number ``index`` (1-based)."""
    if index < 1:
        raise ValueError("home index starts at 1")
    gw = f"gw-{index:04d}"
    devices = [DeviceSpec(gw, "gateway", "hall", False)]
    devices += [DeviceSpec(f"{gw}-motion-{room}", "motion", room, True) for room in ROOMS]
    devices += [
        DeviceSpec(f"{gw}-door-front", "door", "hall", True),
        DeviceSpec(f"{gw}-bed", "bed", "bedroom", True),
        DeviceSpec(f"{gw}-pendant", "pendant", None, True),  # fall detector and alarm button
        DeviceSpec(f"{gw}-wristband", "wristband", None, True),  # heart rate, SpO2, temperature
        DeviceSpec(f"{gw}-robot", "robot", "kitchen", False),  # medication robot, mains powered
    ]
    return HomeLayout(index, f"home-{index:04d}", f"res-{index:04d}", gw, tuple(devices))


@dataclass(frozen=True, slots=True)
class ResidentProfile:
    """A resident's habits: the means around which each simulated day varies."""

    wake_min: float  # minutes after local midnight
    bed_min: float
    night_bathroom_per_night: float
    day_bathroom_per_day: float
    outing_probability: float
    care_visits: tuple[float, ...]  # minutes after midnight of the home-care visits
    motion_interval_s: float  # mean time between motion triggers while active in a room
    hr_base: float
    spo2_base: float
    temp_base: float
    dose_delay_mean_min: float  # how long after the robot's call the dose is usually taken
    battery_start: dict[str, float] = field(default_factory=dict)  # device id -> % at the epoch
    battery_drain_per_day: dict[str, float] = field(default_factory=dict)
    heartbeat_phase_s: float = 0.0


def resident_profile(seed: int, layout: HomeLayout) -> ResidentProfile:
    """Draw a resident's habits, deterministically from the seed and the home."""
    rng = random.Random(f"profile|{seed}|{layout.home_id}")
    visits: list[float] = []
    n_visits = rng.choice((0, 1, 1, 2, 2, 3))
    for slot in (9 * 60, 19 * 60, 13 * 60)[:n_visits]:
        visits.append(slot + rng.uniform(-30, 30))
    batteries = {d.device_id: rng.uniform(45.0, 100.0) for d in layout.devices if d.battery}
    drain = {d: rng.uniform(0.05, 0.4) for d in batteries}
    return ResidentProfile(
        wake_min=rng.uniform(6 * 60, 7 * 60 + 15),
        bed_min=rng.uniform(21 * 60 + 15, 22 * 60 + 45),
        night_bathroom_per_night=rng.uniform(0.4, 1.8),
        day_bathroom_per_day=rng.uniform(4.0, 7.0),
        outing_probability=rng.uniform(0.25, 0.75),
        care_visits=tuple(sorted(visits)),
        motion_interval_s=rng.uniform(60.0, 150.0),
        hr_base=rng.uniform(60.0, 78.0),
        spo2_base=rng.uniform(94.5, 97.5),
        temp_base=rng.uniform(36.3, 36.8),
        dose_delay_mean_min=rng.uniform(2.0, 8.0),
        battery_start=batteries,
        battery_drain_per_day=drain,
        heartbeat_phase_s=rng.uniform(0.0, 15.0),
    )


@dataclass(frozen=True, slots=True)
class HomeConfig:
    """Everything the generator needs about one home: layout, habits and care plan."""

    layout: HomeLayout
    profile: ResidentProfile
    plan: CarePlan

    @property
    def resident_id(self) -> str:
        return self.layout.resident_id


def home_config(seed: int, index: int) -> HomeConfig:
    """Home ``index`` with the resident's habits drawn from ``seed`` and the default care plan."""
    layout = home_layout(index)
    return HomeConfig(layout, resident_profile(seed, layout), CarePlan(layout.resident_id))
