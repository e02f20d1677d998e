"""``carechain bench ingest``: readings/s and latency through the bridge, against the raw ceilings.

One run, three measurements on the real services:

1. **Kafka producer alone** — :class:`ingest.kafka.EventProducer` sending event-sized
   records in the batches the bridge sends (the producer ceiling).
2. **Mosquitto alone** — the same 200 gateway clients and payloads, published to a
   private topic tree and counted by one QoS 1 subscriber (the broker ceiling).
3. **Through the bridge** — ``carechain bridge`` as a subprocess with a private
   registry, topics and session: a *capacity* phase (a fixed number of readings
   published as fast as the gateways can, so the bridge is the bottleneck) and a
   *latency* phase (an open-loop rate below the capacity, so latency is not queueing).
   Latency is Kafka's append time (the events topic uses ``LogAppendTime``) minus
   the publish time the gateway wrote into the reading's ``ts``.

Then every record is read back: ``lost`` and ``duplicated`` are counted over both
phases. The gateways have unique ids per run, so simulators or other bridges
sharing the broker neither feed nor see this run's readings as valid.

This module is a load generator and meter, not part of the bridge: like the
tests, it drives paho, kafka-python and psycopg directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from carechain.bench import percentiles, progress
from carechain.events import Event, make_event_id
from carechain.settings import Settings
from ingest.kafka import EventProducer, ProducerTuning
from ingest.messages import Record
from ingest.mqtt import forget_session

#: Sensors of a bench home and the readings they send (kind, value); the gateway's own row too.
SENSORS: tuple[tuple[str, str, Any], ...] = (
    ("motion-hall", "motion", True),
    ("motion-kitchen", "motion", True),
    ("door-front", "door", "open"),
    ("bed", "bed", "in"),
    ("wristband-hr", "heart_rate", 72.0),
    ("wristband-temp", "temperature", 36.6),
)

REGISTRY_SQL = """
CREATE TABLE bench_devices (
    device_id text PRIMARY KEY, gateway_id text NOT NULL, home_id text NOT NULL,
    resident_id text NOT NULL, room text, device_kind text NOT NULL,
    monitoring_active boolean NOT NULL DEFAULT true);
