"""The event contract: what a gateway may publish and what travels on Kafka.

Declared once and reused by the bridge, the simulator, the stream worker and
the tests (DESIGN.md, "Contracts"). Pure: no I/O library is imported here.

Wire format on MQTT ``carechain/v1/gw/{gateway_id}/events`` — one reading or a
batch; the gateway id comes from the topic, which the broker ACL guarantees::

    {"v": 1, "device_id": "d-1", "kind": "motion", "value": true,
     "ts": "2026-11-23T08:00:00+01:00", "seq": 42}
    {"v": 1, "readings": [ {...}, {...} ]}

``carechain/v1/gw/{gateway_id}/status`` (retained) carries ``{"v": 1,
"status": "online", "ts": ...}`` or the bare last-will string ``offline``.

On Kafka every accepted reading becomes an :class:`Event` (JSON, keyed by the
pseudonymous resident id), enriched by the bridge from the device registry.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

SCHEMA_VERSION = 1

#: Largest MQTT payload the bridge accepts (bytes).
MAX_PAYLOAD_BYTES = 256 * 1024
#: Largest number of readings in one batch.
MAX_BATCH_READINGS = 1000
#: How far in the future an event time may lie (gateway clocks drift a little).
MAX_FUTURE = timedelta(minutes=5)
#: Older readings than this are not accepted at all (backfill has a limit).
MAX_AGE = timedelta(days=30)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_EVENT_NS = uuid.UUID("6f1c2a9e-5d1b-4c8e-9a57-3b1c2d4e5f60")

TOPIC_PREFIX = "carechain/v1/gw/"


class Kind(StrEnum):
    """Known reading kinds. Anything else is dead-lettered."""

    MOTION = "motion"
    DOOR = "door"
    BED = "bed"
    FALL = "fall"
    ALARM_BUTTON = "alarm_button"
    HEART_RATE = "heart_rate"
    SPO2 = "spo2"
    TEMPERATURE = "temperature"
    BATTERY = "battery"
    DOSE_DUE = "medication.dose_due"
    DOSE_DISPENSED = "medication.dose_dispensed"
    DOSE_TAKEN = "medication.dose_taken"
    DOSE_MISSED = "medication.dose_missed"
    ROBOT_FAULT = "medication.fault"
    REFILL_NEEDED = "medication.refill_needed"
    GATEWAY_HEARTBEAT = "gateway.heartbeat"
    #: Made by the bridge from the status topic (online/offline, last will).
    GATEWAY_STATUS = "gateway.status"


class Lane(StrEnum):
    """Kafka lanes: a fall must never wait behind telemetry."""

    URGENT = "urgent"
    BULK = "bulk"


URGENT_KINDS = frozenset(
    {
        Kind.FALL,
        Kind.ALARM_BUTTON,
        Kind.DOSE_DUE,
        Kind.DOSE_DISPENSED,
        Kind.DOSE_TAKEN,
        Kind.DOSE_MISSED,
        Kind.ROBOT_FAULT,
        Kind.REFILL_NEEDED,
        Kind.GATEWAY_STATUS,
    }
)

MEDICATION_KINDS = frozenset(k for k in Kind if k.value.startswith("medication."))

#: Physical range and unit per numeric kind: values outside are sensor errors.
NUMERIC_RANGES: dict[Kind, tuple[float, float, str]] = {
    Kind.HEART_RATE: (20.0, 250.0, "bpm"),
    Kind.SPO2: (50.0, 100.0, "%"),
    Kind.TEMPERATURE: (30.0, 45.0, "Cel"),
    Kind.BATTERY: (0.0, 100.0, "%"),
}

#: Allowed string values per enumerated kind.
ENUM_VALUES: dict[Kind, frozenset[str]] = {
    Kind.DOOR: frozenset({"open", "closed"}),
    Kind.BED: frozenset({"in", "out"}),
    Kind.GATEWAY_STATUS: frozenset({"online", "offline"}),
}

BOOL_KINDS = frozenset({Kind.MOTION, Kind.FALL, Kind.ALARM_BUTTON})
#: Medication events carry the dose id (schedule slot, e.g. "08:00") or a code.
STRING_KINDS = frozenset({Kind.DOSE_DUE, Kind.DOSE_DISPENSED, Kind.DOSE_TAKEN, Kind.DOSE_MISSED, Kind.ROBOT_FAULT})
INT_KINDS = frozenset({Kind.REFILL_NEEDED})  # doses left in the robot
NULL_KINDS = frozenset({Kind.GATEWAY_HEARTBEAT})


class ContractError(ValueError):
    """A payload breaks the contract. ``reason`` is a short machine code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated reading as a gateway sent it (no resident yet)."""

    gateway_id: str
    device_id: str
    kind: Kind
    value: bool | float | int | str | None
    ts: datetime
    seq: int
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """A gateway's availability, from the retained status topic or last will."""

    gateway_id: str
    status: str  # "online" | "offline"
    ts: datetime | None  # None for the bare last-will string


