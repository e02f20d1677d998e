"""Unit tests for the event contract (pure, no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

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