CREATE VIEW device_registry AS
    SELECT device_id, gateway_id, home_id, resident_id, room, device_kind, monitoring_active FROM bench_devices;
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carechain bench ingest``."""
    parser.add_argument("--gateways", type=int, default=200, help="simulated gateways (one paho client each)")
    parser.add_argument("--batch", type=int, default=50, help="readings per MQTT message")
    parser.add_argument("--readings", type=int, default=300_000, help="readings in the capacity phase")
    parser.add_argument("--latency-seconds", type=float, default=8.0, help="length of the latency phase")
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="readings/s in the latency phase (0: half the measured capacity)")
    parser.add_argument("--ceiling-readings", type=int, default=200_000, help="readings per ceiling measurement")
    parser.add_argument("--bridge-args", default="", help="extra options for `carechain bridge` (tuning)")
    parser.add_argument("--skip-ceilings", action="store_true", help="only measure through the bridge")


# -- set-up -------------------------------------------------------------------------------------


def _tag() -> str:
    return uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class Fleet:
    """The simulated homes: one gateway, one resident and the sensors each."""

    prefix: str
    gateways: tuple[str, ...]

    def devices(self, gw: str) -> list[str]:
        return [f"{gw}-{name}" for name, _, _ in SENSORS]

    def rows(self) -> list[tuple[str, str, str, str, str | None, str, bool]]:
        out: list[tuple[str, str, str, str, str | None, str, bool]] = []
        for gw in self.gateways:
            home, resident = gw.replace("-gw", "-h"), gw.replace("-gw", "-r")
            out.append((gw, gw, home, resident, "hall", "gateway", True))
            out += [(f"{gw}-{name}", gw, home, resident, "hall", name.split("-")[0], True) for name, _, _ in SENSORS]
        return out


@contextmanager
def _private_database(settings: Settings, fleet: Fleet) -> Iterator[str]:
    name = f"cc_ingest_bench_{_tag()}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(REGISTRY_SQL)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bench_devices VALUES (%s, %s, %s, %s, %s, %s, %s)", fleet.rows())
        yield dsn
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _private_topics(settings: Settings, names: Sequence[str]) -> Iterator[None]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([
            NewTopic(n, settings.kafka_partitions, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})
            for n in names
        ])
        yield
    finally:
        try:
            admin.delete_topics(list(names))
        finally:
            admin.close()


# -- gateways -------------------------------------------------------------------------------------


class Gateways:
    """``n`` paho clients (QoS 1), one per gateway, publishing batched readings with per-device seq."""

    def __init__(self, settings: Settings, fleet: Fleet, batch: int, topic_root: str) -> None:
        self.fleet, self.batch, self.topic_root = fleet, batch, topic_root
        self.clients: list[mqtt.Client] = []
        self.seq: Counter[str] = Counter()
        self.published = 0
        for gw in fleet.gateways:
            c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"{gw}-pub",
                            protocol=mqtt.MQTTv311)
            c.max_inflight_messages_set(50)
            c.connect(settings.mqtt_host, settings.mqtt_port, keepalive=60)
            c.loop_start()
            self.clients.append(c)
        self._last_infos: list[mqtt.MQTTMessageInfo | None] = [None] * len(self.clients)

    def payload(self, gw: str, now: datetime) -> bytes:
        ts = now.isoformat()
        readings = []
        for k in range(self.batch):
            name, kind, value = SENSORS[k % len(SENSORS)]
            dev = f"{gw}-{name}"
            readings.append({"v": 1, "device_id": dev, "kind": kind, "value": value, "ts": ts, "seq": self.seq[dev]})
            self.seq[dev] += 1
        return json.dumps({"v": 1, "readings": readings}, separators=(",", ":")).encode()

    def publish_round(self, i: int) -> None:
        """One message from gateway ``i`` (round-robin); waits if that client has too much in flight."""
        gw = self.fleet.gateways[i]
        prev = self._last_infos[i]
        if prev is not None and not prev.is_published():
            prev.wait_for_publish(timeout=30)
        topic = f"{self.topic_root}{gw}/events"
        self._last_infos[i] = self.clients[i].publish(topic, self.payload(gw, datetime.now(UTC)), qos=1)
        self.published += self.batch

    def publish_count(self, readings: int) -> float:
        """Publish ``readings`` as fast as the clients go; returns the wall time it took."""
        t0 = time.monotonic()
        n = len(self.clients)
        i = 0
        target = self.published + readings
        while self.published < target:
            self.publish_round(i % n)
            i += 1
        return time.monotonic() - t0

    def publish_rate(self, rate: float, seconds: float) -> int:
        """Open-loop: ``rate`` readings/s for ``seconds``; returns readings published."""
        start, n, i, sent = time.monotonic(), len(self.clients), 0, 0
        per_msg = self.batch / rate
        while True:
            due = start + i * per_msg
            now = time.monotonic()
            if due - start >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            self.publish_round(i % n)
            i += 1
            sent += self.batch
        return sent

    def wait_all(self) -> None:
        for info in self._last_infos:
            if info is not None:
                info.wait_for_publish(timeout=60)

    def close(self) -> None:
        self.wait_all()
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


# -- ceilings ---------------------------------------------------------------------------------------


def kafka_ceiling(settings: Settings, topic: str, fleet: Fleet, readings: int, batch_records: int) -> float:
    """Records/s of the bridge's producer alone, with event-sized records in bridge-sized batches."""
    now = datetime.now(UTC)
    records = []
    for i in range(min(readings, 20_000)):
        gw = fleet.gateways[i % len(fleet.gateways)]
        ev = Event(make_event_id(gw, i, now), gw.replace("-gw", "-r"), gw.replace("-gw", "-h"), gw,
                   f"{gw}-motion-hall", "hall", "motion", True, now, i, now)
        records.append(Record(topic, ev.resident_id.encode(), ev.to_json()))
    producer = EventProducer(settings.kafka_bootstrap, client_id=f"bench-{_tag()}", tuning=ProducerTuning())
    try:
        producer.send_all(records[:10])
        t0, sent = time.monotonic(), 0
        while sent < readings:
            for k in range(0, len(records), batch_records):
                producer.send_all(records[k: k + batch_records])
                sent += len(records[k: k + batch_records])
                if sent >= readings:
                    break
        return sent / (time.monotonic() - t0)
    finally:
        producer.close()


def mqtt_ceiling(settings: Settings, fleet: Fleet, batch: int, readings: int) -> float:
    """Readings/s from the same gateways and payloads to one QoS 1 subscriber, nothing else."""
    root = f"bench/{fleet.prefix}/gw/"
    got = [0]
    done = threading.Event()
    first: list[float] = []
    target = readings // batch

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not first:
            first.append(time.monotonic())
        got[0] += 1
        if got[0] >= target:
            done.set()

    sub_id = f"{fleet.prefix}-ceiling-sub"
    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=sub_id,
                      protocol=mqtt.MQTTv311)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(settings.mqtt_host, settings.mqtt_port, keepalive=60)
    sub.loop_start()
    sub.subscribe(f"{root}+/events", qos=1)
    subscribed.wait(10)
    gws = Gateways(settings, fleet, batch, root)
    try:
        t0 = time.monotonic()
        gws.publish_count(target * batch)
        done.wait(120)
        elapsed = time.monotonic() - t0
        return got[0] * batch / elapsed
    finally:
        gws.close()
        sub.disconnect()
        sub.loop_stop()