def parse_topic(topic: str) -> tuple[str, str]:
    """Return ``(gateway_id, channel)`` for a CareChain topic, channel 'events' or 'status'."""
    if not topic.startswith(TOPIC_PREFIX):
        raise ContractError("bad_topic", f"topic outside {TOPIC_PREFIX}")
    rest = topic[len(TOPIC_PREFIX) :].split("/")
    if len(rest) != 2 or rest[1] not in ("events", "status"):
        raise ContractError("bad_topic", "expected carechain/v1/gw/{gateway_id}/events|status")
    if not _ID_RE.match(rest[0]):
        raise ContractError("bad_gateway_id", "gateway id has invalid characters or length")
    return rest[0], rest[1]


def _parse_ts(raw: Any, now: datetime) -> datetime:
    if isinstance(raw, bool) or not isinstance(raw, str):
        raise ContractError("bad_time", "ts must be an RFC 3339 string with an offset")
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ContractError("bad_time", "ts is not RFC 3339") from exc
    if ts.tzinfo is None:
        raise ContractError("bad_time", "ts has no UTC offset")
    ts = ts.astimezone(UTC)
    if ts > now + MAX_FUTURE:
        raise ContractError("future_time", f"ts more than {MAX_FUTURE} in the future")
    if ts < now - MAX_AGE:
        raise ContractError("too_old", f"ts more than {MAX_AGE.days} days in the past")
    return ts


def _check_value(kind: Kind, value: Any) -> tuple[bool | float | int | str | None, str | None]:
    if kind in NUMERIC_RANGES:
        lo, hi, unit = NUMERIC_RANGES[kind]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ContractError("bad_value", f"{kind} needs a number")
        if not math.isfinite(value):
            raise ContractError("bad_value", f"{kind} value is not finite")
        if not lo <= value <= hi:
            raise ContractError("out_of_range", f"{kind} outside {lo}..{hi} {unit}")
        return float(value), unit
    if kind in ENUM_VALUES:
        if not isinstance(value, str) or value not in ENUM_VALUES[kind]:
            raise ContractError("bad_value", f"{kind} must be one of {sorted(ENUM_VALUES[kind])}")
        return value, None
    if kind in BOOL_KINDS:
        if not isinstance(value, bool):
            raise ContractError("bad_value", f"{kind} needs true/false")
        return value, None
    if kind in STRING_KINDS:
        if not isinstance(value, str) or not 0 < len(value) <= 64:
            raise ContractError("bad_value", f"{kind} needs a dose id or code (1-64 chars)")
        return value, None
    if kind in INT_KINDS:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
            raise ContractError("bad_value", f"{kind} needs a whole number of doses left")
        return value, None
    if value is not None:
        raise ContractError("bad_value", f"{kind} carries no value")
    return None, None


_READING_KEYS = frozenset({"v", "device_id", "kind", "value", "ts", "seq", "unit"})


def parse_reading(gateway_id: str, obj: Any, now: datetime) -> Reading:
    """Validate one reading object (already JSON-decoded)."""
    if not isinstance(obj, dict):
        raise ContractError("bad_shape", "a reading must be a JSON object")
    extra = obj.keys() - _READING_KEYS
    if extra:
        raise ContractError("unknown_field", f"unknown fields {sorted(extra)[:5]}")
    device_id = obj.get("device_id")
    if not isinstance(device_id, str) or not _ID_RE.match(device_id):
        raise ContractError("bad_device_id", "device_id missing or invalid")
    try:
        kind = Kind(str(obj.get("kind")))
    except ValueError as exc:
        raise ContractError("unknown_kind", f"kind {str(obj.get('kind'))[:40]!r} is not known") from exc
    if kind is Kind.GATEWAY_STATUS:
        raise ContractError("unknown_kind", "gateway.status is only accepted on the status topic")
    seq = obj.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise ContractError("bad_seq", "seq must be a non-negative integer")
    value, unit = _check_value(kind, obj.get("value"))
    given_unit = obj.get("unit")
    if given_unit is not None and given_unit != unit:
        raise ContractError("bad_unit", f"{kind} is measured in {unit}")
    return Reading(gateway_id, device_id, kind, value, _parse_ts(obj.get("ts"), now), seq, unit)


