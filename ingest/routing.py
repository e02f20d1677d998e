"""Where one MQTT message goes: a Kafka lane, the dead-letter topic, or nowhere.

:func:`route` is the whole decision of the ingest bridge and is pure: it takes
the MQTT topic, the raw payload, a snapshot of the device registry and the
time of receipt, and returns a list of outputs in the order they must be
written. It imports no MQTT, Kafka or database library, so the embedded demo
reuses it with an in-process queue, and the unit tests call it directly.

Decisions (docs/ingest.md):

* a valid reading of a registered, consenting device -> :class:`Forward` in the
  lane of its kind (:func:`carechain.events.lane_of`), keyed by resident id;
* a home without monitoring consent -> :class:`Discarded`: counted, never
  written anywhere (CARE-RULES.md, "Sensors in the home");
* anything else -> :class:`DeadLetter` with a short reason code, the raw payload
  (of the one reading, when one reading of a batch is bad), the MQTT topic and
  the time;
* gateway status (JSON or the bare last will) -> a ``gateway.status`` event on
  the urgent lane for every resident behind the gateway;
* ``gateway.heartbeat`` -> the bulk lane (``lane_of``): it is periodic telemetry
  and must stay in order with the readings it vouches for.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from carechain.events import (
    _EVENT_NS,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    ContractError,
    Event,
    GatewayStatus,
    Kind,
    Lane,
    Reading,
    decode_json,
    lane_of,
    make_event_id,
    parse_events_payload,
    parse_status_payload,
    parse_topic,
)

#: Reason of a reading discarded because its home has no monitoring consent.
NO_CONSENT = "no_monitoring_consent"


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """One row of the ``device_registry`` view."""

    device_id: str
    gateway_id: str
    home_id: str
    resident_id: str
    room: str | None
    device_kind: str
    monitoring_active: bool


@dataclass(frozen=True, slots=True)
class GatewayResident:
    """A resident behind a gateway (a home may have more than one)."""

    home_id: str
    resident_id: str
    room: str | None
    monitoring_active: bool


class RegistrySnapshot:
    """An immutable view of the registry: device -> home/resident, gateway -> residents.

    Built once per (re)load and swapped whole, so a reader never sees half a refresh.
    """

    __slots__ = ("_devices", "_gateways", "loaded_at")

    def __init__(self, devices: Iterable[RegisteredDevice], loaded_at: datetime | None = None) -> None:
        self._devices: dict[str, RegisteredDevice] = {}
        rows_by_gateway: dict[str, list[RegisteredDevice]] = {}
        for d in devices:
            self._devices[d.device_id] = d
            rows_by_gateway.setdefault(d.gateway_id, []).append(d)
        self._gateways: dict[str, tuple[GatewayResident, ...]] = {
            gw: _residents_behind(gw, rows) for gw, rows in rows_by_gateway.items()
        }
        self.loaded_at = loaded_at

    def device(self, device_id: str) -> RegisteredDevice | None:
        """The registered device, or None."""
        return self._devices.get(device_id)

    def residents_behind(self, gateway_id: str) -> tuple[GatewayResident, ...]:
        """The residents whose devices report through this gateway (empty when unknown)."""
        return self._gateways.get(gateway_id, ())

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def devices(self) -> Mapping[str, RegisteredDevice]:
        """Every registered device by id (read-only view)."""
        return self._devices


def _residents_behind(gateway_id: str, rows: list[RegisteredDevice]) -> tuple[GatewayResident, ...]:
    # The gateway's own row (simulator and seed register it as a device) says where it is;
    # otherwise every device behind it counts. A resident is monitored through the gateway
    # when any of their devices is: then its availability matters to their monitor.
    own = [r for r in rows if r.device_id == gateway_id] or rows
    out: dict[str, GatewayResident] = {}
    for r in own:
        prev = out.get(r.resident_id)
        active = r.monitoring_active or (prev is not None and prev.monitoring_active)
        room = prev.room if prev is not None and prev.room else r.room
        out[r.resident_id] = GatewayResident(r.home_id, r.resident_id, room, active)
    return tuple(out[k] for k in sorted(out))


@dataclass(frozen=True, slots=True)
class Forward:
    """An event to produce: ``value`` is :meth:`Event.to_json`, ``key`` the resident id."""

    lane: Lane
    key: str
    value: bytes
    device_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that cannot enter the pipeline, with why. Serialised per docs/contracts.md."""

    reason: str
    detail: str
    payload: bytes
    mqtt_topic: str
    received_at: datetime
    gateway_id: str | None = None

    def to_json(self) -> bytes:
        """``{"v","reason","detail","mqtt_topic","payload_b64","received_at"}`` (+ ``payload_bytes``).

        A payload over the contract's size limit keeps only its first
        ``MAX_PAYLOAD_BYTES`` bytes (``payload_bytes`` tells the original size), so a
        hostile message cannot exceed Kafka's request size and block the bridge.
        """
        raw = self.payload[:MAX_PAYLOAD_BYTES]
        return json.dumps(
            {
                "v": SCHEMA_VERSION,
                "reason": self.reason,
                "detail": self.detail,
                "mqtt_topic": self.mqtt_topic[:512],
                "payload_b64": base64.b64encode(raw).decode("ascii"),
                "payload_bytes": len(self.payload),
                "received_at": self.received_at.isoformat(),
            },
            separators=(",", ":"),
        ).encode()

    @property
    def key(self) -> str | None:
        """The Kafka key of a dead letter: the gateway id from the topic, when there is one."""
        return self.gateway_id


