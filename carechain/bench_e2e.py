"""``carechain bench e2e``: the whole distributed pipeline, measured end to end.

Simulated gateways (paho, batched payloads) -> Mosquitto -> ``carechain bridge`` -> Kafka
-> ``carechain worker`` (one, then two sharing the partitions) -> PostgreSQL -> ``carechain
alerts`` -> ``carechain api`` -> a real HTTP SSE client logged in as the demo nurse.

Everything runs on a PRIVATE set of services (:mod:`carechain.pipeline`; state under
``/tmp/cc-e2e``, MQTT 28830, Kafka 29092, PostgreSQL 56432, API 28000) with per-run
database, topics and consumer groups, so the shared services are never disturbed.

Phases (all in one run, JSON on stdout, progress on stderr, a markdown report and a PNG
plot in ``--out``):

1. ceilings, before the pipeline starts: Mosquitto alone and the bridge's Kafka producer
   alone (``ingest.bench``), binary COPY alone (``carechain.db.writer.EventWriter``);
2. capacity with one worker: ``--readings`` published as fast as the gateways go; the rate is
   readings / time until the last of them is a row in ``observations``;
3. latency: an open-loop ``--rate`` for ``--duration`` s with a fall injected every
   ``--fall-every-s``; fall -> SSE latency is the SSE arrival minus the publish time;
4. backlog: ``--backlog`` readings dumped at once, falls injected while ``events`` drains;
5. capacity with two workers (same consumer group), and the ratio to one.

Finally every published reading is looked up in ``observations`` by (device, seq): ``lost``
and ``duplicated`` are counted over the whole run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg

from carechain.bench import percentiles, progress
from carechain.pipeline import Pipeline, PrivateServices, RunNames, service_resources
from carechain.settings import Settings
from carechain.simulation.homes import HomeLayout, home_layout
from ingest.bench import Fleet, Gateways, kafka_ceiling, mqtt_ceiling

TOPIC_ROOT = "carechain/v1/gw/"
NURSE = {"user": "nurse-anna", "org": "kommun-0180", "role": "nurse", "unit": "hemtjanst-sodermalm"}
SAME_FALL_S = 35.0  # the fall detector folds reports of one sensor within 30 s into one fall


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carechain bench e2e``."""
    parser.add_argument("--homes", type=int, default=200, help="seeded homes = simulated gateways")
    parser.add_argument("--batch", type=int, default=20, help="readings per MQTT message")
    parser.add_argument("--readings", type=int, default=300_000,
                        help="readings per capacity phase (100,000 lasted only 7-13 s: one 5 s worker "
                             "checkpoint step more or less moved the rate by 30-50 %%)")
    parser.add_argument("--rate", type=float, default=5000.0, help="readings/s in the latency phase")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the latency phase")
    parser.add_argument("--fall-every-s", type=float, default=0.5, help="one injected fall this often")
    parser.add_argument("--backlog", type=int, default=100_000, help="readings dumped for the backlog phase")
    parser.add_argument("--ceiling-readings", type=int, default=60_000, help="readings per ceiling measurement")
    parser.add_argument("--skip-ceilings", action="store_true")
    parser.add_argument("--skip-two-workers", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="report and plot go here")
    parser.add_argument("--keep", action="store_true", help="keep the run's database and topics")
    parser.add_argument("--stop-services", action="store_true", help="stop the private services at the end")


# -- load -----------------------------------------------------------------------------------------------


def reading_devices(lay: HomeLayout) -> list[tuple[str, str, Any]]:
    """What a bench home sends, cycled: motion in each room, heart rate, the gateway's heartbeat.

    Values are ordinary (motion, a resting pulse) so no detector fires on the load itself.
    """
    out: list[tuple[str, str, Any]] = [(d.device_id, "motion", True) for d in lay.devices if d.device_kind == "motion"]
    out.append((lay.device("wristband"), "heart_rate", 72.0))
    out.append((lay.gateway_id, "gateway.heartbeat", None))
    return out


