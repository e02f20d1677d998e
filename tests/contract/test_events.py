"""Unit tests for the event contract (pure, no I/O)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from carechain.candidates import AlertCandidate, CandidateState, Evidence, Family, Severity
from carechain.care_plan import CarePlan
from carechain.events import (
    ContractError,
    Event,
    Kind,
    Lane,
    Reading,
    lane_of,
    make_event_id,
    parse_events_payload,
    parse_status_payload,
    parse_topic,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def payload(**kw: object) -> bytes:
    base = {"v": 1, "device_id": "d-1", "kind": "motion", "value": True, "ts": "2026-11-23T08:59:00+01:00", "seq": 1}
    base.update(kw)
    return json.dumps(base).encode()


def test_single_reading_is_parsed_to_utc() -> None:
    [r] = parse_events_payload("gw-1", payload(), NOW)
    assert isinstance(r, Reading)
    assert r.kind is Kind.MOTION and r.value is True and r.ts == datetime(2026, 11, 23, 7, 59, tzinfo=UTC)


def test_batch_keeps_good_readings_and_reports_bad_ones() -> None:
    good = json.loads(payload())
    bad = {**good, "kind": "teleport"}
    out = parse_events_payload("gw-1", json.dumps({"v": 1, "readings": [good, bad]}).encode(), NOW)
    assert isinstance(out[0], Reading)
    assert isinstance(out[1], ContractError) and out[1].reason == "unknown_kind"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not_utf8"),
        (b"{not json", "bad_json"),
        (b'{"v":1,"device_id":"d","kind":"heart_rate","value":NaN,"ts":"2026-11-23T08:00:00Z","seq":1}', "bad_json"),
        (b"[]", "bad_shape"),
        (b"x" * (300 * 1024), "too_large"),
        (payload(v=2), "bad_version"),
    ],
)
def test_unusable_payloads_raise_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as exc:
        parse_events_payload("gw-1", raw, NOW)
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"kind": "heart_rate", "value": "fast"}, "bad_value"),
        ({"kind": "heart_rate", "value": 400}, "out_of_range"),
        ({"kind": "spo2", "value": True}, "bad_value"),
        ({"kind": "door", "value": "ajar"}, "bad_value"),
        ({"ts": "2026-11-23T09:00:00"}, "bad_time"),
        ({"ts": (NOW + timedelta(hours=1)).isoformat()}, "future_time"),
        ({"ts": (NOW - timedelta(days=60)).isoformat()}, "too_old"),
        ({"seq": -1}, "bad_seq"),
        ({"seq": 1.5}, "bad_seq"),
        ({"device_id": "../../etc"}, "bad_device_id"),
        ({"owner": "x"}, "unknown_field"),
        ({"kind": "heart_rate", "value": 70, "unit": "Hz"}, "bad_unit"),
    ],
)
def test_bad_readings_get_a_reason(fields: dict[str, object], reason: str) -> None:
    [r] = parse_events_payload("gw-1", payload(**fields), NOW)
    assert isinstance(r, ContractError) and r.reason == reason


def test_topics_and_status() -> None:
    assert parse_topic("carechain/v1/gw/gw-7/events") == ("gw-7", "events")
    with pytest.raises(ContractError):
        parse_topic("carechain/v1/gw/gw-7/other")
    assert parse_status_payload("gw-7", b"offline", NOW).status == "offline"
    st = parse_status_payload("gw-7", b'{"v":1,"status":"online","ts":"2026-11-23T08:00:00Z"}', NOW)
    assert st.status == "online" and st.ts == NOW


def test_lanes_put_falls_and_medication_first() -> None:
    assert lane_of(Kind.FALL) is Lane.URGENT
    assert lane_of(Kind.DOSE_MISSED) is Lane.URGENT
    assert lane_of(Kind.HEART_RATE) is Lane.BULK


def test_event_round_trip_and_deterministic_id() -> None:
    eid = make_event_id("d-1", 5, NOW)
    assert eid == make_event_id("d-1", 5, NOW) != make_event_id("d-1", 6, NOW)
    ev = Event(eid, "r-1", "h-1", "gw-1", "d-1", "kitchen", "motion", True, NOW, 5, NOW)
    assert Event.from_json(ev.to_json()) == ev


_EV = Event(make_event_id("d-1", 5, NOW), "r-1", "h-1", "gw-1", "d-1", "kitchen", "motion", True, NOW, 5, NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"kind": "heart_rate", "value": 71.5, "unit": "bpm", "room": None},
        {"kind": "medication.refill_needed", "value": 3},
        {"kind": "medication.dose_taken", "value": "08:00", "room": "kök"},
        {"kind": "gateway.heartbeat", "value": None},
        {"kind": "gateway.status", "value": "offline", "extra": {"ts_source": "received", "retained": True}},
        {"ts": datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))},
    ],
)
def test_event_json_round_trip_and_bytes(changes: dict[str, object]) -> None:
    ev = dataclasses.replace(_EV, **changes)  # type: ignore[arg-type]
    raw = ev.to_json()
    # The wire form is exactly json.dumps of the dataclass fields (the bridge builds the same bytes).
    d = dataclasses.asdict(ev)
    d["ts"], d["received_at"] = ev.ts.isoformat(), ev.received_at.isoformat()
    if not ev.extra:
        del d["extra"]
    assert raw == json.dumps(d, separators=(",", ":")).encode()
    back = Event.from_json(raw)
    assert back == ev and Event.from_json(raw.decode()) == ev
    assert type(back.value) is type(ev.value) and back.ts.utcoffset() == ev.ts.utcoffset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.kind = "fall"  # type: ignore[misc]


def test_event_without_unit_and_extra_gets_defaults_and_own_extra() -> None:
    d = json.loads(_EV.to_json())
    del d["unit"]
    a, b = (Event.from_json(json.dumps(d)) for _ in range(2))
    assert a.unit is None and a.extra == {} and a.extra is not b.extra


def _wire(**kw: object) -> bytes:
    d = json.loads(_EV.to_json())
    for k, v in kw.items():
        if v is _DROP:
            del d[k]
        else:
            d[k] = v
    return json.dumps(d).encode()


_DROP = object()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b'{"v":1,"value":NaN}', "bad_json"),
        (b"[1]", "bad_shape"),
        (b'"x"', "bad_shape"),
        (_wire(v=2), "bad_version"),
        (_wire(v=True), "bad_version"),
        (_wire(v=_DROP), "bad_version"),
        (_wire(resident_id=_DROP), "missing_field"),
        (_wire(ts=_DROP), "missing_field"),
        (_wire(owner="x"), "unknown_field"),
        (_wire(resident_id=7), "bad_field"),
        (_wire(kind=None), "bad_field"),
        (_wire(room=["hall"]), "bad_field"),
        (_wire(unit=1), "bad_field"),
        (_wire(extra=[1]), "bad_field"),
        (_wire(seq=True), "bad_seq"),
        (_wire(seq="5"), "bad_seq"),
        (_wire(value={"a": 1}), "bad_value"),
        (_wire(ts="2026-11-23T09:00:00"), "bad_time"),
        (_wire(ts="yesterday"), "bad_time"),
        (_wire(received_at=1700000000), "bad_time"),
    ],
)
def test_bad_events_raise_contract_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as exc:
        Event.from_json(raw)
    assert exc.value.reason == reason


def test_candidate_round_trip() -> None:
    c = AlertCandidate(
        "r-1",
        "h-1",
        "fall",
        Family.WELFARE,
        Severity.CRITICAL,
        "fall",
        "1.0",
        "r-1:fall:1",
        CandidateState.FIRING,
        NOW,
        NOW,
        "A fall was detected.",
        "Ett fall upptäcktes.",
        Evidence(event_ids=["e1"], window_start=NOW),
    )
    assert AlertCandidate.from_json(c.to_json()) == c
    assert c.candidate_id == "r-1:fall:1#firing"


def test_care_plan_defaults_and_overrides() -> None:
    plan = CarePlan.from_dict("r-1", {"inactivity_limit_min": 90, "doses": [{"slot": "09:00", "grace_min": 45}]})
    assert plan.inactivity_limit_min == 90 and plan.doses[0].grace_min == 45
    assert CarePlan.from_dict("r-1", plan.to_dict()) == plan
