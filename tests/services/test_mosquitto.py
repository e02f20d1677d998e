"""The harness's Mosquitto: ACL of the deployment, TLS, dynamic accounts, queues that lose nothing."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from carechain.services.broker_accounts import BrokerAccounts
from carechain.services.mosquitto import PROVISIONED_PORT, SECURE_PORT, TEST_ACCOUNTS, TLS_PORT, ca_cert_path
from carechain.settings import Settings
from tests.services.mqtt_clients import Collector, connect, new_client, stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOST = "127.0.0.1"


def _bridge(port: int = SECURE_PORT, settings: Settings | None = None) -> Collector:
    ca = ca_cert_path(settings) if settings is not None and port == TLS_PORT else None
    client = new_client("acl-bridge", "bridge", TEST_ACCOUNTS["bridge"], ca_cert=ca)
    collector = Collector(client)
    connect(client, HOST, port)
    return collector


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v3.1.1", "v5"])
def test_gateway_cannot_publish_under_another_gateways_id(mosquitto: Settings, protocol: int) -> None:
    nonce = uuid.uuid4().hex
    bridge = _bridge()
    bridge.subscribe("carechain/v1/gw/+/#")
    gw = new_client("acl-gw", "gw-test-1", TEST_ACCOUNTS["gw-test-1"], protocol=protocol)
    puback: dict[int, int] = {}
    gw.on_publish = lambda _c, _u, mid, reason, _p: puback.__setitem__(mid, reason.value)
    connect(gw, HOST, SECURE_PORT)
    try:
        forged = f"forged-{nonce}".encode()
        own = f"own-{nonce}".encode()
        # The forged one goes first: if the broker let it through it would arrive before the allowed one.
        info = gw.publish("carechain/v1/gw/gw-test-2/events", forged, qos=1)
        info.wait_for_publish(10)
        gw.publish("carechain/v1/gw/gw-test-1/events", own, qos=1).wait_for_publish(10)
        assert bridge.wait_for(own), "the gateway's own publish never reached the bridge"
        time.sleep(0.3)
        assert forged not in bridge.received(), "the broker delivered a publish under another gateway's id"
        if protocol == mqtt.MQTTv5:
            # MQTT 5 also tells the gateway: PUBACK reason 0x87 "Not authorized" (3.1.1 has no way to).
            assert puback[info.mid] == 0x87
    finally:
        stop(gw)
        stop(bridge.client)


def test_gateway_cannot_read_other_gateways(mosquitto: Settings) -> None:
    nonce = uuid.uuid4().hex.encode()
    spy = Collector(new_client("acl-spy", "gw-test-2", TEST_ACCOUNTS["gw-test-2"]))
    connect(spy.client, HOST, SECURE_PORT)
    gw = new_client("acl-gw1", "gw-test-1", TEST_ACCOUNTS["gw-test-1"])
    connect(gw, HOST, SECURE_PORT)
    bridge = _bridge()
    try:
        spy.subscribe("carechain/v1/gw/#")
        bridge.subscribe("carechain/v1/gw/gw-test-1/#")
        gw.publish("carechain/v1/gw/gw-test-1/events", nonce, qos=1).wait_for_publish(10)
        assert bridge.wait_for(nonce)
        time.sleep(0.2)
        assert nonce not in spy.received()
    finally:
        for c in (gw, spy.client, bridge.client):
            stop(c)


def test_wrong_password_is_refused(mosquitto: Settings) -> None:
    client = new_client("acl-bad", "gw-test-1", "not-the-password")
    with pytest.raises(ConnectionError):
        connect(client, HOST, SECURE_PORT)


def test_tls_listener_accepts_a_client_that_trusts_the_ca(mosquitto: Settings) -> None:
    nonce = uuid.uuid4().hex.encode()
    bridge = _bridge(TLS_PORT, mosquitto)
    gw = new_client("tls-gw", "gw-test-1", TEST_ACCOUNTS["gw-test-1"], ca_cert=ca_cert_path(mosquitto))
    connect(gw, HOST, TLS_PORT)
    try:
        bridge.subscribe("carechain/v1/gw/gw-test-1/#")
        gw.publish("carechain/v1/gw/gw-test-1/events", nonce, qos=1).wait_for_publish(10)
        assert bridge.wait_for(nonce)
    finally:
        stop(gw)
        stop(bridge.client)


def test_tls_listener_is_not_trusted_without_the_ca(mosquitto: Settings) -> None:
    context = ssl.create_default_context()  # system CAs only: our self-signed CA is unknown
    with socket.create_connection((HOST, TLS_PORT), timeout=5) as raw, pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname=HOST).close()
    with socket.create_connection((HOST, TLS_PORT), timeout=5) as raw:
        trusted = ssl.create_default_context(cafile=str(ca_cert_path(mosquitto)))
        with trusted.wrap_socket(raw, server_hostname=HOST) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.unwrap()


def test_provisioned_gateway_publishes_only_under_its_id_and_revocation_locks_it_out(mosquitto: Settings) -> None:
    accounts = BrokerAccounts.from_settings(mosquitto)
    gateway = f"gw-dyn-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    accounts.create_gateway(gateway, password)
    watcher = Collector(new_client("dyn-watch"))
    connect(watcher.client, HOST, mosquitto.mqtt_port)
    gw = new_client("dyn-gw", gateway, password)
    lost = threading.Event()
    gw.on_disconnect = lambda *_a: lost.set()
    try:
        watcher.subscribe("carechain/v1/gw/#")
        connect(gw, HOST, PROVISIONED_PORT)
        gw.on_disconnect = lambda *_a: lost.set()
        forged = f"forged-{gateway}".encode()
        own = f"own-{gateway}".encode()
        gw.publish("carechain/v1/gw/gw-test-2/events", forged, qos=1).wait_for_publish(10)
        gw.publish(f"carechain/v1/gw/{gateway}/events", own, qos=1).wait_for_publish(10)
        assert watcher.wait_for(own)
        time.sleep(0.2)
        assert forged not in watcher.received()

        accounts.revoke_gateway(gateway)
        assert lost.wait(5), "a revoked gateway's open session was not disconnected"
        assert not accounts.gateway_exists(gateway)
        gw.loop_stop()
        again = new_client("dyn-gw-again", gateway, password)
        with pytest.raises(ConnectionError):
            connect(again, HOST, PROVISIONED_PORT)
    finally:
        gw.loop_stop()
        gw.disconnect()
        stop(watcher.client)
        accounts.revoke_gateway(gateway)


def test_slow_persistent_qos1_subscriber_misses_nothing(mosquitto: Settings) -> None:
    """20,000 QoS 1 messages to a subscriber slower than the publisher: the queue (not the default 1,000) holds."""
    n = 20_000
    topic = f"carechain/test/queue/{uuid.uuid4().hex}"
    sub_client = new_client("queue-sub", clean=False, client_id=f"queue-sub-{uuid.uuid4().hex[:8]}")
    slow = Collector(sub_client, delay_s=0.0003)
    connect(sub_client, HOST, mosquitto.mqtt_port)
    pub = new_client("queue-pub")
    connect(pub, HOST, mosquitto.mqtt_port)
    try:
        slow.subscribe(topic, qos=1)
        t0 = time.monotonic()
        infos = [pub.publish(topic, str(i).encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
        published_s = time.monotonic() - t0
        deadline = time.monotonic() + 60
        while len(slow.received()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        got = slow.received()
        backlog_note = f"published in {published_s:.1f} s, received {len(got)} after {time.monotonic() - t0:.1f} s"
        assert len(set(got)) == n, f"lost {n - len(set(got))} of {n} QoS 1 messages ({backlog_note})"
        # Mosquitto keeps per-subscriber order for QoS 1.
        assert [int(p) for p in got[:n]] == list(range(n))
    finally:
        stop(pub)
        # Drop the persistent session so nothing lingers in the shared broker.
        sub_client.unsubscribe(topic)
        stop(sub_client)
        cleanup = new_client("queue-sub", clean=True, client_id=sub_client._client_id.decode())
        connect(cleanup, HOST, mosquitto.mqtt_port)
        stop(cleanup)