@dataclass(frozen=True, slots=True)
class Discarded:
    """A reading of a home without monitoring consent: counted, stored nowhere."""

    gateway_id: str
    home_id: str
    reason: str = NO_CONSENT


Output = Forward | DeadLetter | Discarded


@dataclass(slots=True)
class _Message:
    """Per-message context shared by the readings of one payload."""

    topic: str
    payload: bytes
    now: datetime
    received_iso: str
    gateway_id: str
    items: list[Any] | None = field(default=None)


def event_json(ev: Event) -> bytes:
    """Exactly :meth:`Event.to_json`, without ``dataclasses.asdict``'s deep copy.

    ``asdict`` costs ~40 µs per event, most of the bridge's per-reading budget; the
    unit tests assert byte-equality with ``Event.to_json`` for every kind.
    """
    return _encode(ev, ev.received_at.isoformat())


def _encode(ev: Event, received_iso: str) -> bytes:
    d: dict[str, Any] = {
        "event_id": ev.event_id,
        "resident_id": ev.resident_id,
        "home_id": ev.home_id,
        "gateway_id": ev.gateway_id,
        "device_id": ev.device_id,
        "room": ev.room,
        "kind": ev.kind,
        "value": ev.value,
        "ts": ev.ts.isoformat(),
        "seq": ev.seq,
        "received_at": received_iso,
        "unit": ev.unit,
        "v": ev.v,
    }
    if ev.extra:
        d["extra"] = ev.extra
    return json.dumps(d, separators=(",", ":")).encode()


