"""The monitor's explicit codec: round trip, refusal of foreign or newer state, size at steady state."""

from __future__ import annotations

import random
import zlib
from datetime import timedelta

import pytest

from carechain.care_plan import CarePlan
from carechain.events import Event, Kind
from streams.monitor import CODEC_VERSION, ResidentMonitor
from streams.synthetic import Home
from tests.streams.conftest import local
from tests.streams.test_models import day_events

MAX_STATE_BYTES = 16 * 1024


def rich_history(days: int, seed: int = 7) -> list[Event]:
    """Weeks of a home with every kind of reading: motion in rooms, bathroom, vitals, doors, bed, robot, battery."""
    rng = random.Random(seed)
    home = Home()
    start = local(1, 0)
    evs: list[Event] = []
    for d in range(days):
        day = start + timedelta(days=d)
        evs += day_events(home, day, rng, activity=120)
        for h in range(0, 24, 2):
            t = day + timedelta(hours=h, minutes=7)
            evs += [
                home.event(Kind.HEART_RATE, round(rng.gauss(68, 3), 1), t, device="watch"),
                home.event(Kind.SPO2, round(min(100, rng.gauss(96, 1)), 1), t, device="watch"),
                home.event(Kind.TEMPERATURE, round(rng.gauss(36.7, 0.2), 2), t, device="thermo"),
            ]
        evs += [
            home.event(Kind.BED, "out", day + timedelta(hours=7), room="bedroom"),
            home.event(Kind.DOOR, "open", day + timedelta(hours=11), room="hall"),
            home.event(Kind.DOSE_DUE, "08:00", day + timedelta(hours=7), device="robot"),
            home.event(Kind.DOSE_TAKEN, "08:00", day + timedelta(hours=7, minutes=5), device="robot"),
            home.event(Kind.BATTERY, 80.0, day + timedelta(hours=12), device="pir-kitchen"),
            home.event(Kind.BED, "in", day + timedelta(hours=22), room="bedroom"),
        ]
    return sorted(evs, key=lambda e: e.ts)


def _plan() -> CarePlan:
    return CarePlan(resident_id="r-1", gateway_silence_s=2 * 3600)


def test_round_trip_keeps_everything() -> None:
    m = ResidentMonitor("r-1", "h-1", _plan())
    for e in rich_history(3):
        m.process(e)
    m.feedback  # noqa: B018 - the method exists; feedback state is part of the detectors
    raw = m.to_bytes()
    again = ResidentMonitor.from_bytes(raw, _plan())
    assert again.to_bytes() == raw
    assert again.watermark == m.watermark and again.open == m.open and again.keys == m.keys
    assert [e for _, _, e in again.buffer] == [e for _, _, e in sorted(m.buffer)]


def test_resuming_from_bytes_gives_the_same_alerts_as_running_through() -> None:
    evs = rich_history(24)
    # a fall and an out-of-bounds SpO2 late in the story, to have something to propose
    home = Home(seq={"x": 0})
    t = evs[-1].ts
    evs += [
        home.event(Kind.FALL, True, t - timedelta(minutes=1), room="hall"),
        home.event(Kind.SPO2, 80.0, t - timedelta(minutes=1)),
    ]
    evs.sort(key=lambda e: e.ts)
    plan = _plan()
    whole = ResidentMonitor("r-1", "h-1", plan)
    ids_whole = [c.candidate_id for e in evs for c in whole.process(e).candidates]
    split = len(evs) * 2 // 3
    first = ResidentMonitor("r-1", "h-1", plan)
    ids = [c.candidate_id for e in evs[:split] for c in first.process(e).candidates]
    second = ResidentMonitor.from_bytes(first.to_bytes(), plan)
    ids += [c.candidate_id for e in evs[split:] for c in second.process(e).candidates]
    assert ids == ids_whole
    assert any(":fall:" in i for i in ids)
    assert second.to_bytes() == whole.to_bytes()


def test_state_at_steady_state_is_at_most_16_kb() -> None:
    m = ResidentMonitor("r-1", "h-1", _plan())
    for e in rich_history(30):
        m.process(e)
    assert m.detectors["rhythm"].days >= 14  # type: ignore[attr-defined]  # warm: the profile is full
    raw = m.to_bytes()
    assert len(raw) <= MAX_STATE_BYTES, len(raw)


def test_refuses_foreign_and_newer_state() -> None:
    raw = ResidentMonitor("r-1", "h-1").to_bytes()
    with pytest.raises(ValueError, match="not a CareChain"):
        ResidentMonitor.from_bytes(b"\x80\x04" + raw[2:])  # a pickle header is not our state
    with pytest.raises(ValueError, match="version"):
        ResidentMonitor.from_bytes(raw[:2] + bytes([CODEC_VERSION + 1]) + raw[3:])
    body = zlib.decompress(raw[4:]) if raw[3] & 1 else raw[4:]
    assert body.startswith(b"[")  # JSON inside: inspectable, never executable


def test_replayed_offsets_are_recognised() -> None:
    m = ResidentMonitor("r-1", "h-1")
    assert m.seen_position("events/3", 10) is False
    assert m.seen_position("events/3", 10) is True
    assert m.seen_position("events/3", 9) is True
    assert m.seen_position("events/3", 11) is False
    assert ResidentMonitor.from_bytes(m.to_bytes()).seen_position("events/3", 11) is True
