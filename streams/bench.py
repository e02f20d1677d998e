"""``carechain bench worker``: the stream worker's throughput, state size and deadline delay.

1. The ceiling: the pure monitor alone, in process (events/s over N residents,
   every detector on), and the state of a resident after 30 days (codec bytes
   and live bytes in memory, measured with tracemalloc).
2. Through the real Kafka: private topics; N residents' events produced first
   (a backlog), one ``carechain worker`` process started (``--no-store``:
   the worker alone, not the database), events/s measured from its committed
   offsets; falls on ``events.urgent`` while the backlog drains measure the
   urgent lane (fall -> alert); when the events stop, every home's gateway
   falls silent and the delay from each deadline (last heartbeat + the plan's
   silence limit) to its alert on ``alerts`` gives the deadline -> candidate
   p99; the state changelog gives bytes per resident as stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from carechain.bench import percentiles, progress
from carechain.care_plan import CarePlan
from carechain.events import Event, Kind
from carechain.settings import Settings
from streams.monitor import ResidentMonitor
from streams.synthetic import Home

ROOMS = ("kitchen", "living", "bedroom", "bathroom", "hall")
#: A home's traffic: mostly motion and heartbeats, some vitals, doors, bed, battery.
MIX: tuple[tuple[Kind, float], ...] = (
    (Kind.MOTION, 0.58),
    (Kind.GATEWAY_HEARTBEAT, 0.25),
    (Kind.HEART_RATE, 0.05),
    (Kind.SPO2, 0.03),
    (Kind.TEMPERATURE, 0.02),
    (Kind.DOOR, 0.03),
    (Kind.BED, 0.03),
    (Kind.BATTERY, 0.01),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carechain bench worker``."""
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=300_000, help="events through Kafka")
    parser.add_argument("--pure-events", type=int, default=300_000, help="events through the pure monitor")
    parser.add_argument("--falls", type=int, default=30, help="falls on the urgent lane during the backlog")
    parser.add_argument("--pure-only", action="store_true", help="skip the Kafka part")
    parser.add_argument("--seed", type=int, default=1)


def _homes(n: int) -> list[Home]:
    return [Home(resident_id=f"bench-r{i}", home_id=f"bench-h{i}", gateway_id=f"bench-gw{i}") for i in range(n)]


def _events(homes: list[Home], count: int, start: datetime, span_s: float, rng: random.Random) -> list[Event]:
    """``count`` events spread over ``span_s`` seconds of event time, homes at random, kinds by MIX."""
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    out = []
    for i in range(count):
        h = homes[rng.randrange(len(homes))]
        kind = rng.choices(kinds, weights)[0]
        ts = start + timedelta(seconds=span_s * i / count)
        value: Any
        room: str | None = rng.choice(ROOMS)
        if kind == Kind.MOTION:
            value = True
        elif kind == Kind.GATEWAY_HEARTBEAT:
            value, room = None, None
        elif kind == Kind.HEART_RATE:
            value = round(rng.gauss(72, 6), 1)
        elif kind == Kind.SPO2:
            value = round(min(100.0, rng.gauss(96, 1.5)), 1)
        elif kind == Kind.TEMPERATURE:
            value = round(rng.gauss(36.8, 0.3), 2)
        elif kind == Kind.DOOR:
            value = rng.choice(["open", "closed"])
        elif kind == Kind.BED:
            value = rng.choice(["in", "out"])
        else:
            value = float(rng.randrange(5, 100))
        out.append(h.event(kind, value, ts, room=room))
    return out


