"""Unit tests for the bridge's pure routing decision (no I/O)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.events import Event, Kind, Lane, make_event_id
from ingest.routing import (
    NO_CONSENT,
    DeadLetter,
    Discarded,
    Forward,
    RegisteredDevice,
    RegistrySnapshot,
    event_json,
    fast_event_id,
    internal_error,
    route,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TS = "2026-11-23T08:59:00+01:00"
EV = "carechain/v1/gw/gw-1/events"
ST = "carechain/v1/gw/gw-1/status"


def dev(device_id: str, gw: str = "gw-1", home: str = "h-1", resident: str = "r-1", active: bool = True,
        room: str | None = "hall", kind: str = "motion") -> RegisteredDevice:
    return RegisteredDevice(device_id, gw, home, resident, room, kind, active)


REG = RegistrySnapshot(
    [
        dev("gw-1", kind="gateway"),
        dev("m-1"),
        dev("hr-1", room=None, kind="wristband"),
        dev("pend-1", kind="pendant"),
        dev("m-2", gw="gw-2", home="h-2", resident="r-2"),
        dev("gw-3", gw="gw-3", home="h-3", resident="r-3", active=False, kind="gateway"),
        dev("m-3", gw="gw-3", home="h-3", resident="r-3", active=False),
        # A gateway not registered as a device, shared by two residents of one home.
        dev("m-4a", gw="gw-4", home="h-4", resident="r-4a"),
        dev("m-4b", gw="gw-4", home="h-4", resident="r-4b"),
    ]
)


def reading(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"v": 1, "device_id": "m-1", "kind": "motion", "value": True, "ts": TS, "seq": 1}
    base.update(kw)
    return base


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_valid_motion_reading_is_forwarded_to_bulk_lane_keyed_by_resident() -> None:
    [out] = route(EV, enc(reading()), REG, NOW)
    assert isinstance(out, Forward)
    assert out.lane is Lane.BULK and out.key == "r-1" and (out.device_id, out.seq) == ("m-1", 1)
    ev = Event.from_json(out.value)
    assert (ev.resident_id, ev.home_id, ev.gateway_id, ev.room, ev.kind) == ("r-1", "h-1", "gw-1", "hall", "motion")
    assert ev.ts == datetime(2026, 11, 23, 7, 59, tzinfo=UTC) and ev.received_at == NOW


@pytest.mark.parametrize(
    ("kind", "value", "lane"),
    [
        ("fall", True, Lane.URGENT),
        ("alarm_button", True, Lane.URGENT),
        ("medication.dose_missed", "08:00", Lane.URGENT),
        ("medication.refill_needed", 3, Lane.URGENT),
        ("heart_rate", 71, Lane.BULK),
        ("battery", 55.5, Lane.BULK),
        ("door", "open", Lane.BULK),
    ],
)
def test_lane_follows_kind(kind: str, value: object, lane: Lane) -> None:
    [out] = route(EV, enc(reading(kind=kind, value=value)), REG, NOW)
    assert isinstance(out, Forward) and out.lane is lane


def test_heartbeat_of_registered_gateway_goes_to_bulk_lane() -> None:
    [out] = route(EV, enc(reading(device_id="gw-1", kind="gateway.heartbeat", value=None)), REG, NOW)
    assert isinstance(out, Forward) and out.lane is Lane.BULK
    assert Event.from_json(out.value).kind == Kind.GATEWAY_HEARTBEAT.value


def test_heartbeat_of_unregistered_gateway_reaches_every_resident_behind_it() -> None:
    topic = "carechain/v1/gw/gw-4/events"
    outs = route(topic, enc(reading(device_id="gw-4", kind="gateway.heartbeat", value=None)), REG, NOW)
    assert sorted(o.key for o in outs if isinstance(o, Forward)) == ["r-4a", "r-4b"]


def test_batch_forwards_good_readings_and_dead_letters_each_bad_one() -> None:
    batch = {
        "v": 1,
        "readings": [
            reading(seq=1),
            reading(seq=2, kind="heart_rate", value=400),
            reading(seq=3, device_id="ghost"),
            reading(seq=4, device_id="m-2"),
            reading(seq=5, kind="fall", value=True),
        ],
    }
    outs = route(EV, enc(batch), REG, NOW)
    assert [type(o).__name__ for o in outs] == ["Forward", "DeadLetter", "DeadLetter", "DeadLetter", "Forward"]
    dls = [o for o in outs if isinstance(o, DeadLetter)]
    assert [d.reason for d in dls] == ["out_of_range", "unknown_device", "device_not_on_gateway"]
    # Only the bad reading itself is kept as the dead letter's payload, not the whole batch.
    assert json.loads(dls[1].payload)["device_id"] == "ghost"
    assert dls[0].detail.startswith("reading 1:")
    assert all(d.gateway_id == "gw-1" and d.mqtt_topic == EV for d in dls)


def test_order_of_outputs_follows_the_batch() -> None:
    batch = {"v": 1, "readings": [reading(seq=i) for i in range(10)]}
    outs = route(EV, enc(batch), REG, NOW)
    assert [o.seq for o in outs if isinstance(o, Forward)] == list(range(10))


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (EV, b"{not json", "bad_json"),
        (EV, b"\x00\xff\xfe garbage", "not_utf8"),
        (EV, b'{"v":1,"device_id":"m-1","kind":"heart_rate","value":NaN,"ts":"2026-11-23T08:00:00Z","seq":1}',
         "bad_json"),
        (EV, b"x" * (300 * 1024), "too_large"),
        (EV, enc(reading(ts=(NOW + timedelta(days=400)).isoformat())), "future_time"),
        (EV, enc(reading(value="yes")), "bad_value"),
        (EV, enc(reading(device_id="nobody")), "unknown_device"),
        (EV, enc(reading(device_id="m-2")), "device_not_on_gateway"),
        (EV, enc({"v": 1, "readings": []}), "bad_shape"),
        ("carechain/v1/gw/gw-1/other", enc(reading()), "bad_topic"),
        ("carechain/v1/gw/gw-1/events/x", enc(reading()), "bad_topic"),
        ("carechain/v1/gw/../events", enc(reading()), "bad_gateway_id"),
        (ST, b"sideways", "bad_json"),
        (ST, enc({"v": 1, "status": "asleep"}), "bad_value"),
        ("carechain/v1/gw/gw-9/status", b"offline", "unknown_gateway"),
    ],
)
def test_bad_input_is_dead_lettered_with_reason(topic: str, payload: bytes, reason: str) -> None:
    [out] = route(topic, payload, REG, NOW)
    assert isinstance(out, DeadLetter) and out.reason == reason
    assert out.mqtt_topic == topic and out.payload == payload and out.received_at == NOW
    doc = json.loads(out.to_json())
    assert set(doc) >= {"v", "reason", "detail", "mqtt_topic", "payload_b64", "received_at"}
    assert doc["reason"] == reason and doc["payload_bytes"] == len(payload)


def test_dead_letter_of_huge_payload_is_truncated_below_kafka_limit() -> None:
    dl = DeadLetter("too_large", "x", b"y" * (5 * 1024 * 1024), EV, NOW, "gw-1")
    raw = dl.to_json()
    assert len(raw) < 1024 * 1024
    assert len(base64.b64decode(json.loads(raw)["payload_b64"])) == 256 * 1024


def test_home_without_consent_is_discarded_not_dead_lettered() -> None:
    topic = "carechain/v1/gw/gw-3/events"
    batch = {"v": 1, "readings": [reading(device_id="m-3", seq=i) for i in range(3)]}
    outs = route(topic, enc(batch), REG, NOW)
    assert outs == [Discarded("gw-3", "h-3", NO_CONSENT)] * 3
    assert route("carechain/v1/gw/gw-3/status", b"offline", REG, NOW) == [Discarded("gw-3", "h-3", NO_CONSENT)]


def test_bare_last_will_becomes_urgent_status_event_at_receipt_time() -> None:
    [out] = route(ST, b"offline", REG, NOW)
    assert isinstance(out, Forward) and out.lane is Lane.URGENT and out.key == "r-1"
    ev = Event.from_json(out.value)
    assert (ev.kind, ev.value, ev.device_id, ev.ts) == ("gateway.status", "offline", "gw-1", NOW)
    assert ev.extra == {"ts_source": "received"}


def test_json_status_keeps_its_time_and_retained_flag() -> None:
    payload = enc({"v": 1, "status": "online", "ts": TS})
    [a] = route(ST, payload, REG, NOW, retained=True)
    [b] = route(ST, payload, REG, NOW + timedelta(seconds=5), retained=True)
    assert isinstance(a, Forward) and isinstance(b, Forward)
    ea, eb = Event.from_json(a.value), Event.from_json(b.value)
    assert ea.value == "online" and ea.extra == {"retained": True}
    assert ea.event_id == eb.event_id  # republished status: same id, idempotent downstream


def test_status_of_shared_gateway_reaches_both_residents() -> None:
    outs = route("carechain/v1/gw/gw-4/status", b"offline", REG, NOW)
    assert sorted(o.key for o in outs if isinstance(o, Forward)) == ["r-4a", "r-4b"]


def test_event_id_is_deterministic_for_replays() -> None:
    [a] = route(EV, enc(reading(seq=7)), REG, NOW)
    [b] = route(EV, enc(reading(seq=7)), REG, NOW + timedelta(seconds=30))
    assert isinstance(a, Forward) and isinstance(b, Forward)
    assert Event.from_json(a.value).event_id == Event.from_json(b.value).event_id


@pytest.mark.parametrize(
    ("kind", "value", "extra"),
    [
        ("motion", True, {}),
        ("heart_rate", 72.5, {}),
        ("spo2", 97, {}),
        ("door", "closed", {}),
        ("medication.dose_taken", "08:00", {}),
        ("medication.refill_needed", 2, {}),
        ("gateway.heartbeat", None, {}),
        ("gateway.status", "offline", {"ts_source": "received", "retained": True}),
    ],
)
def test_fast_serialiser_matches_contract_bytes(kind: str, value: object, extra: dict[str, object]) -> None:
    ev = Event("id-1", "r-1", "h-1", "gw-1", "d-1", None if kind == "spo2" else "kök", kind, value,  # type: ignore[arg-type]
               NOW - timedelta(seconds=3), 9, NOW, "bpm" if kind == "heart_rate" else None, extra=extra)
    assert event_json(ev) == ev.to_json()


def test_internal_error_keeps_only_exception_class() -> None:
    dl = internal_error(EV, b"secret payload", NOW, KeyError("Anna Andersson 19400101-1234"))
    assert dl.reason == "internal_error" and dl.detail == "KeyError" and dl.gateway_id == "gw-1"
    assert internal_error("elsewhere", b"", NOW, ValueError()).gateway_id is None


def test_snapshot_size_and_lookup() -> None:
    assert len(REG) == 9
    assert REG.device("m-1") is not None and REG.device("nobody") is None
    assert REG.residents_behind("nowhere") == ()


@settings(max_examples=300, deadline=None)
@given(
    kind_value=st.sampled_from([
        ("motion", True), ("motion", False), ("heart_rate", 20), ("heart_rate", 249.99), ("spo2", 97.5),
        ("temperature", 36.6), ("battery", 0), ("door", "open"), ("bed", "out"), ("fall", True),
        ("medication.dose_taken", "08:00"), ("medication.fault", 'jam "A"\\'), ("medication.refill_needed", 0),
        ("gateway.heartbeat", None),
    ]),
    resident=st.text(min_size=1, max_size=12),
    home=st.text(min_size=1, max_size=12),
    room=st.one_of(st.none(), st.text(max_size=8)),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    micros=st.integers(min_value=0, max_value=999_999),
    with_unit=st.booleans(),
)
def test_hot_path_bytes_equal_event_to_json(kind_value: tuple[str, object], resident: str, home: str,
                                            room: str | None, seq: int, micros: int, with_unit: bool) -> None:
    kind, value = kind_value
    reg = RegistrySnapshot([RegisteredDevice("d-1", "gw-1", home, resident, room, "x", True)])
    r = reading(device_id="d-1", kind=kind, value=value, seq=seq,
                ts=(NOW - timedelta(seconds=1, microseconds=micros)).isoformat())
    if with_unit and kind in ("heart_rate", "spo2", "temperature", "battery"):
        r["unit"] = {"heart_rate": "bpm", "temperature": "Cel"}.get(kind, "%")
    [out] = route(EV, enc(r), reg, NOW + timedelta(microseconds=micros))
    assert isinstance(out, Forward)
    assert out.value == Event.from_json(out.value).to_json()
    assert Event.from_json(out.value).event_id == make_event_id("d-1", seq, datetime.fromisoformat(r["ts"]))


@settings(max_examples=500, deadline=None)
@given(
    device_id=st.text(min_size=1, max_size=64),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    ts=st.datetimes(timezones=st.sampled_from([UTC, None])),
)
def test_fast_event_id_equals_make_event_id(device_id: str, seq: int, ts: datetime) -> None:
    assert fast_event_id(device_id, seq, ts.isoformat()) == make_event_id(device_id, seq, ts)
