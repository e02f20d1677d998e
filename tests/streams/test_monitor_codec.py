"""Codec 2 of the monitor state: old (codec 1) checkpoints still decode, compression above a size, exactness."""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from carechain.care_plan import CarePlan
from carechain.events import Kind
from streams.monitor import CODEC_VERSION, COMPRESS_ABOVE, ResidentMonitor, _num, _pack_event
from streams.synthetic import Home
from tests.streams.conftest import local
from tests.streams.test_codec import rich_history

#: Made with the codec-1 code (tests/streams/fixtures/make_monitor_state_v1.py): mid-day, an open fall,
#: three ordered events waiting, an applied offset.
V1_FIXTURE = Path(__file__).parent / "fixtures" / "monitor-state-v1.bin"


def encode_v1(m: ResidentMonitor) -> bytes:
    """The codec-1 encoder as it was (kept here only to make old checkpoints in tests)."""
    state = {
        "r": m.resident_id,
        "h": m.home_id,
        "l": m.lateness_s,
        "w": _num(m.watermark),
        "wu": _num(m.watermark_urgent),
        "rl": _num(m.released),
        "cd": m.closed_through,
        "m": _num(m.max_ts),
        "a": _num(m.last_activity),
        "s": _num(m.since),
        "dt": m.doses_taken,
        "ai": m.last_activity_id,
        "aw": m.last_activity_what,
        "n": [m.events_count, m.late_count, m.suppressed_count],
        "g": m.gateways,
        "go": m.gateway_offline,
        "gb": m.gateway_back,
        "dv": {k: d.dump() for k, d in m.devices.items()},
        "rm": m.rooms,
        "dy": [d.dump() for d in m.days.values()],
        "b": [_pack_event(e, t) for t, _, e in sorted(m.buffer)],
        "o": m.open,
        "k": m.keys,
        "p": m.positions,
        "d": {name: d.dump() for name, d in m.detectors.items()},
    }
    return b"\xcc\x4d\x01" + zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 6)


def _plan() -> CarePlan:
    return CarePlan(resident_id="r-1", gateway_silence_s=2 * 3600)


def _v1_body(raw: bytes) -> Any:
    return json.loads(zlib.decompress(raw[3:]))


def test_a_codec_1_checkpoint_of_the_old_code_still_decodes() -> None:
    raw = V1_FIXTURE.read_bytes()
    assert raw[2] == 1 and CODEC_VERSION == 2
    m = ResidentMonitor.from_bytes(raw, _plan())
    assert m.events_count == 3722 and len(m.devices) == 11 and len(m.days) == 1 and len(m.buffer) == 3
    assert list(m.open) == ["r-1:fall:1795175970"] and m.seen_position("events/3", 1234) is True
    # nothing lost or changed on the way in: written back in the old layout it is the same state
    # (detectors compared where their own layout has not changed since: a model may add a field)
    assert _same_state(encode_v1(m), raw)
    # and it goes on in codec 2 exactly
    again = ResidentMonitor.from_bytes(m.to_bytes(), _plan())
    assert again.to_bytes() == m.to_bytes() and again.to_bytes()[2] == 2
    assert _same_state(encode_v1(again), raw)


def _same_state(a: bytes, b: bytes) -> bool:
    x, y = _v1_body(a), _v1_body(b)
    dx, dy = x.pop("d"), y.pop("d")
    assert set(dx) == set(dy)
    assert dx["fall"] == dy["fall"] and dx["fall"][2]  # the open fall's device
    assert dx["rhythm"] == dy["rhythm"] and dx["rhythm"][2] == 19  # 19 days learned
    assert dx["vitals"] == dy["vitals"] and dx["vitals_bounds"] == dy["vitals_bounds"]
    return bool(x == y)


def test_resuming_from_an_old_checkpoint_gives_the_same_alerts_as_from_a_new_one() -> None:
    evs = rich_history(5)
    split = len(evs) // 2 + 7
    first = ResidentMonitor("r-1", "h-1", _plan())
    for e in evs[:split]:
        first.process(e)
    home = Home(seq={"x": 0})
    t = evs[split].ts
    tail = [
        *evs[split:],
        home.event(Kind.FALL, True, t + timedelta(minutes=3), room="hall"),
        home.event(Kind.SPO2, 80.0, t + timedelta(minutes=4)),
    ]
    tail.sort(key=lambda e: e.ts)
    old = ResidentMonitor.from_bytes(encode_v1(first), _plan())
    new = ResidentMonitor.from_bytes(first.to_bytes(), _plan())
    ids_old = [c.candidate_id for e in tail for c in old.process(e).candidates]
    ids_new = [c.candidate_id for e in tail for c in new.process(e).candidates]
    now = tail[-1].ts + timedelta(hours=5)
    ids_old += [c.candidate_id for c in old.tick(now).candidates]
    ids_new += [c.candidate_id for c in new.tick(now).candidates]
    assert ids_old == ids_new and any(":fall:" in i for i in ids_new)
    assert old.to_bytes() == new.to_bytes()


def test_small_states_are_stored_plain_large_ones_compressed() -> None:
    small = ResidentMonitor("r-1", "h-1").to_bytes()
    assert small[3] == 0 and small[4:5] == b"["
    m = ResidentMonitor("r-1", "h-1", _plan())
    home = Home()
    start = local(3, 9)
    for i in range(150):  # many sensors: a large state
        m.process(home.event(Kind.MOTION, True, start + timedelta(seconds=i), device=f"pir-{i}", room="living"))
    raw = m.to_bytes()
    assert raw[3] == 1 and len(zlib.decompress(raw[4:])) > COMPRESS_ABOVE >= len(raw)
    again = ResidentMonitor.from_bytes(raw, _plan())
    assert again.to_bytes() == raw and list(again.devices) == list(m.devices)


def test_every_number_survives_exactly() -> None:
    m = ResidentMonitor("r-1", "h-1", _plan())
    home = Home()
    # late evening bathroom visits set the high bathroom-slot bits (past 64 bits), odd fractions of seconds
    for hh, mm in ((22, 50), (23, 40), (23, 55)):
        t = local(3, hh, mm) + timedelta(microseconds=123457)
        m.process(home.motion(t, room="bathroom"))
        m.process(home.event(Kind.HEART_RATE, 71.3, t + timedelta(seconds=1.1), device="watch"))
    m.process(home.event(Kind.DOOR, "open", local(3, 23, 56), room="hall"))
    (day,) = m.days.values()
    assert day.bath_slots >= 2**64
    again = ResidentMonitor.from_bytes(m.to_bytes(), _plan())
    (day2,) = again.days.values()
    assert day2.bath_slots == day.bath_slots and day2.room_hours == day.room_hours
    assert {k: d.dump() for k, d in again.devices.items()} == {k: d.dump() for k, d in m.devices.items()}
    assert sorted(again.buffer) == sorted(m.buffer)
    assert {n: d.dump() for n, d in again.detectors.items()} == {n: d.dump() for n, d in m.detectors.items()}
    assert _v1_body(encode_v1(again)) == _v1_body(encode_v1(m))


def test_refuses_unknown_flags() -> None:
    raw = ResidentMonitor("r-1", "h-1").to_bytes()
    with pytest.raises(ValueError, match="flags"):
        ResidentMonitor.from_bytes(raw[:3] + b"\x02" + raw[4:])