def route(
    mqtt_topic: str,
    payload: bytes,
    registry: RegistrySnapshot,
    now: datetime,
    *,
    retained: bool = False,
) -> list[Output]:
    """Decide what becomes of one MQTT message; outputs in the order they must be written.

    ``now`` is the (aware, UTC) time of receipt; ``retained`` is the MQTT retain flag
    (a retained status replayed on subscribe is marked so in the event). Never raises
    on bad input: a :class:`ContractError` becomes a :class:`DeadLetter`.
    """
    try:
        gateway_id, channel = parse_topic(mqtt_topic)
    except ContractError as err:
        return [DeadLetter(err.reason, err.detail, payload, mqtt_topic, now, None)]
    msg = _Message(mqtt_topic, payload, now, now.isoformat(), gateway_id)
    if channel == "status":
        return _route_status(msg, registry, retained)
    try:
        parsed = parse_events_payload(gateway_id, payload, now)
    except ContractError as err:
        return [DeadLetter(err.reason, err.detail, payload, mqtt_topic, now, gateway_id)]
    out: list[Output] = []
    for index, item in enumerate(parsed):
        if isinstance(item, ContractError):
            out.append(_reading_dead_letter(msg, index, len(parsed), item.reason, item.detail))
        else:
            _route_reading(msg, index, len(parsed), item, registry, out)
    return out


def _route_reading(
    msg: _Message, index: int, count: int, r: Reading, registry: RegistrySnapshot, out: list[Output]
) -> None:
    device = registry.device(r.device_id)
    if device is None:
        if r.device_id == msg.gateway_id and r.kind is Kind.GATEWAY_HEARTBEAT:
            # A gateway that is not registered as a device of its own still heartbeats for its homes.
            residents = registry.residents_behind(msg.gateway_id)
            if residents:
                for res in residents:
                    _emit(msg, out, res.home_id, res.resident_id, res.room, res.monitoring_active, r, {})
                return
        out.append(_reading_dead_letter(msg, index, count, "unknown_device", "device is not in the registry"))
        return
    if device.gateway_id != msg.gateway_id:
        out.append(
            _reading_dead_letter(msg, index, count, "device_not_on_gateway", "device is registered to another gateway")
        )
        return
    _emit(msg, out, device.home_id, device.resident_id, device.room, device.monitoring_active, r, {})


def _emit(
    msg: _Message,
    out: list[Output],
    home_id: str,
    resident_id: str,
    room: str | None,
    monitoring_active: bool,
    r: Reading,
    extra: dict[str, Any],
) -> None:
    if not monitoring_active:
        out.append(Discarded(msg.gateway_id, home_id))
        return
    if extra:
        ev = Event(
            event_id=make_event_id(r.device_id, r.seq, r.ts),
            resident_id=resident_id,
            home_id=home_id,
            gateway_id=msg.gateway_id,
            device_id=r.device_id,
            room=room,
            kind=r.kind.value,
            value=r.value,
            ts=r.ts,
            seq=r.seq,
            received_at=msg.now,
            unit=r.unit,
            extra=extra,
        )
        value = _encode(ev, msg.received_iso)
    else:
        value = _encode_reading(msg, resident_id, home_id, room, r)
    out.append(Forward(lane_of(r.kind), resident_id, value, r.device_id, r.seq))


@lru_cache(maxsize=1 << 16)
def _identity_json(resident_id: str, home_id: str, gateway_id: str, device_id: str, room: str | None) -> str:
    """The constant middle of every event of one device, JSON-encoded once."""
    d = {"resident_id": resident_id, "home_id": home_id, "gateway_id": gateway_id, "device_id": device_id,
         "room": room}
    return json.dumps(d, separators=(",", ":"))[1:-1]


def _value_json(value: bool | float | int | str | None) -> str:
    # Exactly what json.dumps writes for the value types the contract allows (finite floats only).
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is float:
        return float.__repr__(value)
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value)


_NS_BYTES = _EVENT_NS.bytes
#: The RFC 4122 variant bits applied to the 17th hex digit of a name-based UUID.
_VARIANT = {c: "89ab"[int(c, 16) & 0x3] for c in "0123456789abcdef"}