class HomeGateways(Gateways):
    """The ingest bench's gateway clients, sending the readings of seeded demo homes."""

    def __init__(self, settings: Settings, homes: Sequence[HomeLayout], batch: int) -> None:
        self.layouts = {h.gateway_id: h for h in homes}
        self.devices = {h.gateway_id: reading_devices(h) for h in homes}
        self.turn: Counter[str] = Counter()
        self.paused: set[str] = set()  # gateways cut off: their messages wait in `held`
        self.held: dict[str, list[bytes]] = defaultdict(list)
        self.lock = threading.Lock()
        self.rr = 0
        super().__init__(settings, Fleet("e2e", tuple(self.layouts)), batch, TOPIC_ROOT)

    def payload(self, gw: str, now: datetime) -> bytes:
        ts = now.isoformat()
        devs = self.devices[gw]
        readings = []
        for _ in range(self.batch):
            dev, kind, value = devs[self.turn[gw] % len(devs)]
            self.turn[gw] += 1
            readings.append({"v": 1, "device_id": dev, "kind": kind, "value": value, "ts": ts, "seq": self.seq[dev]})
            self.seq[dev] += 1
        return json.dumps({"v": 1, "readings": readings}, separators=(",", ":")).encode()

    def publish_round(self, i: int) -> None:
        # Round robin over ALL gateways across calls: publish_rate restarts its index at 0 on every call,
        # so slices shorter than one round would otherwise only ever use the first gateways.
        i = self.rr % len(self.fleet.gateways)
        self.rr += 1
        gw = self.fleet.gateways[i]
        if gw in self.paused:
            # A gateway without a connection keeps its readings and sends them when it is back (backfill).
            self.held[gw].append(self.payload(gw, datetime.now(UTC)))
            self.published += self.batch
            return
        super().publish_round(i)

    def backfill(self, gw: str) -> int:
        """Send what a cut-off gateway held, in order; returns the number of messages."""
        i = self.fleet.gateways.index(gw)
        msgs = self.held.pop(gw, [])
        for payload in msgs:
            info = self.clients[i].publish(f"{TOPIC_ROOT}{gw}/events", payload, qos=1)
            info.wait_for_publish(timeout=60)
        return len(msgs)

    def expected(self) -> dict[str, int]:
        """Readings published per device: seq 0 .. n-1."""
        return dict(self.seq)


@dataclass
class FallInjector:
    """Falls on the nurse's residents, each with a known incident key and publish time."""

    settings: Settings
    homes: Sequence[HomeLayout]
    sent: dict[str, float] = field(default_factory=dict)  # incident key -> publish time (epoch s)
    phase_of: dict[str, str] = field(default_factory=dict)
    last_at: dict[str, float] = field(default_factory=dict)
    seq: Counter[str] = field(default_factory=Counter)
    client: mqtt.Client | None = None
    turn: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)  # the probe and a load thread both inject

    def __post_init__(self) -> None:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"e2e-falls-{time.monotonic_ns() % 10**9}", protocol=mqtt.MQTTv311)
        c.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=60)
        c.loop_start()
        self.client = c
        # Readings' seq must grow per device; start the pendants far above anything used before.
        base = int(time.time() * 1000) % 10**12
        for h in self.homes:
            self.seq[h.device("pendant")] = base

    def inject(self, phase: str) -> str | None:
        """Publish one fall on the next home whose previous fall is old enough; its incident key.

        The same resident falls again every ~200 s at a fall every 2 s: the alert service must not mute
        repeated falls (it did, as "flapping", until the chaos run found it)."""
        with self.lock:
            return self._inject(phase)

    def _inject(self, phase: str) -> str | None:
        now = time.time()
        for _ in range(len(self.homes)):
            lay = self.homes[self.turn % len(self.homes)]
            self.turn += 1
            if now - self.last_at.get(lay.resident_id, 0.0) < SAME_FALL_S:
                continue
            if any(k.startswith(f"{lay.resident_id}:fall:{int(now)}") for k in self.sent):
                continue
            dev = lay.device("pendant")
            ts = datetime.fromtimestamp(now, UTC)
            reading = {"v": 1, "device_id": dev, "kind": "fall", "value": True, "ts": ts.isoformat(),
                       "seq": self.seq[dev]}
            self.seq[dev] += 1
            key = f"{lay.resident_id}:fall:{int(now)}"
            assert self.client is not None
            info = self.client.publish(f"{TOPIC_ROOT}{lay.gateway_id}/events",
                                       json.dumps({"v": 1, "readings": [reading]}).encode(), qos=1)
            self.sent[key] = now
            self.phase_of[key] = phase
            self.last_at[lay.resident_id] = now
            info.wait_for_publish(timeout=30)
            return key
        return None

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


