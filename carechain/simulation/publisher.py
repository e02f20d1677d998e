"""Simulated gateways on a real MQTT broker (paho-mqtt; the only MQTT import of the simulator).

One paho client per gateway, client id = gateway id, QoS 1, a retained
``offline`` last will on the gateway's status topic. A ``drop`` message closes
the socket without DISCONNECT, so the broker itself publishes the will; the
next message reconnects the gateway.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from carechain.simulation.gateway import KEEPALIVE_S, GatewayMessage, status_topic

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
#: A gateway that could not connect tries again after this long (its messages meanwhile are lost).
RETRY_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None


class SimClock:
    """Simulated time: ``speed`` times faster than the wall clock until it catches up with it.

    An accelerated run starts in the past (gateways may not report the future),
    replays it fast and then goes on in real time.
    """

    def __init__(self, sim_start: float, speed: float = 1.0, wall_start: float | None = None) -> None:
        self.sim_start = sim_start
        self.speed = max(speed, 1e-6)
        self.wall_start = time.time() if wall_start is None else wall_start

    def now(self, wall: float | None = None) -> float:
        w = time.time() if wall is None else wall
        return min(self.sim_start + (w - self.wall_start) * self.speed, max(w, self.sim_start))

    def wall_for(self, sim_t: float) -> float:
        """When (wall clock) simulated time ``sim_t`` comes."""
        accelerated = self.wall_start + (sim_t - self.sim_start) / self.speed
        return accelerated if sim_t <= accelerated else sim_t


class GatewayConnection:
    """One gateway's MQTT session."""

    def __init__(self, gateway_id: str, broker: BrokerAddress) -> None:
        self.gateway_id = gateway_id
        self.broker = broker
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.gateway_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        c.will_set(status_topic(self.gateway_id), b"offline", qos=1, retain=True)
        if self.broker.username:
            c.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls_ca:
            c.tls_set(ca_certs=str(self.broker.tls_ca), cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(1, 10)
        c.connect(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        c.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not c.is_connected():
            if time.monotonic() > deadline:
                c.loop_stop()
                with contextlib.suppress(OSError):
                    c.disconnect()
                raise ConnectionError(f"no MQTT CONNACK from {self.broker.host}:{self.broker.port}")
            time.sleep(0.01)
        self.client = c

    def publish(self, msg: GatewayMessage) -> mqtt.MQTTMessageInfo:
        if self.client is None:
            self.connect()
        assert self.client is not None
        return self.client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)

    def drop(self) -> None:
        """Die without a DISCONNECT: the broker publishes the last will."""
        c, self.client = self.client, None
        if c is None:
            return
        c.loop_stop()
        sock = c.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """A clean shutdown: a retained offline status, then DISCONNECT (the will is not sent)."""
        c, self.client = self.client, None
        if c is None:
            return
        with contextlib.suppress(RuntimeError, ValueError):
            c.publish(status_topic(self.gateway_id), b"offline", qos=1, retain=True).wait_for_publish(2)
        c.disconnect()
        c.loop_stop()


@dataclass(slots=True)
class PublishStats:
    messages: int = 0
    readings: int = 0
    drops: int = 0
    failed: int = 0  # messages not published: the broker could not be reached
    sim_time: float = 0.0
    lag_s: float = 0.0  # how far behind the clock the publisher is


def publish_stream(
    messages: Iterable[GatewayMessage],
    broker: BrokerAddress,
    clock: SimClock,
    stop: threading.Event,
    stats: PublishStats | None = None,
    on_progress: Callable[[PublishStats], None] | None = None,
    progress_every_s: float = 2.0,
) -> PublishStats:
    """Publish the (time-ordered) messages as their gateways, paced by ``clock``, until ``stop``."""
    stats = stats or PublishStats()
    conns: dict[str, GatewayConnection] = {}
    retry_at: dict[str, float] = {}
    last_progress = time.time()
    pending: list[mqtt.MQTTMessageInfo] = []
    try:
        for msg in messages:
            if stop.is_set():
                break
            wait = clock.wall_for(msg.at) - time.time()
            while wait > 0 and not stop.is_set():
                stop.wait(min(wait, 0.5))
                wait = clock.wall_for(msg.at) - time.time()
            if stop.is_set():
                break
            conn = conns.get(msg.gateway_id)
            if conn is None:
                conn = conns[msg.gateway_id] = GatewayConnection(msg.gateway_id, broker)
            if msg.action == "will":
                continue  # the real broker sends it
            if msg.action == "drop":
                conn.drop()
                stats.drops += 1
                continue
            if retry_at.get(msg.gateway_id, 0.0) > time.time():
                stats.failed += 1
                continue
            try:
                info = conn.publish(msg)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise ConnectionError(mqtt.error_string(info.rc))
                pending.append(info)
            except (OSError, ValueError, RuntimeError) as exc:
                log.warning("gateway %s could not publish: %s", msg.gateway_id, exc)
                conn.drop()
                retry_at[msg.gateway_id] = time.time() + RETRY_AFTER_S
                stats.failed += 1
                continue
            stats.messages += 1
            stats.readings += msg.readings
            stats.sim_time = msg.at
            if len(pending) > 1000:
                pending = [p for p in pending if not p.is_published()]
            now = time.time()
            if on_progress is not None and now - last_progress >= progress_every_s:
                stats.lag_s = max(0.0, now - clock.wall_for(msg.at))
                on_progress(stats)
                last_progress = now
    finally:
        deadline = time.time() + 5
        for p in pending:
            left = deadline - time.time()
            if left <= 0:
                break
            with contextlib.suppress(RuntimeError, ValueError):
                p.wait_for_publish(left)
        for conn in conns.values():
            conn.close()
    return stats
