"""Helpers for the ingest integration tests and benchmark: private databases and topics,
the bridge as a real subprocess, real paho publishers and kafka-python consumers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from carechain.settings import Settings
from ingest.mqtt import forget_session

#: The registry view the bridge reads, on a table of our own (the storage migrations own the
#: real tables; the bridge depends only on the view and the NOTIFY channel).
MINIMAL_REGISTRY_SQL = """
CREATE TABLE ingest_test_devices (
    device_id text PRIMARY KEY, gateway_id text NOT NULL, home_id text NOT NULL,
    resident_id text NOT NULL, room text, device_kind text NOT NULL,
    monitoring_active boolean NOT NULL DEFAULT true);
CREATE VIEW device_registry AS
    SELECT device_id, gateway_id, home_id, resident_id, room, device_kind, monitoring_active
    FROM ingest_test_devices;
CREATE FUNCTION ingest_test_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('carechain_registry', TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER ingest_test_devices_changed AFTER INSERT OR UPDATE OR DELETE ON ingest_test_devices
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_test_notify();
"""


def tag() -> str:
    return uuid.uuid4().hex[:8]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def missing_service(settings: Settings) -> str | None:
    """The first of Mosquitto, Kafka, PostgreSQL that does not answer, or None."""
    kafka_host, kafka_port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    pg = psycopg.conninfo.conninfo_to_dict(settings.database_url)
    for name, host, port in (
        ("Mosquitto", settings.mqtt_host, settings.mqtt_port),
        ("Kafka", kafka_host, int(kafka_port)),
        ("PostgreSQL", str(pg.get("host", "127.0.0.1")), int(pg.get("port", 5432))),
    ):
        if not port_open(host, port):
            return f"{name} at {host}:{port}"
    return None


# -- database ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    device_id: str
    gateway_id: str
    home_id: str
    resident_id: str
    room: str | None = "hall"
    device_kind: str = "motion"
    monitoring_active: bool = True


def homes(prefix: str, count: int, sensors: Sequence[str] = ("motion", "wristband")) -> list[Device]:
    """``count`` homes, each with a gateway device and the given sensors."""
    out: list[Device] = []
    for i in range(count):
        gw = f"{prefix}-gw{i:04d}"
        home, resident = f"{prefix}-h{i:04d}", f"{prefix}-r{i:04d}"
        out.append(Device(gw, gw, home, resident, "hall", "gateway"))
        out += [Device(f"{gw}-{s}", gw, home, resident, "hall", s) for s in sensors]
    return out


@contextmanager
def private_database(settings: Settings, devices: Iterable[Device] = ()) -> Iterator[str]:
    """A fresh database with the registry view and ``devices``; dropped afterwards. Yields its DSN."""
    name = f"cc_ingest_{tag()}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(MINIMAL_REGISTRY_SQL)
            register(conn, devices)
        yield dsn
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def register(conn: psycopg.Connection, devices: Iterable[Device]) -> None:
    rows = [(d.device_id, d.gateway_id, d.home_id, d.resident_id, d.room, d.device_kind, d.monitoring_active)
            for d in devices]
    if rows:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO ingest_test_devices VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


# -- Kafka ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    events: str
    urgent: str
    deadletter: str

    def env(self) -> dict[str, str]:
        return {"CARECHAIN_TOPIC_EVENTS": self.events, "CARECHAIN_TOPIC_URGENT": self.urgent,
                "CARECHAIN_TOPIC_DEADLETTER": self.deadletter}


@contextmanager
def private_topics(settings: Settings, partitions: int = 8) -> Iterator[Topics]:
    t = tag()
    topics = Topics(f"events_{t}", f"events.urgent_{t}", f"deadletter_{t}")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in (topics.events, topics.urgent, topics.deadletter)])
        yield topics
    finally:
        try:
            admin.delete_topics([topics.events, topics.urgent, topics.deadletter])
        finally:
            admin.close()


def consumer(settings: Settings, topic: str, from_end: bool = False) -> KafkaConsumer:
    """A consumer assigned to every partition of ``topic`` (no group: no rebalance delays)."""
    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                      fetch_max_wait_ms=50, max_poll_records=5000)
    parts = c.partitions_for_topic(topic) or set()
    deadline = time.monotonic() + 10
    while not parts and time.monotonic() < deadline:
        time.sleep(0.1)
        parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    if from_end:
        c.seek_to_end(*tps)
        for tp in tps:
            c.position(tp)
    else:
        c.seek_to_beginning(*tps)
    return c


@dataclass
class Consumed:
    key: bytes | None
    value: bytes
    partition: int
    offset: int


def drain(c: KafkaConsumer, until: Any, timeout: float) -> list[Consumed]:
    """Poll until ``until(records)`` is true or ``timeout`` seconds passed."""
    out: list[Consumed] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tp, recs in c.poll(timeout_ms=200).items():
            out += [Consumed(r.key, r.value, tp.partition, r.offset) for r in recs]
        if until(out):
            break
    return out


# -- MQTT -------------------------------------------------------------------------------------


class Publisher:
    """A real paho publisher (QoS 1) that can wait until the broker acknowledged everything."""

    def __init__(self, settings: Settings, client_id: str | None = None) -> None:
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"ingest-test-pub-{tag()}", protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=qos, retain=retain))

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        self.infos.clear()

    def close(self) -> None:
        self.wait()
        self.client.disconnect()
        self.client.loop_stop()


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


def reading(device_id: str, seq: int, kind: str = "motion", value: Any = True, ts: str | None = None) -> dict[str, Any]:
    return {"v": 1, "device_id": device_id, "kind": kind, "value": value, "ts": ts or iso_now(), "seq": seq}


def batch(readings: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"v": 1, "readings": list(readings)}, separators=(",", ":")).encode()


def events_topic(gateway_id: str) -> str:
    return f"carechain/v1/gw/{gateway_id}/events"


# -- the bridge as a subprocess -----------------------------------------------------------------


@dataclass
class BridgeProcess:
    """``carechain bridge`` in a subprocess with private settings; stderr kept for the counters."""

    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def start(self, ready_timeout: float = 60.0) -> BridgeProcess:
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "carechain.cli", "bridge", "--stats-interval-s", "1", *self.args],
            env={**os.environ, **self.env}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        ready = threading.Event()
        proc = self.proc

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.lines.append(line.rstrip("\n"))
                if "bridge ready" in line:
                    ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + ready_timeout
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("bridge did not become ready:\n" + "\n".join(self.lines[-30:]))
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.reader is not None:
            self.reader.join(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_pipe()
        return self.proc.returncode

    def stats(self) -> dict[str, Any]:
        """The last counters the bridge logged."""
        for line in reversed(self.lines):
            if "bridge stats " in line:
                return dict(json.loads(line.split("bridge stats ", 1)[1]))
        return {}

    def wait_stats(self, pred: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.stats()
            if s and pred(s):
                return s
            time.sleep(0.2)
        return self.stats()


def bridge_env(settings: Settings, dsn: str, topics: Topics, client_id: str) -> dict[str, str]:
    return {**topics.env(), "CARECHAIN_DATABASE_URL": dsn, "CARECHAIN_MQTT_CLIENT_ID": client_id,
            "CARECHAIN_MQTT_HOST": settings.mqtt_host, "CARECHAIN_MQTT_PORT": str(settings.mqtt_port),
            "CARECHAIN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}


@contextmanager
def running_bridge(settings: Settings, dsn: str, topics: Topics, args: Sequence[str] = ()) -> Iterator[BridgeProcess]:
    """A bridge subprocess with a private client id; its broker session is removed afterwards."""
    client_id = f"ingest-test-bridge-{tag()}"
    bridge = BridgeProcess(bridge_env(settings, dsn, topics, client_id), ["--session-expiry-s", "600", *args])
    try:
        yield bridge.start()
    finally:
        bridge.stop()
        forget_session(settings.mqtt_host, settings.mqtt_port, client_id)


def produce_backlog(settings: Settings, topic: str, count: int, residents: Sequence[str]) -> int:
    """Put ``count`` telemetry events into ``topic`` as fast as this machine allows.

    aiokafka's record-batch builder is compiled (about 0.5 M records/s here, ~20x
    kafka-python's per-record ``send``), so a million-record backlog costs seconds.
    """
    import asyncio

    from aiokafka import AIOKafkaProducer

    template = (
        '{"event_id":"backlog-%d","resident_id":"%s","home_id":"h","gateway_id":"gw","device_id":"d",'
        '"room":"hall","kind":"heart_rate","value":72.0,"ts":"%s","seq":%d,"received_at":"%s","unit":"bpm","v":1}'
    )
    now = iso_now()

    async def main() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, max_batch_size=1 << 20,
                                    max_request_size=8 << 20)
        await producer.start()
        try:
            parts = sorted(await producer.partitions_for(topic))
            futures = []
            i = 0
            while i < count:
                for part in parts:
                    b = producer.create_batch()
                    resident = residents[part % len(residents)]
                    while i < count:
                        value = (template % (i, resident, now, i, now)).encode()
                        if b.append(key=resident.encode(), value=value, timestamp=None) is None:
                            break
                        i += 1
                    futures.append(await producer.send_batch(b, topic, partition=part))
                    if i >= count:
                        break
            await asyncio.gather(*futures)
            return i
        finally:
            await producer.stop()

    return asyncio.run(main())


def end_offsets_total(settings: Settings, topic: str) -> int:
    c = consumer(settings, topic)
    try:
        return int(sum(c.end_offsets(list(c.assignment())).values()))
    finally:
        c.close()
