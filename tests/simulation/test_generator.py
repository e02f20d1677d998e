"""The pure generator: deterministic, in the wire format, with the incidents it promises."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from carechain.events import ContractError, Kind, parse_events_payload, parse_status_payload, parse_topic
from carechain.simulation.behaviour import resident_readings
from carechain.simulation.gateway import HEARTBEAT_S, gateway_messages
from carechain.simulation.homes import home_config, home_layout
from carechain.simulation.scenarios import IncidentType, healthy_scenario, incident_scenario, scenario_set
from carechain.simulation.stream import home_stream


def _messages(sc):  # type: ignore[no-untyped-def]
    readings = resident_readings(sc.seed, sc.home, sc.start, sc.end, sc.incidents)
    return readings, list(gateway_messages(sc.home, readings, sc.start, sc.end, sc.incidents))


def test_same_seed_same_day_and_other_seed_other_day() -> None:
    sc = healthy_scenario(1, 1, seed=7)[0]
    a = resident_readings(sc.seed, sc.home, sc.start, sc.end)
    b = resident_readings(sc.seed, sc.home, sc.start, sc.end)
    other = healthy_scenario(1, 1, seed=8)[0]
    c = resident_readings(other.seed, other.home, other.start, other.end)
    assert a == b
    assert a != c


def test_slices_of_a_day_are_the_same_readings_as_the_whole_day() -> None:
    sc = healthy_scenario(1, 1, seed=3)[0]
    whole = resident_readings(sc.seed, sc.home, sc.start, sc.end)
    mid = sc.start + timedelta(hours=13)
    parts = resident_readings(sc.seed, sc.home, sc.start, mid) + resident_readings(sc.seed, sc.home, mid, sc.end)
    assert whole == parts


def test_every_message_is_valid_wire_format_from_registered_devices() -> None:
    sc = healthy_scenario(1, 1, seed=1)[0]
    _, msgs = _messages(sc)
    known = {d.device_id for d in sc.home.layout.devices}
    kinds: Counter[str] = Counter()
    for m in msgs:
        gw, channel = parse_topic(m.topic)
        assert gw == sc.home.layout.gateway_id
        now = datetime.fromtimestamp(m.at, UTC)
        if channel == "status":
            assert parse_status_payload(gw, m.payload, now).status == "online"
            continue
        for r in parse_events_payload(gw, m.payload, now):
            assert not isinstance(r, ContractError), r
            assert r.device_id in known
            assert r.ts <= now
            kinds[r.kind.value] += 1
    day = 86400 / HEARTBEAT_S
    assert day - 2 <= kinds[Kind.GATEWAY_HEARTBEAT] <= day + 2
    assert kinds[Kind.MOTION] > 200
    assert kinds[Kind.DOSE_TAKEN] == 2
    assert kinds[Kind.HEART_RATE] == 288
    assert kinds[Kind.BED] >= 2


def test_sequence_numbers_grow_per_device() -> None:
    sc = healthy_scenario(1, 1, seed=2)[0]
    _, msgs = _messages(sc)
    last: dict[str, int] = {}
    for m in msgs:
        if m.topic.endswith("/events"):
            for r in parse_events_payload(sc.home.layout.gateway_id, m.payload, datetime.fromtimestamp(m.at, UTC)):
                assert not isinstance(r, ContractError)
                assert r.seq > last.get(r.device_id, -1)
                last[r.device_id] = r.seq


def test_a_healthy_week_looks_like_ordinary_life() -> None:
    sc = healthy_scenario(1, 7, seed=5)[0]
    readings = resident_readings(sc.seed, sc.home, sc.start, sc.end)
    bath = sc.home.layout.motion("bathroom")
    door = sc.home.layout.device("door")
    bath_days = {r.t // 86400 for r in readings if r.device_id == bath}
    assert len(bath_days) >= 7
    assert sum(1 for r in readings if r.kind is Kind.DOSE_MISSED) == 0
    assert sum(1 for r in readings if r.device_id == door) >= 4  # home care or outings
    hr = [float(r.value) for r in readings if r.kind is Kind.HEART_RATE]  # type: ignore[arg-type]
    assert min(hr) >= 45 and max(hr) <= 120
    assert all(float(r.value) > 20 for r in readings if r.kind is Kind.BATTERY)  # type: ignore[arg-type]


def test_fall_is_followed_by_stillness_then_help() -> None:
    sc = incident_scenario(IncidentType.FALL, 1, seed=1)[0]
    inc = sc.incidents[0]
    readings = resident_readings(sc.seed, sc.home, sc.start, sc.end, sc.incidents)
    s, e = inc.start.timestamp(), (inc.start + inc.duration).timestamp()
    falls = [r for r in readings if r.kind is Kind.FALL]
    assert [r.t for r in falls] == [s]
    assert not [r for r in readings if r.kind is Kind.MOTION and s < r.t < e]
    assert [r for r in readings if r.kind is Kind.DOOR and e <= r.t < e + 60]


@pytest.mark.parametrize("kind", [IncidentType.INACTIVITY, IncidentType.NIGHT_WANDERING, IncidentType.MISSED_DOSE])
def test_incidents_show_in_the_readings(kind: IncidentType) -> None:
    for sc in incident_scenario(kind, 3, seed=4):
        inc = sc.incidents[0]
        readings = resident_readings(sc.seed, sc.home, sc.start, sc.end, sc.incidents)
        s = inc.start.timestamp()
        if kind is IncidentType.INACTIVITY:
            e = s + inc.duration.total_seconds()
            assert not [r for r in readings if r.kind in (Kind.MOTION, Kind.DOOR, Kind.BED) and s < r.t < e]
        elif kind is IncidentType.NIGHT_WANDERING:
            doors = [r for r in readings if r.kind is Kind.DOOR and r.value == "open" and abs(r.t - s) < 1]
            assert doors
            outs = [r for r in readings if r.kind is Kind.BED and r.value == "out" and s - 600 < r.t < s]
            assert outs
        else:
            slot = inc.detail["slot"]
            due = [r for r in readings if r.kind is Kind.DOSE_DUE and r.value == slot and 0 < s - r.t < 3600]
            assert due
            taken = [r for r in readings if r.kind is Kind.DOSE_TAKEN and r.value == slot]
            assert not [r for r in taken if 0 < r.t - due[0].t < 7200]


def test_gateway_outage_is_silence_then_will_then_backfill() -> None:
    scs = incident_scenario(IncidentType.GATEWAY_OFFLINE, 6, seed=1)
    for sc in scs:
        inc = sc.incidents[0]
        s, e = inc.start.timestamp(), (inc.start + inc.duration).timestamp()
        _, msgs = _messages(sc)
        inside = [m for m in msgs if s < m.at < e and m.action == "publish"]
        assert not inside
        wills = [m for m in msgs if m.action == "will"]
        assert len(wills) == 1 and wills[0].payload == b"offline" and wills[0].retain
        assert [m for m in msgs if m.action == "drop"]
        back = [m for m in msgs if m.at == e and m.topic.endswith("/events")]
        assert bool(back) == bool(inc.detail["backfill"])


def test_dead_battery_sinks_below_the_low_level_at_start() -> None:
    sc = incident_scenario(IncidentType.DEAD_BATTERY, 1, seed=1)[0]
    inc = sc.incidents[0]
    dev = inc.detail["device_id"]
    readings = resident_readings(sc.seed, sc.home, sc.start, sc.end, sc.incidents)
    levels = [(r.t, float(r.value)) for r in readings if r.device_id == dev and r.kind is Kind.BATTERY]  # type: ignore[arg-type]
    low = [t for t, v in levels if v < sc.home.plan.battery_low_pct]
    assert low and abs(low[0] - inc.start.timestamp()) < 1


def test_hourly_stream_matches_one_slice() -> None:
    sc = incident_scenario(IncidentType.GATEWAY_OFFLINE, 1, seed=2)[0]
    _, whole = _messages(sc)
    chunked = list(home_stream(sc.seed, sc.home, sc.start, sc.end, sc.incidents))

    def readings(ms):  # type: ignore[no-untyped-def]
        out = []
        for m in ms:
            if m.topic.endswith("/events"):
                now = datetime.fromtimestamp(m.at, UTC)
                out += [r.seq for r in parse_events_payload(sc.home.layout.gateway_id, m.payload, now)]
        return sorted(out)

    assert readings(whole) == readings(chunked)


def test_scenario_sets_give_each_scenario_its_own_home() -> None:
    quick = scenario_set("quick")
    homes = [s.home.layout.home_id for s in quick.scenarios]
    assert len(homes) == len(set(homes))
    assert {i.type for s in quick.scenarios for i in s.incidents} == set(IncidentType) - {IncidentType.DECLINE}
    full = scenario_set("full")
    assert {i.type for s in full.scenarios for i in s.incidents} == set(IncidentType)
    assert home_layout(1).device("robot") == "gw-0001-robot"
    assert home_config(1, 2).layout.gateway_id == "gw-0002"
