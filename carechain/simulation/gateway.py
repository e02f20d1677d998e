"""A home gateway: batches its devices' readings into MQTT messages, heartbeats, drops out.

:func:`gateway_messages` turns a home's readings into what its gateway would
publish, in the exact wire format of :mod:`carechain.events`: every 15 s a
batch of the pending telemetry plus a ``gateway.heartbeat``; urgent kinds
(fall, alarm, medication robot) at once; a retained ``online`` status at start.
A planned outage is a silence: an ungraceful ``drop``, the broker's last will
(``offline``, retained) a keepalive and a half later, and on return ``online``
and, when the gateway kept them, the buffered readings (backfill). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from carechain.events import MAX_BATCH_READINGS, TOPIC_PREFIX, URGENT_KINDS, Kind
from carechain.simulation.behaviour import SimReading
from carechain.simulation.homes import HomeConfig
from carechain.simulation.scenarios import Incident, IncidentType

HEARTBEAT_S = 15.0
#: MQTT keepalive of a simulated gateway; the broker sends the will after 1.5 x this.
KEEPALIVE_S = 20
WILL_DELAY_S = 1.5 * KEEPALIVE_S
#: Largest batch a simulated gateway sends (well under the contract's limit).
BATCH_LIMIT = min(500, MAX_BATCH_READINGS)


@dataclass(frozen=True, slots=True)
class GatewayMessage:
    """What a gateway does at time ``at``.

    ``action`` is ``publish`` (the gateway publishes), ``drop`` (its connection dies
    without a DISCONNECT) or ``will`` (the broker publishes its last will; a live
    publisher leaves that to the real broker).
    """

    at: float  # seconds since the epoch, UTC
    gateway_id: str
    topic: str
    payload: bytes
    retain: bool = False
    action: str = "publish"
    readings: int = 0


def events_topic(gateway_id: str) -> str:
    return f"{TOPIC_PREFIX}{gateway_id}/events"


def status_topic(gateway_id: str) -> str:
    return f"{TOPIC_PREFIX}{gateway_id}/status"


def _iso(t: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")


def status_payload(status: str, t: float, tz: ZoneInfo) -> bytes:
    return json.dumps({"v": 1, "status": status, "ts": _iso(t, tz)}, separators=(",", ":")).encode()


class _Sequencer:
    """Per-device sequence numbers: milliseconds since the epoch, strictly increasing.

    Derived from time, so any slice of a day gets the same numbers and a restarted
    simulator never reuses one.
    """

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def next(self, device_id: str, t: float) -> int:
        seq = max(int(t * 1000), self.last.get(device_id, -1) + 1)
        self.last[device_id] = seq
        return seq


def _reading_obj(r: SimReading, seq: int, tz: ZoneInfo) -> dict[str, object]:
    return {"v": 1, "device_id": r.device_id, "kind": r.kind.value, "value": r.value, "ts": _iso(r.t, tz), "seq": seq}


def _batch(objs: Sequence[dict[str, object]]) -> bytes:
    if len(objs) == 1:
        return json.dumps(objs[0], separators=(",", ":")).encode()
    return json.dumps({"v": 1, "readings": list(objs)}, separators=(",", ":")).encode()


def outages(incidents: Sequence[Incident]) -> list[tuple[float, float, bool]]:
    """(start, end, backfill) of the planned gateway outages."""
    return sorted(
        (i.start.timestamp(), (i.start + i.duration).timestamp(), bool(i.detail.get("backfill")))
        for i in incidents
        if i.type is IncidentType.GATEWAY_OFFLINE
    )


def gateway_messages(
    home: HomeConfig,
    readings: Sequence[SimReading],
    start: datetime,
    end: datetime,
    incidents: Sequence[Incident] = (),
    announce: bool = True,
) -> Iterator[GatewayMessage]:
    """The messages the home's gateway sends in ``[start, end)``, in time order.

    ``announce`` publishes the retained ``online`` status first (a gateway that
    starts); a later slice of the same run passes False. Readings still pending
    at ``end`` are flushed at ``end``.
    """
    tz = ZoneInfo(home.plan.timezone)
    gw = home.layout.gateway_id
    ev_topic, st_topic = events_topic(gw), status_topic(gw)
    seqs = _Sequencer()
    lo, hi = start.timestamp(), end.timestamp()
    down = [o for o in outages(incidents) if o[1] > lo]
    phase = home.profile.heartbeat_phase_s

    def beat_after(t: float) -> float:
        # Heartbeats keep one grid (phase per gateway), whatever slice or outage came before.
        nb = t + ((phase - t) % HEARTBEAT_S)
        return nb if nb > t else nb + HEARTBEAT_S

    next_beat = beat_after(lo - 1e-9)
    pending: list[dict[str, object]] = []
    buffered: list[dict[str, object]] = []
    outage_i = 0
    offline_until: float | None = None
    i = 0
    n = len(readings)
    if down and down[0][0] <= lo:
        # The slice starts in the middle of an outage.
        offline_until = down[0][1]
        outage_i = 1
        while i < n and readings[i].t < offline_until:
            r = readings[i]
            if down[0][2]:
                buffered.append(_reading_obj(r, seqs.next(r.device_id, r.t), tz))
            i += 1
        next_beat = beat_after(offline_until)
    elif announce:
        yield GatewayMessage(lo, gw, st_topic, status_payload("online", lo, tz), retain=True)

    def flush(at: float, items: list[dict[str, object]]) -> Iterator[GatewayMessage]:
        for k in range(0, len(items), BATCH_LIMIT):
            chunk = items[k : k + BATCH_LIMIT]
            yield GatewayMessage(at, gw, ev_topic, _batch(chunk), readings=len(chunk))

    while True:
        t_read = readings[i].t if i < n else float("inf")
        t_down = down[outage_i][0] if outage_i < len(down) else float("inf")
        t_up = offline_until if offline_until is not None else float("inf")
        t = min(t_read, next_beat, t_down, t_up)
        if t >= hi:
            if pending and offline_until is None:
                yield from flush(hi, pending)
            break
        if t == t_up:
            # Back online: status first, then what the gateway kept while it was away.
            yield GatewayMessage(t, gw, st_topic, status_payload("online", t, tz), retain=True)
            yield from flush(t, buffered)
            buffered = []
            offline_until = None
            next_beat = beat_after(t)
            continue
        if t == t_down:
            a, b, backfill = down[outage_i]
            outage_i += 1
            if pending:
                yield from flush(a, pending)
                pending = []
            yield GatewayMessage(a, gw, st_topic, b"", action="drop")
            if a + WILL_DELAY_S < min(b, hi):
                yield GatewayMessage(a + WILL_DELAY_S, gw, st_topic, b"offline", retain=True, action="will")
            offline_until = b
            buffering = backfill
            # Readings made while offline are kept (backfill) or lost.
            while i < n and readings[i].t < b:
                r = readings[i]
                if buffering and r.t < hi:
                    buffered.append(_reading_obj(r, seqs.next(r.device_id, r.t), tz))
                i += 1
            next_beat = beat_after(b)
            continue
        if t == t_read:
            r = readings[i]
            i += 1
            obj = _reading_obj(r, seqs.next(r.device_id, r.t), tz)
            if r.kind in URGENT_KINDS:
                yield GatewayMessage(r.t, gw, ev_topic, _batch([obj]), readings=1)
            else:
                pending.append(obj)
                if len(pending) >= BATCH_LIMIT:
                    yield from flush(r.t, pending)
                    pending = []
            continue
        beat = {
            "v": 1,
            "device_id": gw,
            "kind": Kind.GATEWAY_HEARTBEAT.value,
            "value": None,
            "ts": _iso(t, tz),
            "seq": seqs.next(gw, t),
        }
        pending.append(beat)
        yield from flush(t, pending)
        pending = []
        next_beat = beat_after(t)


def utc(t: float) -> datetime:
    """A message time as an aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)