class SseClient:
    """A nurse's live alert stream over HTTP; reconnects with Last-Event-ID like a browser."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url, token
        self.first_seen: dict[str, float] = {}  # incident key -> arrival of its first event
        self.proposed: Counter[str] = Counter()  # incident key -> 'proposed' events received
        self.messages = 0
        self.connects = 0
        self.connected = threading.Event()
        self.disconnected_at: list[float] = []
        self.reconnected_at: list[float] = []
        self.last_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            try:
                with httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as http, \
                        http.stream("GET", f"{self.base_url}/v1/alerts/stream", headers=headers) as resp:
                    if resp.status_code != 200:
                        raise httpx.HTTPError(f"status {resp.status_code}")
                    self.connects += 1
                    if self.disconnected_at:
                        self.reconnected_at.append(time.time())
                    self.connected.set()
                    self._read(resp.iter_lines())
            except (httpx.HTTPError, OSError):
                pass
            if self.connected.is_set():
                self.connected.clear()
                self.disconnected_at.append(time.time())
            self._stop.wait(0.5)

    def _read(self, lines: Iterator[str]) -> None:
        data: list[str] = []
        eid: str | None = None
        for line in lines:
            if self._stop.is_set():
                return
            if line.startswith("id:"):
                eid = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                self._message("\n".join(data), time.time())
                if eid is not None:
                    self.last_id = eid
                data, eid = [], None

    def _message(self, text: str, at: float) -> None:
        self.messages += 1
        try:
            msg = json.loads(text)
        except ValueError:
            return
        alert, event = msg.get("alert") or {}, msg.get("event") or {}
        key = alert.get("incident_key")
        if not isinstance(key, str):
            return
        self.first_seen.setdefault(key, at)
        if event.get("type") == "proposed":
            self.proposed[key] += 1


def nurse_token(settings: Settings) -> str:
    from api.auth import local_issuer  # the demo issuer; the API process reads the same key file

    return local_issuer(settings).mint(NURSE["user"], NURSE["org"], NURSE["role"], unit=NURSE["unit"], ttl_s=6 * 3600)


# -- measuring ------------------------------------------------------------------------------------------


class Observations:
    """Counts rows in the run's ``observations`` (the end of the pipeline for readings).

    Polled four times a second while a phase drains, a plain ``count(*)`` scans the whole
    table: ~450,000 rows by the two-worker phase, so the bench itself made PostgreSQL's CPU
    per reading look doubled there (and took CPU from the pipeline it measures). So
    :meth:`mark` counts exactly once (at the start of a phase) and remembers where each
    partition ends; :meth:`count` then adds only the rows after those marks (TID range
    scans of the new pages: cost ~ rows of the phase, not of the table). COPY appends at a
    relation's end; the marks keep a margin of pages for writers' partly filled pages, and
    when the count stops moving short of its target an exact count re-marks, so rows
    placed in older pages are never missed for long.
    """

    MARGIN_PAGES = 64  # partly filled pages of concurrent writers, below a relation's last page

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None
        self._below_marks: int | None = None  # rows in the pages below the marks (they do not change)
        self._marks: dict[int, tuple[str, int]] = {}  # relation oid -> (name, first page counted by count())
        self.exact_counts = 0
        self.tail_counts = 0

    def _connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
        return self.conn

    def _fail(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()
        self.conn = None
        self._below_marks = None

    @staticmethod
    def _relations(conn: psycopg.Connection) -> list[tuple[int, str, int]]:
        """(oid, name, pages) of observations and every table under it (partitions, chunks)."""
        return [(int(r[0]), str(r[1]), int(r[2])) for r in conn.execute(
            "WITH RECURSIVE t(rel) AS (SELECT 'observations'::regclass::oid"
            " UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN t ON i.inhparent = t.rel)"
            " SELECT c.oid, c.oid::regclass::text, pg_relation_size(c.oid) / current_setting('block_size')::int"
            " FROM t JOIN pg_class c ON c.oid = t.rel WHERE c.relkind = 'r'").fetchall()]

    @staticmethod
    def _tail_sql(parts: list[tuple[str, int]]) -> str:
        # name: PostgreSQL's own regclass text (quoted where needed); page: an int from the catalog.
        terms = [f"(SELECT count(*) FROM ONLY {name} WHERE ctid >= '({int(page)},0)'::tid)" for name, page in parts]
        return "SELECT " + (" + ".join(terms) if terms else "0")

    def mark(self) -> int | None:
        """An exact count of the rows, and new marks for :meth:`count` (None: database unavailable)."""
        try:
            conn = self._connect()
            marks = {oid: (name, max(0, pages - self.MARGIN_PAGES)) for oid, name, pages in self._relations(conn)}
            with conn.transaction():
                # One snapshot for both: the rows below the marks are the total minus those above.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute("SELECT count(*) FROM observations").fetchone()
                tail = conn.execute(self._tail_sql(list(marks.values()))).fetchone()
            total = int(row[0]) if row else 0
            self._below_marks = total - (int(tail[0]) if tail else 0)
            self._marks = marks
            self.exact_counts += 1
            return total
        except psycopg.Error:
            self._fail()
            return None

    def count(self) -> int | None:
        """Rows now: the exact count at the last mark plus the rows in the pages after it."""
        if self._below_marks is None:
            return self.mark()
        try:
            conn = self._connect()
            parts = [(name, self._marks[oid][1] if oid in self._marks else 0)
                     for oid, name, _ in self._relations(conn)]
            row = conn.execute(self._tail_sql(parts)).fetchone()
            self.tail_counts += 1
            return self._below_marks + (int(row[0]) if row else 0)
        except psycopg.Error:
            self._fail()
            return None

    def wait_for(self, target: int, stall_s: float, series: list[tuple[float, int]] | None = None) -> tuple[int, float]:
        """Poll until ``target`` rows or no progress for ``stall_s``; (rows, time the last new row appeared)."""
        last_n, last_change = -1, time.monotonic()
        rechecked = False
        while True:
            n = self.count()
            now = time.monotonic()
            if n is not None:
                if series is not None:
                    series.append((time.time(), n))
                if n != last_n:
                    last_n, last_change, rechecked = n, now, False
                if n >= target:
                    return n, now
                if not rechecked and now - last_change > 2.0:
                    # Short of the target and not moving: count exactly once (re-marks), in case
                    # rows went into pages below the marks.
                    rechecked = True
                    exact = self.mark()
                    if exact is not None and exact != last_n:
                        last_n, last_change = exact, time.monotonic()
                        if exact >= target:
                            return exact, last_change
            if now - last_change > stall_s:
                return max(last_n, 0), last_change
            time.sleep(0.25)

    def pg_stats(self) -> dict[str, int]:
        """Where PostgreSQL's write work stands: WAL position (bytes) and the next transaction id,
        read from the server at once (the pg_stat_* views lag by up to 10 s), and checkpoints.
        A phase takes the deltas: WAL bytes and transaction ids (savepoints count) it took."""
        queries = {
            ("wal_bytes", "xids"): "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,"
                                   " pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            ("checkpoints",): "SELECT num_timed + num_requested FROM pg_stat_checkpointer",  # 17+
            ("checkpoints_",): "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",  # up to 16
        }
        out: dict[str, int] = {}
        for names, query in queries.items():
            try:
                row = self._connect().execute(query).fetchone()
            except psycopg.Error:
                if self.conn is not None and self.conn.closed:
                    self._fail()
                continue
            out |= {k.rstrip("_"): int(v) for k, v in zip(names, row or (), strict=False)}
        return out

    def audit(self, expected: dict[str, int]) -> dict[str, int]:
        """lost / duplicated over every published reading, by (device, seq)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT device_id, count(*), count(DISTINCT seq) FROM observations"
                " WHERE device_id = ANY(%s) AND seq >= 0 GROUP BY device_id",
                (list(expected),),
            ).fetchall()
            seen = {r[0]: (int(r[1]), int(r[2])) for r in rows}
            in_range = conn.execute(
                "SELECT count(DISTINCT (device_id, seq)) FROM observations o"
                " JOIN unnest(%s::text[], %s::bigint[]) AS e(dev, n) ON o.device_id = e.dev AND o.seq < e.n",
                (list(expected), list(expected.values())),
            ).fetchone()
        published = sum(expected.values())
        stored_distinct = int(in_range[0]) if in_range else 0
        return {
            "published": published,
            "stored": sum(c for c, _ in seen.values()),
            "lost": published - stored_distinct,
            "duplicated": sum(c - d for c, d in seen.values()),
        }