def _warm_state() -> tuple[int, float]:
    """Codec bytes and live bytes of one resident after 30 days of a rich routine."""
    rng = random.Random(7)
    home = Home()
    plan = CarePlan(resident_id="r-1", gateway_silence_s=7200)
    m = ResidentMonitor("r-1", "h-1", plan)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    for d in range(30):
        day = start + timedelta(days=d)
        evs = [home.heartbeat(day + timedelta(hours=h)) for h in range(24)]
        for _ in range(150):
            t = day + timedelta(hours=rng.randrange(7, 22), minutes=rng.randrange(60))
            evs.append(home.motion(t, room=rng.choice(ROOMS)))
        for h in range(0, 24, 2):
            t = day + timedelta(hours=h, minutes=7)
            evs += [
                home.event(Kind.HEART_RATE, round(rng.gauss(68, 3), 1), t, device="watch"),
                home.event(Kind.SPO2, round(min(100, rng.gauss(96, 1)), 1), t, device="watch"),
                home.event(Kind.TEMPERATURE, round(rng.gauss(36.7, 0.2), 2), t, device="thermo"),
            ]
        evs += [
            home.event(Kind.BED, "out", day + timedelta(hours=7), room="bedroom"),
            home.event(Kind.DOSE_TAKEN, "08:00", day + timedelta(hours=8, minutes=5), device="robot"),
            home.event(Kind.DOOR, "open", day + timedelta(hours=11), room="hall"),
            home.event(Kind.BATTERY, 80.0, day + timedelta(hours=12), device="pir"),
            home.event(Kind.BED, "in", day + timedelta(hours=22), room="bedroom"),
        ]
        for e in sorted(evs, key=lambda e: e.ts):
            m.process(e)
        m.tick(day + timedelta(hours=23, minutes=59))
    raw = m.to_bytes()
    copies = [ResidentMonitor.from_bytes(raw, plan) for _ in range(3)]  # warm caches first
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    copies = [ResidentMonitor.from_bytes(raw, plan) for _ in range(200)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    live = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(copies)
    return len(raw), live


def bench_pure(residents: int, count: int, seed: int) -> dict[str, Any]:
    """The ceiling: the pure monitor in process, every detector on."""
    rng = random.Random(seed)
    homes = _homes(residents)
    start = datetime.now(UTC)
    evs = _events(homes, count, start, count / 15_000, rng)
    tn = time.perf_counter()
    monitors = {h.resident_id: ResidentMonitor(h.resident_id, h.home_id) for h in homes}
    new_us = (time.perf_counter() - tn) / len(homes) * 1e6
    t0, c0 = time.perf_counter(), time.process_time()
    for e in evs:
        monitors[e.resident_id].process(e)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    raws = [e.to_json() for e in evs[:50_000]]
    t1 = time.perf_counter()
    for r in raws:
        Event.from_json(r)
    decode_us = (time.perf_counter() - t1) / len(raws) * 1e6
    t2 = time.perf_counter()
    now = start + timedelta(seconds=count / 15_000)
    for m in monitors.values():
        m.tick(now)
    tick_ms = (time.perf_counter() - t2) * 1000
    sample = list(monitors.values())[:1000]
    t3 = time.perf_counter()
    sizes = [len(m.to_bytes()) for m in sample]
    encode_us = (time.perf_counter() - t3) / len(sample) * 1e6
    warm_bytes, warm_live = _warm_state()
    return {
        "ceiling_events_per_s": round(count / elapsed),
        "ceiling_events_per_cpu_s": round(count / cpu),
        "new_resident_us": round(new_us, 1),
        "decode_us_per_event": round(decode_us, 1),
        "tick_all_ms": round(tick_ms, 1),
        "encode_us_per_resident": round(encode_us, 1),
        "state_bytes_fresh_mean": round(sum(sizes) / len(sizes)),
        "state_bytes_30_days": warm_bytes,
        "memory_bytes_30_days": round(warm_live),
    }


def _topics(settings: Settings, sfx: str) -> dict[str, str]:
    from kafka.admin import KafkaAdminClient, NewTopic

    names = {k: f"bench-worker-{sfx}-{k}" for k in ("events", "urgent", "alerts", "feedback", "deadletter")}
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(t, settings.kafka_partitions, 1) for t in names.values()])
    admin.close()
    return names


