"""The bridge's MQTT subscription: persistent session, QoS 1, acknowledged by hand.

The only file of the bridge that uses paho-mqtt. MQTT 5 is used for two of its session features: a
session expiry chosen by the bridge, and retain handling 1 (retained statuses
are replayed only when the subscription is new, not on every reconnect). The
rest of the bridge sees
:class:`InboundMessage` values and calls :meth:`GatewaySubscriber.ack` once
Kafka has everything a message turned into. Because the session is persistent
(fixed client id, ``clean_session=False``) and nothing is acknowledged early,
the broker keeps — and redelivers after a crash — every message the bridge has
not finished.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.messages import InboundMessage

log = logging.getLogger(__name__)

#: A superset of the contract's ``+/events`` and ``+/status``: a gateway publishing under a
#: wrong sub-topic is dead-lettered (``bad_topic``) instead of being ignored silently.
DEFAULT_TOPICS = ("carechain/v1/gw/#",)


class GatewaySubscriber:
    """Subscribes for the gateways' topics and hands every message to a callback (paho's thread).

    Reconnects by itself with exponential backoff (1 s .. 30 s); the broker resends
    what was not acknowledged on the previous connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_ca: Path | None = None,
        topics: Sequence[str] = DEFAULT_TOPICS,
        keepalive: int = 30,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 1000,
    ) -> None:
        self.host, self.port, self.topics = host, port, tuple(topics)
        self._on_message: Callable[[InboundMessage], None] = lambda _msg: None
        self._connected = threading.Event()
        self._connection = 0
        self.connections = 0
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._keepalive = keepalive
        # The broker keeps the session (subscriptions and queued messages) this long after a
        # disconnect; ReceiveMaximum bounds the unacknowledged messages in flight to the bridge.
        self._connect_props = Properties(PacketTypes.CONNECT)
        self._connect_props.SessionExpiryInterval = session_expiry_s
        self._connect_props.ReceiveMaximum = receive_maximum
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls_ca is not None:
            self._client.tls_set(ca_certs=str(tls_ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe
        self._subscribe_mid: int | None = None

    # paho callbacks (network thread) -------------------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connect refused: %s", reason)
            return
        self._connection += 1
        self.connections += 1
        # Subscribe on every connect (a crash between CONNECT and SUBACK leaves a session without
        # subscriptions); retain handling 1 replays retained statuses only for a new subscription.
        opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        _, self._subscribe_mid = client.subscribe([(t, opts) for t in self.topics])
        log.info("MQTT connected to %s:%d (session present: %s)", self.host, self.port, flags.session_present)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            # Not ready: without the subscription nothing would arrive. Operators see why.
            log.error("MQTT subscription refused: %s", ", ".join(refused))
            return
        self._connected.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if reason.is_failure:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic not UTF-8>"  # dead-lettered as bad_topic downstream
        self._on_message(
            InboundMessage(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), bool(msg.dup),
                           self._connection)
        )

    # bridge side ----------------------------------------------------------------------

    def start(self, on_message: Callable[[InboundMessage], None]) -> None:
        """Connect in the background (paho's network thread retries until it succeeds);
        ``on_message`` is called from that thread for every message."""
        self._on_message = on_message
        self._client.connect_async(
            self.host, self.port, keepalive=self._keepalive, clean_start=False, properties=self._connect_props
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and the broker confirmed the subscription (SUBACK)."""
        return self._connected.wait(timeout)

    def ack(self, msg: InboundMessage) -> bool:
        """Acknowledge ``msg`` (QoS 1 PUBACK). False when its connection is gone: the broker
        redelivers it, so acking a packet id of an older connection could ack the wrong one."""
        if msg.qos == 0:
            return True
        if msg.connection != self._connection or not self._connected.is_set():
            return False
        rc = self._client.ack(msg.mid, msg.qos)
        return rc == mqtt.MQTT_ERR_SUCCESS

    def stop(self) -> None:
        """Disconnect cleanly; unacknowledged messages stay with the broker for the next start."""
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()


def forget_session(host: str, port: int, client_id: str, timeout: float = 10.0) -> bool:
    """End a persistent session at the broker (tests and benchmarks clean up after themselves).

    True when the broker accepted the clean connection that replaces the session.
    """
    done = threading.Event()
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda *_args: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(host, port, keepalive=10, clean_start=True, properties=props)
    client.loop_start()
    try:
        return done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