def copy_ceiling(services: PrivateServices, rows: int) -> float:
    """Rows/s of the storage writer's binary COPY alone, into a scratch database."""
    from carechain.db.bench import _chunks, _events
    from carechain.db.writer import EventWriter

    names = RunNames()
    admin_url = services.env()["CARECHAIN_DATABASE_URL"]
    dsn = admin_url.rsplit("/", 1)[0] + f"/{names.database}_copy"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{names.database}_copy"')
    try:
        from carechain.db.migrate import migrate

        migrate(dsn)
        end = datetime.now(UTC)
        start = end.replace(hour=0, minute=0, second=0, microsecond=0)
        step = (end - start) / max(1, rows // 1000)
        events = _events(1000, start, end, step, seed=1)
        settings = Settings(database_url=dsn)
        with EventWriter.from_settings(settings) as writer:
            t0, n = time.monotonic(), 0
            for chunk in _chunks(events, 5000):
                n += writer.write_events(chunk)
                if n >= rows:
                    break
            return n / (time.monotonic() - t0)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{names.database}_copy" WITH (FORCE)')


def ceilings(services: PrivateServices, settings: Settings, readings: int, batch: int) -> dict[str, float]:
    """Mosquitto alone, Kafka producer alone, COPY alone (events/s), on the private services."""
    from kafka.admin import KafkaAdminClient, NewTopic

    tag = RunNames().tag
    fleet = Fleet(tag, tuple(f"c{tag}-gw{i:03d}" for i in range(100)))
    out: dict[str, float] = {}
    progress(f"ceiling: Mosquitto alone ({readings} readings)")
    out["mosquitto_events_per_s"] = round(mqtt_ceiling(settings, fleet, batch, readings))
    topic = f"e2e-{tag}-ceiling"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, settings.kafka_partitions, 1)])
        time.sleep(1.0)
        progress(f"ceiling: Kafka producer alone ({readings} records)")
        out["kafka_events_per_s"] = round(kafka_ceiling(settings, topic, fleet, readings, 500))
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])
    finally:
        admin.close()
    progress(f"ceiling: COPY alone ({readings} rows)")
    out["copy_events_per_s"] = round(copy_ceiling(services, readings))
    return out