def _delete_topics(settings: Settings, sfx: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    mine = [t for t in admin.list_topics() if sfx in t]
    if mine:
        admin.delete_topics(mine)
    admin.close()


def bench_kafka(settings: Settings, residents: int, count: int, falls: int, seed: int) -> dict[str, Any]:
    """One worker process through the real Kafka."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition

    rng = random.Random(seed)
    sfx = uuid.uuid4().hex[:8]
    topics = _topics(settings, sfx)
    app_id = f"bench-worker-{sfx}"
    homes = _homes(residents)
    start = datetime.now(UTC)
    evs = _events(homes, count, start, 20.0, rng)
    last_heard: dict[str, float] = {}
    for e in evs:
        last_heard[e.resident_id] = max(last_heard.get(e.resident_id, 0.0), e.ts.timestamp())
    progress(f"producing {count} events for {residents} residents ...")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, linger_ms=20, batch_size=256_000)
    for e in evs:
        producer.send(topics["events"], key=e.resident_id.encode(), value=e.to_json())
    producer.flush()
    alerts: list[tuple[float, dict[str, Any]]] = []
    stop = threading.Event()

    def collect() -> None:
        consumer = KafkaConsumer(
            topics["alerts"], bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
        )
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    alerts.append((time.time(), json.loads(r.value)))
        consumer.close()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    env = dict(
        os.environ,
        CARECHAIN_TOPIC_EVENTS=topics["events"],
        CARECHAIN_TOPIC_URGENT=topics["urgent"],
        CARECHAIN_TOPIC_ALERTS=topics["alerts"],
        CARECHAIN_TOPIC_FEEDBACK=topics["feedback"],
        CARECHAIN_TOPIC_DEADLETTER=topics["deadletter"],
        CARECHAIN_WORKER_APP_ID=app_id,
        CARECHAIN_LOG_LEVEL="WARNING",
        CARECHAIN_STATE_DIR=tempfile.mkdtemp(prefix=f"{app_id}-"),
    )
    log = Path(tempfile.gettempdir()) / f"{app_id}.log"
    progress(f"starting the worker (log {log}) ...")
    proc = subprocess.Popen(
        [sys.executable, "-m", "carechain.cli", "worker", "--no-store", "--no-plans"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    tps = [TopicPartition(topics["events"], p) for p in range(settings.kafka_partitions)]

    def committed() -> int:
        try:
            offsets = admin.list_group_offsets(app_id).get(app_id, {})
        except Exception:  # the group does not exist before the worker joins
            return 0
        return sum(offsets[tp].offset for tp in tps if tp in offsets and offsets[tp].offset > 0)

    fall_sent: dict[str, float] = {}
    samples: list[tuple[float, int, float]] = []  # (monotonic, committed events, worker CPU seconds)
    worker_ps = psutil.Process(proc.pid)

    def cpu() -> float:
        try:
            t = worker_ps.cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return 0.0

    try:
        deadline = time.monotonic() + 600
        fall_every = max(1, count // max(1, falls) // 2)
        while time.monotonic() < deadline:
            done = committed()
            samples.append((time.monotonic(), done, cpu()))
            if done and len(fall_sent) < falls and done // fall_every >= len(fall_sent):
                h = homes[rng.randrange(len(homes))]
                fall = h.event(Kind.FALL, True, datetime.now(UTC), room="hall", device=f"fall-{len(fall_sent)}")
                producer.send(topics["urgent"], key=h.resident_id.encode(), value=fall.to_json())
                producer.flush()
                fall_sent[f"{h.resident_id}:fall:{int(fall.ts.timestamp())}"] = time.time()
            if done >= count:
                break
            time.sleep(0.25)
        progress("backlog consumed; waiting for the gateways' silence alerts ...")
        silence = CarePlan("x").gateway_silence_s
        wait_until = time.time() + max(0.0, max(last_heard.values()) + silence - time.time()) + 25
        while time.time() < wait_until:
            n_silent = sum(1 for _, a in alerts if a["kind"] == "gateway_silent")
            if n_silent >= len(last_heard):
                break
            time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        stop.set()
        collector.join(5)
        producer.close()
        admin.close()

    # events/s: the steady part between 10% and 90% of the backlog
    # The worker commits in steps (its checkpoints, every few seconds), so both ends are the
    # first sample that saw their committed value: a step's plateau does not count as work.
    moving = [s for s in samples if 0.1 * count <= s[1] <= 0.9 * count]
    if len({n for _, n, _ in moving}) < 2:  # fewer than two steps inside: every committed step
        moving = [s for s in samples if s[1] > 0]
    rate = cpu_rate = None
    if len(moving) >= 2:
        begin = moving[0]
        end = next(s for s in moving if s[1] == moving[-1][1])
        if end[0] > begin[0] and end[1] > begin[1]:
            rate = (end[1] - begin[1]) / (end[0] - begin[0])
            used = end[2] - begin[2]
            cpu_rate = (end[1] - begin[1]) / used if used > 0 else None
    first = next(((t, n) for t, n, _ in samples if n > 0), None)
    last = next((t for t, n, _ in samples if n >= count), None)
    # From the first commit on (the events it covered were handled before it was seen).
    overall = (count - first[1]) / (last - first[0]) if first and last and last > first[0] else None
    delays = []
    fall_ms = []
    keys = [a["incident_key"] + "#" + a["state"] for _, a in alerts]
    for at, a in alerts:
        if a["kind"] == "gateway_silent" and a["state"] == "firing":
            due = last_heard.get(a["resident_id"], 0.0) + silence
            delays.append((at - due) * 1000)
        if a["kind"] == "fall" and a["incident_key"] in fall_sent:
            fall_ms.append((at - fall_sent[a["incident_key"]]) * 1000)
    changelog = _changelog_bytes(settings, f"{app_id}-resident-state-changelog")
    _delete_topics(settings, sfx)
    dl = percentiles(delays)
    fl = percentiles(fall_ms)
    return {
        "events_per_s": round(rate) if rate else None,
        "events_per_s_overall": round(overall) if overall else None,
        "events_per_worker_cpu_s": round(cpu_rate) if cpu_rate else None,
        "load_average_1m": round(os.getloadavg()[0], 1),
        "events": count,
        "residents": residents,
        "deadline_to_candidate_p50_ms": dl["p50_ms"],
        "deadline_to_candidate_p99_ms": dl["p99_ms"],
        "deadline_samples": dl["samples"],
        "urgent_fall_to_alert_p50_ms": fl["p50_ms"],
        "urgent_fall_to_alert_p99_ms": fl["p99_ms"],
        "urgent_falls": f"{len(fall_ms)}/{len(fall_sent)}",
        "duplicated": len(keys) - len(set(keys)),
        **changelog,
    }


def _changelog_bytes(settings: Settings, topic: str) -> dict[str, Any]:
    """Latest state per resident as stored in the changelog: mean and max bytes."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    latest: dict[bytes, int] = {}
    messages = 0
    for msg in consumer:
        messages += 1
        if msg.key is not None and msg.value is not None:
            latest[msg.key] = len(msg.value)
    consumer.close()
    if not latest:
        return {"changelog_bytes_per_resident": None, "changelog_messages": messages}
    return {
        "changelog_bytes_per_resident": round(sum(latest.values()) / len(latest)),
        "changelog_bytes_max": max(latest.values()),
        "changelog_residents": len(latest),
        "changelog_messages": messages,
    }


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Both parts; one JSON object."""
    logging.getLogger("kafka").setLevel(logging.WARNING)
    progress(f"pure monitor: {args.pure_events} events over {args.residents} residents ...")
    result: dict[str, Any] = bench_pure(args.residents, args.pure_events, args.seed)
    result["bytes_per_resident"] = result["state_bytes_30_days"]
    progress(json.dumps(result))
    if not args.pure_only:
        result.update(bench_kafka(settings, args.residents, args.events, args.falls, args.seed))
    return result
