"""Small paho clients for the broker tests: a collecting subscriber and a QoS 1 publisher."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def new_client(prefix: str, username: str | None = None, password: str | None = None,
               ca_cert: Path | None = None, clean: bool = True, client_id: str | None = None,
               protocol: int = mqtt.MQTTv311) -> mqtt.Client:
    """A paho client (not yet connected)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{prefix}-{uuid.uuid4().hex[:10]}",
                         clean_session=clean if protocol != mqtt.MQTTv5 else None, protocol=protocol)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if username is not None:
        client.username_pw_set(username, password)
    if ca_cert is not None:
        client.tls_set(ca_certs=str(ca_cert))
    return client


def connect(client: mqtt.Client, host: str, port: int, timeout: float = 10.0) -> None:
    """Connect and wait for CONNACK success (raises ConnectionError if refused)."""
    result: dict[str, Any] = {}
    ready = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result["reason"] = reason
        ready.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=30)
    client.loop_start()
    if not ready.wait(timeout):
        stop(client)
        raise ConnectionError("no CONNACK")
    if result["reason"].is_failure:
        stop(client)
        raise ConnectionError(f"refused: {result['reason']}")


def stop(client: mqtt.Client) -> None:
    """Disconnect, stop the network thread, and drop callbacks.

    Callbacks bound to a Collector make a reference cycle; the garbage collector
    would then finalise paho's internal socket pair before the client closes it
    (a ResourceWarning, an error in this suite). Without the cycle the client is
    freed at once and closes its sockets itself.
    """
    client.disconnect()
    client.loop_stop()
    for name in ("on_connect", "on_message", "on_subscribe", "on_publish", "on_disconnect"):
        setattr(client, name, None)


class Collector:
    """A subscriber that records every payload it receives (optionally slowly)."""

    def __init__(self, client: mqtt.Client, delay_s: float = 0.0) -> None:
        self.client = client
        self.delay_s = delay_s
        self.payloads: list[bytes] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        client.on_message = self._on_message
        client.on_subscribe = lambda *_a: self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.lock:
            self.payloads.append(bytes(msg.payload))

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for SUBACK."""
        self.subscribed.clear()
        self.client.subscribe(topic, qos=qos)
        if not self.subscribed.wait(10):
            raise TimeoutError(f"no SUBACK for {topic}")

    def received(self) -> list[bytes]:
        """A copy of what arrived so far."""
        with self.lock:
            return list(self.payloads)

    def wait_for(self, payload: bytes, timeout: float = 10.0) -> bool:
        """True once payload has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if payload in self.received():
                return True
            time.sleep(0.02)
        return False