# -- the pipeline ---------------------------------------------------------------------------------------


@dataclass
class Stack:
    """A started pipeline with its load generator, fall injector, SSE client and meters."""

    services: PrivateServices
    names: RunNames
    settings: Settings
    pipeline: Pipeline
    homes: list[HomeLayout]
    gateways: HomeGateways
    falls: FallInjector
    sse: SseClient
    obs: Observations

    def close(self, keep: bool) -> None:
        self.sse.stop()
        with contextlib.suppress(Exception):
            self.gateways.close()
        self.falls.close()
        self.pipeline.stop_all()
        if not keep:
            self.names.drop(self.services)


WORKER_ARGS = ["worker"]


def start_stack(services: PrivateServices, homes: int, batch: int, log_dir: Path,
                bridge_args: Sequence[str] = (), bring_up: bool = True) -> Stack:
    """Private services up, a fresh database/topics, seeded homes, the four processes, a nurse on SSE.

    ``bring_up=False``: the services are already running (the smoke test starts only its own
    broker and uses the shared Kafka and PostgreSQL with private names).
    """
    from carechain.db.seed import seed_demo

    if bring_up:
        progress(f"private services up (MQTT {services.mqtt_port}, Kafka {services.kafka_port},"
                 f" PostgreSQL {services.pg_port})")
        services.up()
    names = RunNames()
    names.create(services)
    settings = names.settings(services)
    with psycopg.connect(settings.database_url) as conn:
        seed_demo(conn, homes=homes)
        conn.commit()
    layouts = [home_layout(i) for i in range(1, homes + 1)]
    pipe = Pipeline(services, names, log_dir / names.tag)
    pipe.start("bridge", ["bridge", "--stats-interval-s", "10", "--session-expiry-s", "900", *bridge_args])
    pipe.start("worker-1", WORKER_ARGS)
    pipe.start("alerts", ["alerts", "--no-dispatch"])
    pipe.start("api", ["api", "--port", str(services.api_port), "--log-level", "warning"])
    obs = Observations(settings.database_url)
    sse = SseClient(f"http://127.0.0.1:{services.api_port}", nurse_token(settings))
    sse.start()
    gateways = HomeGateways(settings, layouts, batch)
    # The nurse sees the Stockholm homes (odd numbers); falls go there.
    falls = FallInjector(settings, [h for h in layouts if h.index % 2 == 1])
    return Stack(services, names, settings, pipe, layouts, gateways, falls, sse, obs)