def decode_json(payload: bytes) -> Any:
    """Decode a payload strictly: size limit, UTF-8, JSON without NaN/Infinity."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError("too_large", f"payload over {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError("not_utf8", "payload is not UTF-8") from exc

    def _no_constants(name: str) -> Any:
        raise ContractError("bad_json", f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=_no_constants)
    except ContractError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ContractError("bad_json", "payload is not valid JSON") from exc


def parse_events_payload(gateway_id: str, payload: bytes, now: datetime) -> list[Reading | ContractError]:
    """Parse an events payload into readings; one bad reading does not spoil its batch.

    Raises :class:`ContractError` when the payload as a whole is unusable.
    """
    obj = decode_json(payload)
    if not isinstance(obj, dict):
        raise ContractError("bad_shape", "payload must be a JSON object")
    if obj.get("v") != SCHEMA_VERSION:
        raise ContractError("bad_version", f"v must be {SCHEMA_VERSION}")
    if "readings" in obj:
        items = obj["readings"]
        if set(obj) - {"v", "readings"}:
            raise ContractError("unknown_field", "a batch has only v and readings")
        if not isinstance(items, list) or not items:
            raise ContractError("bad_shape", "readings must be a non-empty list")
        if len(items) > MAX_BATCH_READINGS:
            raise ContractError("too_large", f"more than {MAX_BATCH_READINGS} readings")
    else:
        items = [obj]
    out: list[Reading | ContractError] = []
    for item in items:
        try:
            out.append(parse_reading(gateway_id, item, now))
        except ContractError as err:
            out.append(err)
    return out


def parse_status_payload(gateway_id: str, payload: bytes, now: datetime) -> GatewayStatus:
    """Parse a status message: JSON ``{"v":1,"status":...,"ts":...}`` or bare ``online``/``offline``."""
    stripped = payload.strip()
    if stripped in (b"online", b"offline"):
        return GatewayStatus(gateway_id, stripped.decode(), None)
    obj = decode_json(payload)
    if not isinstance(obj, dict) or obj.get("v") != SCHEMA_VERSION:
        raise ContractError("bad_shape", "status must be {v, status, ts} or a bare online/offline")
    status = obj.get("status")
    if status not in ("online", "offline"):
        raise ContractError("bad_value", "status must be online or offline")
    ts = _parse_ts(obj["ts"], now) if "ts" in obj else None
    return GatewayStatus(gateway_id, status, ts)


def lane_of(kind: Kind | str) -> Lane:
    """Which Kafka lane an event kind travels in."""
    return Lane.URGENT if kind in URGENT_KINDS else Lane.BULK


def make_event_id(device_id: str, seq: int, ts: datetime) -> str:
    """Deterministic id: a replayed reading gets the same id, so writes stay idempotent."""
    return str(uuid.uuid5(_EVENT_NS, f"{device_id}|{seq}|{ts.isoformat()}"))


@dataclass(frozen=True, slots=True)
class Event:
    """A reading accepted into the pipeline, as it travels on Kafka (key = resident_id).

    ``late`` is set by the stream worker, never by the bridge.
    """

    event_id: str
    resident_id: str
    home_id: str
    gateway_id: str
    device_id: str
    room: str | None
    kind: str
    value: bool | float | int | str | None
    ts: datetime
    seq: int
    received_at: datetime
    unit: str | None = None
    v: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Compact JSON, fields in declaration order, ``extra`` only when set.

        Byte-identical to ``json.dumps(dataclasses.asdict(self))`` with the times as
        ISO strings (the bridge's hot path builds the same bytes; tested), without
        ``asdict``'s recursive deep copy (~40 µs an event).
        """
        d: dict[str, Any] = {
            "event_id": self.event_id,
            "resident_id": self.resident_id,
            "home_id": self.home_id,
            "gateway_id": self.gateway_id,
            "device_id": self.device_id,
            "room": self.room,
            "kind": self.kind,
            "value": self.value,
            "ts": self.ts.isoformat(),
            "seq": self.seq,
            "received_at": self.received_at.isoformat(),
            "unit": self.unit,
            "v": self.v,
        }
        if self.extra:
            d["extra"] = self.extra
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Decode an event from Kafka; anything that is not one raises :class:`ContractError`.

        The bridge validated the reading at the edge; this checks the event's shape (version,
        exactly the known fields, their JSON types, times with an offset), not value ranges.
        The stream worker's hot path: orjson, and the fields set without the frozen
        dataclass's ``__init__`` (one ``object.__setattr__`` per field).
        """
        try:
            d = _loads(raw)
        except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise ContractError("bad_json", "event is not valid JSON") from exc
        if type(d) is not dict:
            raise ContractError("bad_shape", "an event must be a JSON object")
        v = d.get("v")
        if v != SCHEMA_VERSION or type(v) is not int:
            raise ContractError("bad_version", f"event v must be {SCHEMA_VERSION}")
        keys = d.keys()
        if keys != _EVENT_WIRE_KEYS:  # the bridge writes exactly these; otherwise check the long way
            _check_event_keys(keys)
        event_id = d["event_id"]
        resident_id = d["resident_id"]
        home_id = d["home_id"]
        gateway_id = d["gateway_id"]
        device_id = d["device_id"]
        room = d["room"]
        kind = d["kind"]
        value = d["value"]
        seq = d["seq"]
        unit = d.get("unit")
        extra = d.get("extra")
        if (
            type(event_id) is not str
            or type(resident_id) is not str
            or type(home_id) is not str
            or type(gateway_id) is not str
            or type(device_id) is not str
            or type(kind) is not str
            or (room is not None and type(room) is not str)
            or (unit is not None and type(unit) is not str)
        ):
            raise ContractError("bad_field", "ids, kind, room and unit must be strings")
        if type(seq) is not int:
            raise ContractError("bad_seq", "seq must be an integer")
        if value is not None and type(value) not in _VALUE_TYPES:
            raise ContractError("bad_value", "value must be a JSON scalar")
        if extra is None:
            extra = {}
        elif type(extra) is not dict:
            raise ContractError("bad_field", "extra must be an object")
        ev: Event = _new_object(cls)
        _set_event_id(ev, event_id)
        _set_resident_id(ev, resident_id)
        _set_home_id(ev, home_id)
        _set_gateway_id(ev, gateway_id)
        _set_device_id(ev, device_id)
        _set_room(ev, room)
        _set_kind(ev, kind)
        _set_value(ev, value)
        _set_ts(ev, _event_time(d["ts"]))
        _set_seq(ev, seq)
        _set_received_at(ev, _event_time(d["received_at"]))
        _set_unit(ev, unit)
        _set_v(ev, v)
        _set_extra(ev, extra)
        return ev

    @property
    def lane(self) -> Lane:
        return lane_of(self.kind)


_loads = orjson.loads
_new_object = object.__new__
#: The fields the bridge writes, in its order (``extra`` only when set).
_EVENT_WIRE_KEYS = frozenset(
    ("event_id", "resident_id", "home_id", "gateway_id", "device_id", "room", "kind", "value", "ts", "seq",
     "received_at", "unit", "v")
)
_EVENT_REQUIRED_KEYS = _EVENT_WIRE_KEYS - {"unit"}
_EVENT_KEYS = _EVENT_WIRE_KEYS | {"extra"}
_VALUE_TYPES = frozenset({bool, int, float, str})
# The slots' own setters: a frozen dataclass's __init__ calls object.__setattr__ per field
# (~3 µs an event); these write the same slots directly (~1 µs). Only from_json uses them.
(
    _set_event_id,
    _set_resident_id,
    _set_home_id,
    _set_gateway_id,
    _set_device_id,
    _set_room,
    _set_kind,
    _set_value,
    _set_ts,
    _set_seq,
    _set_received_at,
    _set_unit,
    _set_v,
    _set_extra,
) = (getattr(Event, name).__set__ for name in Event.__slots__)
assert Event.__slots__ == (
    "event_id", "resident_id", "home_id", "gateway_id", "device_id", "room", "kind", "value", "ts", "seq",
    "received_at", "unit", "v", "extra",
), "Event's fields changed: update the setters above"


def _check_event_keys(keys: Any) -> None:
    missing = _EVENT_REQUIRED_KEYS - keys
    if missing:
        raise ContractError("missing_field", f"event lacks {sorted(missing)}")
    unknown = keys - _EVENT_KEYS
    if unknown:
        raise ContractError("unknown_field", f"unknown event fields {sorted(unknown)[:5]}")


def _event_time(raw: Any) -> datetime:
    """An event's ``ts``/``received_at``: ISO 8601 with an offset (the bridge writes UTC)."""
    if type(raw) is not str:
        raise ContractError("bad_time", "event times must be ISO 8601 strings")
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ContractError("bad_time", "event time is not ISO 8601") from exc
    if ts.tzinfo is None:
        raise ContractError("bad_time", "event time has no UTC offset")
    return ts


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