def fast_event_id(device_id: str, seq: int, ts_iso: str) -> str:
    """Exactly :func:`carechain.events.make_event_id` (``ts_iso`` = ``ts.isoformat()``), without
    building a :class:`uuid.UUID`: SHA-1 of namespace + name, version 5, RFC 4122 variant.

    ``uuid.uuid5`` and ``str(UUID)`` cost ~4 µs a reading, a fifth of the bridge's routing;
    this costs ~1 µs. The unit tests assert equality with ``make_event_id``.
    """
    h = hashlib.sha1(_NS_BYTES + f"{device_id}|{seq}|{ts_iso}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _encode_reading(msg: _Message, resident_id: str, home_id: str, room: str | None, r: Reading) -> bytes:
    """:meth:`Event.to_json` of the event this reading becomes (byte-identical; tested), built
    from pre-encoded pieces: this is the bridge's per-reading hot path."""
    ts_iso = r.ts.isoformat()
    return (
        f'{{"event_id":"{fast_event_id(r.device_id, r.seq, ts_iso)}",'
        f"{_identity_json(resident_id, home_id, msg.gateway_id, r.device_id, room)},"
        f'"kind":"{r.kind.value}","value":{_value_json(r.value)},"ts":"{ts_iso}","seq":{r.seq},'
        f'"received_at":"{msg.received_iso}","unit":{_value_json(r.unit)},"v":{SCHEMA_VERSION}}}'
    ).encode()


def _reading_dead_letter(msg: _Message, index: int, count: int, reason: str, detail: str) -> DeadLetter:
    """Dead-letter one reading; for a batch, only that reading's JSON is kept as payload."""
    if count == 1:
        return DeadLetter(reason, detail, msg.payload, msg.topic, msg.now, msg.gateway_id)
    if msg.items is None:
        # Only on this (rare) path is the batch decoded a second time to recover the raw item.
        msg.items = list(decode_json(msg.payload)["readings"])
    raw = json.dumps(msg.items[index], separators=(",", ":"), ensure_ascii=False).encode()
    return DeadLetter(reason, f"reading {index}: {detail}", raw, msg.topic, msg.now, msg.gateway_id)


def _route_status(msg: _Message, registry: RegistrySnapshot, retained: bool) -> list[Output]:
    try:
        status = parse_status_payload(msg.gateway_id, msg.payload, msg.now)
    except ContractError as err:
        return [DeadLetter(err.reason, err.detail, msg.payload, msg.topic, msg.now, msg.gateway_id)]
    residents = registry.residents_behind(msg.gateway_id)
    if not residents:
        return [DeadLetter("unknown_gateway", "gateway is not in the registry", msg.payload, msg.topic, msg.now,
                           msg.gateway_id)]
    reading, extra = status_reading(status, msg.now)
    if retained:
        # Replayed by the broker on (re)subscribe: the state, not a new transition.
        extra["retained"] = True
    out: list[Output] = []
    for res in residents:
        _emit(msg, out, res.home_id, res.resident_id, res.room, res.monitoring_active, reading, dict(extra))
    return out


def status_reading(status: GatewayStatus, now: datetime) -> tuple[Reading, dict[str, Any]]:
    """A gateway status as a reading of the gateway itself (``device_id`` = gateway id).

    The bare last will carries no time, so its event time is the time of receipt
    (marked ``extra.ts_source = "received"``); ``seq`` is the event time in
    milliseconds, so a status republished with the same time gets the same event id.
    """
    extra: dict[str, Any] = {}
    ts = status.ts
    if ts is None:
        ts = now
        extra["ts_source"] = "received"
    reading = Reading(status.gateway_id, status.gateway_id, Kind.GATEWAY_STATUS, status.status, ts,
                      int(ts.timestamp() * 1000))
    return reading, extra


def internal_error(mqtt_topic: str, payload: bytes, now: datetime, exc: BaseException) -> DeadLetter:
    """The dead letter for a message whose handling raised: only the exception's class is kept."""
    gateway_id: str | None
    try:
        gateway_id = parse_topic(mqtt_topic)[0]
    except ContractError:
        gateway_id = None
    return DeadLetter("internal_error", type(exc).__name__, payload, mqtt_topic, now, gateway_id)