def wait_fall(stack: Stack, key: str, timeout: float) -> float | None:
    """Seconds from publish to SSE for one fall, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if key in stack.sse.first_seen:
            return stack.sse.first_seen[key] - stack.falls.sent[key]
        dead = stack.pipeline.dead()
        if dead:
            raise RuntimeError(f"{dead} exited: {stack.pipeline.processes[dead[0]].log_tail()}")
        time.sleep(0.1)
    return None


def warm_up(stack: Stack, timeout: float = 150.0) -> float:
    """Falls until one reaches the nurse's stream: every process is up and connected."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        key = stack.falls.inject("warmup")
        if key is not None and wait_fall(stack, key, 15.0) is not None:
            return time.monotonic() - t0
    raise RuntimeError("no fall reached the SSE stream: " + "; ".join(
        f"{n}: {p.log_tail(600)}" for n, p in stack.pipeline.processes.items()))


def fall_latencies(stack: Stack, phase: str) -> dict[str, Any]:
    keys = [k for k, p in stack.falls.phase_of.items() if p == phase]
    ms = [(stack.sse.first_seen[k] - stack.falls.sent[k]) * 1000 for k in keys if k in stack.sse.first_seen]
    return {**percentiles(ms), "falls": len(keys), "missed": len(keys) - len(ms)}


def capacity(stack: Stack, readings: int, label: str) -> dict[str, Any]:
    """Publish ``readings`` as fast as the gateways go; rate until the last is stored."""
    base = stack.obs.mark() or 0
    load0 = os.getloadavg()[0]
    pg0 = stack.obs.pg_stats()
    polls0 = (stack.obs.exact_counts, stack.obs.tail_counts)
    cpu0 = stack.pipeline.resources()
    svc0 = service_resources(stack.services)
    series: list[tuple[float, int]] = []
    progress(f"{label}: {readings} readings as fast as the gateways publish")
    t0 = time.monotonic()
    wall0 = time.time()
    stack.gateways.publish_count(readings)
    stack.gateways.wait_all()
    published_s = time.monotonic() - t0
    n, t_last = stack.obs.wait_for(base + readings, stall_s=30.0, series=series)
    elapsed = t_last - t0
    stored = n - base
    cpu1 = stack.pipeline.resources()
    svc1 = service_resources(stack.services)
    pg1 = stack.obs.pg_stats()
    res = {
        "events_per_s": round(stored / elapsed) if elapsed > 0 else None,
        "readings": readings,
        "stored": stored,
        "seconds": round(elapsed, 2),
        "publish_s": round(published_s, 2),
        "cpu_s": (cpu := _cpu_delta(cpu0, cpu1) | _cpu_delta(svc0, svc1)),
        # CPU per stored reading per process, and how many of the machine's cores the pipeline used.
        "us_per_reading": {k: round(v / max(1, stored) * 1e6, 1) for k, v in cpu.items()},
        "cores_used": round(sum(cpu.values()) / elapsed, 2) if elapsed > 0 else None,
        "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)],  # the machine's 1-min load, start / end
        # PostgreSQL's write work in the phase: WAL bytes, transaction ids, checkpoints.
        "postgres": {k: v - pg0[k] for k, v in pg1.items() if k in pg0},
        "row_counts": {"exact": stack.obs.exact_counts - polls0[0], "tail": stack.obs.tail_counts - polls0[1]},
        "series": [(round(t - wall0, 2), c - base) for t, c in series],
    }
    progress(f"{label}: {res['events_per_s']} events/s ({stored}/{readings} stored in {elapsed:.1f} s)")
    return res