# -- through the bridge -----------------------------------------------------------------------------


class BridgeProcess:
    def __init__(self, env: dict[str, str], args: Sequence[str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "carechain.cli", "bridge", "--stats-interval-s", "2",
                                      *args], env={**os.environ, **env}, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            if "bridge ready" in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("bridge did not start:\n" + "\n".join(self.lines[-20:]))

    def stats(self) -> dict[str, Any]:
        for line in reversed(self.lines):
            if "bridge stats " in line:
                return dict(json.loads(line.split("bridge stats ", 1)[1]))
        return {}

    def thread_cpu_s(self) -> dict[int, float]:
        """CPU seconds per thread id (the main thread's id is the pid), child processes included."""
        try:
            import psutil

            parent = psutil.Process(self.proc.pid)
            return {t.id: t.user_time + t.system_time
                    for p in (parent, *parent.children(recursive=True)) for t in p.threads()}
        except Exception:  # optional figure
            return {}

    def cpu_s(self) -> float | None:
        """CPU seconds of the bridge and its producer process, if any."""
        threads = self.thread_cpu_s()
        return sum(threads.values()) if threads else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _end_offset_total(c: KafkaConsumer, tps: list[TopicPartition]) -> int:
    return int(sum(c.end_offsets(tps).values()))


def _wait_for_records(c: KafkaConsumer, tps: list[TopicPartition], want: int, stall_s: float = 15.0) -> int:
    """Wait until the topic holds ``want`` records, or nothing has arrived for ``stall_s``."""
    last, last_change = -1, time.monotonic()
    while True:
        n = _end_offset_total(c, tps)
        if n >= want:
            return n
        if n != last:
            last, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return n
        time.sleep(0.25)


def _read_back(c: KafkaConsumer, tps: list[TopicPartition], total: int) -> list[tuple[int, bytes]]:
    """(append time ms, value) of every record."""
    c.seek_to_beginning(*tps)
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 120
    while len(out) < total and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500, max_records=20_000).values():
            out += [(r.timestamp, r.value) for r in recs]
    return out


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Run the three measurements; returns the result for ``carechain bench``."""
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO lines would drown the progress
    prefix = f"b{_tag()}"
    fleet = Fleet(prefix, tuple(f"{prefix}-gw{i:04d}" for i in range(args.gateways)))
    t = _tag()
    events, urgent, deadletter, scratch = f"events_b{t}", f"events.urgent_b{t}", f"deadletter_b{t}", f"scratch_b{t}"
    result: dict[str, Any] = {"gateways": args.gateways, "batch": args.batch}
    with _private_database(settings, fleet) as dsn, _private_topics(settings, [events, urgent, deadletter, scratch]):
        ceilings: dict[str, float] = {}
        if not args.skip_ceilings:
            progress(f"ceiling: Kafka producer alone ({args.ceiling_readings} records)")
            ceilings["kafka_producer"] = kafka_ceiling(settings, scratch, fleet, args.ceiling_readings,
                                                       batch_records=500 * args.batch // 10)
            progress(f"  {ceilings['kafka_producer']:.0f} records/s")
            progress(f"ceiling: Mosquitto alone ({args.gateways} gateways, {args.ceiling_readings} readings)")
            ceilings["mosquitto"] = mqtt_ceiling(settings, Fleet(f"{prefix}c", fleet.gateways), args.batch,
                                                 args.ceiling_readings)
            progress(f"  {ceilings['mosquitto']:.0f} readings/s")

        client_id = f"{prefix}-bridge"
        env = {"CARECHAIN_TOPIC_EVENTS": events, "CARECHAIN_TOPIC_URGENT": urgent,
               "CARECHAIN_TOPIC_DEADLETTER": deadletter, "CARECHAIN_DATABASE_URL": dsn,
               "CARECHAIN_MQTT_CLIENT_ID": client_id, "CARECHAIN_LOG_LEVEL": "INFO"}
        bridge = BridgeProcess(env, ["--session-expiry-s", "600", *args.bridge_args.split()])
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                 max_partition_fetch_bytes=8 << 20)
        tps = [TopicPartition(events, p) for p in sorted(consumer.partitions_for_topic(events) or ())]
        consumer.assign(tps)
        gws: Gateways | None = None
        try:
            bridge.wait_ready(60)
            gws = Gateways(settings, fleet, args.batch, "carechain/v1/gw/")
            progress(f"bridge: capacity phase, {args.readings} readings as fast as {args.gateways} gateways go")
            cpu0 = bridge.cpu_s()
            threads0 = bridge.thread_cpu_s()
            t_pub0 = time.time()
            pub_cpu0 = time.process_time()
            pub_wall = gws.publish_count(args.readings)
            pub_cpu = time.process_time() - pub_cpu0
            n_cap = _wait_for_records(consumer, tps, args.readings)
            t_cap_end = time.time()
            cpu1 = bridge.cpu_s()
            threads1 = bridge.thread_cpu_s()
            recs_cap = _read_back(consumer, tps, n_cap)
            last_append = max((ts for ts, _ in recs_cap), default=int(t_cap_end * 1000)) / 1000.0
            capacity = len(recs_cap) / max(1e-6, last_append - t_pub0)
            progress(f"  {capacity:.0f} readings/s through the bridge")
            rate = args.latency_rate or max(1000.0, capacity / 2)
            progress(f"bridge: latency phase, {rate:.0f} readings/s for {args.latency_seconds:.0f} s")
            sent = gws.publish_rate(rate, args.latency_seconds)
            gws.wait_all()
            total_want = args.readings + sent
            n_all = _wait_for_records(consumer, tps, total_want)
            recs_all = _read_back(consumer, tps, n_all)
            stats = bridge.stats()
        finally:
            if gws is not None:
                gws.close()
            bridge.stop()
            consumer.close()
            forget_session(settings.mqtt_host, settings.mqtt_port, client_id)
        if not args.skip_ceilings:
            # The machine is shared: measure the producer ceiling again after the bridge ran
            # and take the mean, so the ratio compares like with like.
            progress("ceiling: Kafka producer alone, again")
            after = kafka_ceiling(settings, scratch, fleet, args.ceiling_readings, batch_records=500 * args.batch // 10)
            progress(f"  {after:.0f} records/s")
            ceilings["kafka_producer_before"] = ceilings.pop("kafka_producer")
            ceilings["kafka_producer_after"] = after

    published_ids = {(f"{gw}-{name}", s) for gw in fleet.gateways for name, _, _ in SENSORS
                     for s in range(gws.seq[f"{gw}-{name}"])}
    seen: Counter[tuple[str, int]] = Counter()
    lat_phase: list[float] = []  # latency of the latency phase only (published after the capacity phase)
    cap_end_ms = t_cap_end * 1000.0
    for append_ms, value in recs_all:
        e = json.loads(value)
        seen[(e["device_id"], e["seq"])] += 1
        published_ms = datetime.fromisoformat(e["ts"]).timestamp() * 1000.0
        if published_ms > cap_end_ms:
            lat_phase.append(append_ms - published_ms)
    cap_count = len(recs_cap)
    lost = len(published_ids - set(seen))
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    kafka = [v for k, v in ceilings.items() if k.startswith("kafka_producer")]
    slower = min(sum(kafka) / len(kafka), ceilings["mosquitto"]) if kafka else None
    result.update({
        "events_per_s": round(capacity),
        **percentiles(lat_phase),
        "latency_rate": round(rate),
        "capacity_phase_readings": cap_count,
        "ceiling_events_per_s": None if slower is None else round(slower),
        "ceilings": {k: round(v) for k, v in ceilings.items()},
        "ratio": None if slower is None else round(capacity / slower, 3),
        "lost": lost,
        "duplicated": duplicated,
        "published": len(published_ids),
        "bridge_cpu_s_capacity_phase": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2),
        # Throughput per CPU-second of the bridge: comparable across runs on a busy shared machine.
        "bridge_cpu_us_per_reading": None if cpu0 is None or cpu1 is None
        else round((cpu1 - cpu0) / max(1, cap_count) * 1e6, 1),
        # Where the bridge's CPU went: "main" routes and hands records to Kafka; the others are
        # paho's network thread, kafka-python's sender and the registry listener.
        # The simulated gateways share the machine: what they cost while the bridge was measured.
        "publisher_cpu_s_capacity_phase": round(pub_cpu, 2),
        "publisher_wall_s_capacity_phase": round(pub_wall, 2),
        "bridge_thread_cpu_s": {("main" if tid == bridge.proc.pid else str(tid)): round(v - threads0.get(tid, 0.0), 2)
                                for tid, v in sorted(threads1.items(), key=lambda kv: -kv[1])
                                if v - threads0.get(tid, 0.0) > 0.05},
        "bridge_stats": stats,
        "bridge_args": args.bridge_args,
    })
    return result