def _cpu_delta(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {k: round(v["cpu_s"] - a[k]["cpu_s"], 2) for k, v in b.items() if k in a}


def latency_phase(stack: Stack, rate: float, duration: float, fall_every_s: float) -> dict[str, Any]:
    """Open loop at ``rate`` with falls injected by a second thread."""
    progress(f"latency: {rate:.0f} readings/s for {duration:.0f} s, a fall every {fall_every_s} s")
    stop = threading.Event()

    def falls() -> None:
        while not stop.wait(fall_every_s):
            stack.falls.inject("latency")

    base = stack.obs.mark() or 0
    th = threading.Thread(target=falls, daemon=True)
    th.start()
    sent = stack.gateways.publish_rate(rate, duration)
    stop.set()
    th.join()
    stack.gateways.wait_all()
    n, _ = stack.obs.wait_for(base + sent, stall_s=30.0)
    time.sleep(2.0)
    return {"rate": rate, "published": sent, "stored": n - base, **fall_latencies(stack, "latency")}


def backlog_phase(stack: Stack, readings: int, fall_every_s: float) -> dict[str, Any]:
    """Dump ``readings`` at once; inject falls while the worker drains the bulk lane."""
    progress(f"backlog: {readings} readings dumped, falls injected while it drains")
    base = stack.obs.mark() or 0
    stack.gateways.publish_count(readings)
    stack.gateways.wait_all()
    backlog_at_start = readings - ((stack.obs.count() or base) - base)
    while True:
        stack.falls.inject("backlog")
        time.sleep(fall_every_s)
        n = stack.obs.count()
        if n is not None and n - base >= readings * 0.9:
            break
        if not any(k for k, p in stack.falls.phase_of.items() if p == "backlog") and stack.pipeline.dead():
            break
        if len([k for k, p in stack.falls.phase_of.items() if p == "backlog"]) > 400:
            break
    stack.obs.wait_for(base + readings, stall_s=30.0)
    time.sleep(2.0)
    return {"readings": readings, "backlog_when_falls_started": backlog_at_start,
            **fall_latencies(stack, "backlog")}


def state_per_resident(stack: Stack) -> dict[str, Any]:
    from streams.bench import _changelog_bytes  # the worker bench's own measure of its state

    return _changelog_bytes(stack.settings, f"{stack.settings.worker_app_id}-resident-state-changelog")


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    for noisy in ("kafka", "httpx", "carechain.db.migrate", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    services = PrivateServices()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "homes": args.homes, "batch": args.batch}
    services.up()
    private = RunNames().settings(services)
    ceil: dict[str, float] = {}
    if not args.skip_ceilings:
        ceil = ceilings(services, private, args.ceiling_readings, args.batch)
    result["ceilings"] = ceil
    stack = start_stack(services, args.homes, args.batch, args.out / "logs")
    try:
        result["warmup_s"] = round(warm_up(stack), 1)
        progress(f"pipeline up ({result['warmup_s']} s until a first fall reached the nurse)")
        one = capacity(stack, args.readings, "capacity, 1 worker")
        result["one_worker"] = one
        result["latency"] = latency_phase(stack, args.rate, args.duration, args.fall_every_s)
        result["backlog"] = backlog_phase(stack, args.backlog, args.fall_every_s)
        if not args.skip_two_workers:
            progress("second worker joins the consumer group")
            stack.pipeline.start("worker-2", WORKER_ARGS,
                                 env={"CARECHAIN_STATE_DIR": str(services.root / f"w2-{stack.names.tag}")})
            time.sleep(20.0)  # the group rebalances (session timeout 10 s) and worker 2 restores its tables
            key = stack.falls.inject("rebalance")
            if key is not None:
                wait_fall(stack, key, 60.0)
            two = capacity(stack, args.readings, "capacity, 2 workers")
            result["two_workers"] = two
            if one["events_per_s"] and two["events_per_s"]:
                result["two_to_one_ratio"] = round(two["events_per_s"] / one["events_per_s"], 2)
        stack.gateways.wait_all()
        stack.obs.wait_for(sum(stack.gateways.expected().values()), stall_s=30.0)
        result["resources"] = {**stack.pipeline.resources(), **service_resources(services)}
        result["state"] = state_per_resident(stack)
        audit = stack.obs.audit(stack.gateways.expected())
        result["audit"] = audit
        result["sse"] = {"messages": stack.sse.messages, "connects": stack.sse.connects,
                         "duplicated_proposed": sum(1 for c in stack.sse.proposed.values() if c > 1)}
    finally:
        stack.close(args.keep)
        if args.stop_services:
            services.down()
    best = max((result.get(k, {}).get("events_per_s") or 0) for k in ("one_worker", "two_workers"))
    slowest_ceiling = min(ceil.values()) if ceil else None
    summary = {
        "events_per_s": best,
        "p50_ms": result["latency"]["p50_ms"],
        "p99_ms": result["latency"]["p99_ms"],
        "backlog_p99_ms": result["backlog"]["p99_ms"],
        "ceiling_events_per_s": slowest_ceiling,
        "ratio_to_ceiling": round(best / slowest_ceiling, 3) if slowest_ceiling else None,
        "lost": result["audit"]["lost"],
        "duplicated": result["audit"]["duplicated"],
        "bytes_per_resident": result["state"].get("changelog_bytes_per_resident"),
    }
    out = {**summary, **result}
    write_report(out, args.out)
    for key in ("one_worker", "two_workers"):  # the time series is in the report's plot and e2e.json, not stdout
        if key in out:
            out[key] = {k: v for k, v in out[key].items() if k != "series"}
    return out


def write_report(result: dict[str, Any], out: Path) -> None:
    """bench-results/e2e.md and e2e.png (observations over time per capacity phase)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("one_worker", "1 worker"), ("two_workers", "2 workers")):
        ser = result.get(key, {}).get("series") or []
        if ser:
            ax.plot([s[0] for s in ser], [s[1] for s in ser], label=f"{label}: {result[key]['events_per_s']} ev/s")
    ax.set_xlabel("seconds since the first publish")
    ax.set_ylabel("readings stored in observations")
    ax.set_title("carechain bench e2e: capacity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "e2e.png", dpi=100)
    plt.close(fig)
    c = result.get("ceilings", {})
    lines = [
        f"# carechain bench e2e ({result['started_at']})", "",
        f"homes {result['homes']}, {result['batch']} readings per MQTT message", "",
        "| figure | value |", "|---|---|",
        f"| sustained events/s (best) | {result['events_per_s']} |",
        f"| 1 worker / 2 workers events/s | {result.get('one_worker', {}).get('events_per_s')} / "
        f"{result.get('two_workers', {}).get('events_per_s')} (ratio {result.get('two_to_one_ratio')}) |",
        f"| fall->SSE p50 / p99 ms at {result['latency']['rate']:.0f}/s | {result['p50_ms']} / {result['p99_ms']} |",
        f"| fall->SSE p50 / p99 ms during backlog | {result['backlog']['p50_ms']} / {result['backlog']['p99_ms']} |",
        f"| ceilings Mosquitto / Kafka / COPY | {c.get('mosquitto_events_per_s')} / {c.get('kafka_events_per_s')} / "
        f"{c.get('copy_events_per_s')} |",
        f"| ratio to the slowest ceiling | {result['ratio_to_ceiling']} |",
        f"| lost / duplicated | {result['lost']} / {result['duplicated']} |",
        f"| state per resident (changelog bytes) | {result['bytes_per_resident']} |",
        "", "![capacity](e2e.png)", "",
    ]
    (out / "e2e.md").write_text("\n".join(lines))
    (out / "e2e.json").write_text(json.dumps(result, indent=2, default=str))
