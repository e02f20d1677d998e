"""The Faust worker on the real Kafka: kill -9 mid-stream, restart, state restored, nothing duplicated or missed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from carechain.events import Event, Kind
from carechain.settings import Settings
from streams.synthetic import Home
from tests.conftest import service_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PARTITIONS = 4


def _kafka_reachable(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def topics(settings: Settings) -> Iterator[dict[str, str]]:
    if not _kafka_reachable(settings.kafka_bootstrap):
        service_unavailable(f"Kafka at {settings.kafka_bootstrap}")
    from kafka.admin import KafkaAdminClient, NewTopic

    sfx = uuid.uuid4().hex[:8]
    names = {k: f"test-streams-{sfx}-{k}" for k in ("events", "urgent", "alerts", "feedback", "deadletter")}
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names.values()])
    names["app_id"] = f"test-streams-{sfx}"
    try:
        yield names
    finally:
        existing = set(admin.list_topics())
        mine = [t for t in existing if sfx in t]
        if mine:
            admin.delete_topics(mine)
        admin.close()


class Worker:
    """``carechain worker`` as a subprocess with private topics."""

    def __init__(self, settings: Settings, topics: dict[str, str], log: Path) -> None:
        self.env = dict(
            os.environ,
            CARECHAIN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
            CARECHAIN_KAFKA_PARTITIONS=str(PARTITIONS),
            CARECHAIN_TOPIC_EVENTS=topics["events"],
            CARECHAIN_TOPIC_URGENT=topics["urgent"],
            CARECHAIN_TOPIC_ALERTS=topics["alerts"],
            CARECHAIN_TOPIC_FEEDBACK=topics["feedback"],
            CARECHAIN_TOPIC_DEADLETTER=topics["deadletter"],
            CARECHAIN_WORKER_APP_ID=topics["app_id"],
            CARECHAIN_STATE_DIR=str(log.parent / "state"),
        )
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "carechain.cli", "worker", "--no-store", "--no-plans", "--lateness-s", "5"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Alerts:
    """Collects every message on the private alerts topic in a background thread."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        # Every partition assigned explicitly, from the start: no group, no metadata race.
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=500
        )
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.items: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self.consumer:
                self.items.append(json.loads(msg.value))

    def wait_for(self, keys: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if keys <= {f"{a['incident_key']}#{a['state']}" for a in self.items}:
                return True
            time.sleep(0.2)
        return False

    def seen(self) -> set[str]:
        return {f"{a['incident_key']}#{a['state']}" for a in self.items}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def test_kill_9_mid_stream_restores_state_without_duplicates_or_misses(
    settings: Settings, topics: dict[str, str], tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    homes = {f"r-{i}": Home(resident_id=f"r-{i}", home_id=f"h-{i}", gateway_id=f"gw-{i}") for i in range(6)}

    def send(ev: Event) -> None:
        topic = topics["urgent"] if ev.lane.value == "urgent" else topics["events"]
        producer.send(topic, key=ev.resident_id.encode(), value=ev.to_json())

    def now() -> datetime:
        return datetime.now(UTC)

    def fall(rid: str, room: str = "hall") -> str:
        ev = homes[rid].event(Kind.FALL, True, now(), room=room)
        send(ev)
        return f"{rid}:fall:{int(ev.ts.timestamp())}#firing"

    def heartbeats() -> None:
        for h in homes.values():
            send(h.heartbeat(now()))

    worker = Worker(settings, topics, tmp_path / "worker.log")
    alerts = Alerts(settings, topics["alerts"])
    expected: set[str] = set()
    try:
        worker.start()
        # ready when a probe fall comes out as an alert
        heartbeats()
        probe = fall("r-0")
        producer.flush()
        expected.add(probe)
        assert alerts.wait_for({probe}, 60), "the worker never proposed the probe fall"

        # phase 1: a heart-rate episode begins for r-1 (state that must survive the kill)
        hr = homes["r-1"].event(Kind.HEART_RATE, 150.0, now())
        send(hr)
        episode = f"r-1:vitals_bounds:heart_rate:{int(hr.ts.timestamp())}"
        expected.add(f"{episode}#firing")
        expected.add(fall("r-2"))
        heartbeats()
        producer.flush()
        # ordered events are judged once the lateness (5 s) has passed
        assert alerts.wait_for(expected, 45), f"phase 1 alerts missing: {expected - alerts.seen()}"

        # phase 2: a steady stream; kill -9 in the middle of it; falls before, during and after
        stop = threading.Event()

        def stream() -> None:
            while not stop.is_set():
                heartbeats()
                for h in homes.values():
                    send(h.motion(now(), room="kitchen"))
                time.sleep(0.2)

        feeder = threading.Thread(target=stream, daemon=True)
        feeder.start()
        time.sleep(1.0)
        expected.add(fall("r-3"))
        time.sleep(1.0)
        worker.kill9()
        expected.add(fall("r-4"))  # while no worker runs
        time.sleep(1.0)
        worker.start()
        time.sleep(1.0)
        expected.add(fall("r-5"))
        stop.set()
        feeder.join(5)

        # phase 3: the heart-rate episode goes on (no second alert) and then ends (cleared, same key)
        send(homes["r-1"].event(Kind.HEART_RATE, 155.0, now()))
        time.sleep(0.5)
        send(homes["r-1"].event(Kind.HEART_RATE, 72.0, now()))
        expected.add(f"{episode}#cleared")
        expected.add(fall("r-2", room="bathroom"))  # a second fall (another sensor, another incident)
        heartbeats()
        producer.flush()
        ok = alerts.wait_for(expected, 70)
        time.sleep(2.0)  # let any duplicate show itself
    finally:
        worker.stop()
        alerts.close()
        producer.close()

    seen = [f"{a['incident_key']}#{a['state']}" for a in alerts.items]
    log_tail = (tmp_path / "worker.log").read_text()[-3000:]
    assert ok, f"missing: {sorted(expected - set(seen))}\n{log_tail}"
    duplicates = sorted({k for k in seen if seen.count(k) > 1})
    assert duplicates == [], f"duplicated incident states: {duplicates}"
    hr_firings = [k for k in seen if k.startswith("r-1:vitals_bounds:heart_rate:") and k.endswith("#firing")]
    assert hr_firings == [f"{episode}#firing"], "the heart-rate episode was forgotten across the kill"


def test_rebalance_to_a_second_worker_and_back_loses_and_duplicates_nothing(
    settings: Settings, topics: dict[str, str], tmp_path: Path
) -> None:
    """A second worker joins and leaves while falls and telemetry stream in: two rebalances, each with
    its recovery; every fall is proposed exactly once, by whichever worker owned it then.

    Stream records fetched in a rebalance's last steps are the case of the missed fall (issue #4):
    Faust clears the agents' queues at the very end of a rebalance (streams/worker.py
    ``_rebalance_guard``).
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    homes = {f"r-{i}": Home(resident_id=f"r-{i}", home_id=f"h-{i}", gateway_id=f"gw-{i}") for i in range(6)}
    sent: list[Any] = []

    def send(ev: Event) -> None:
        topic = topics["urgent"] if ev.lane.value == "urgent" else topics["events"]
        sent.append(producer.send(topic, key=ev.resident_id.encode(), value=ev.to_json()))

    expected: set[str] = set()
    lock = threading.Lock()
    n = 0

    def fall() -> None:
        nonlocal n
        rid = f"r-{n % len(homes)}"
        # another sensor each time: every fall is its own incident (one sensor's reports within a minute are one)
        ev = homes[rid].event(Kind.FALL, True, datetime.now(UTC), room=f"room-{n}")
        n += 1
        send(ev)
        with lock:
            expected.add(f"{rid}:fall:{int(ev.ts.timestamp())}#firing")

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Worker(settings, topics, tmp_path / "a" / "worker.log")
    second = Worker(settings, topics, tmp_path / "b" / "worker.log")
    alerts = Alerts(settings, topics["alerts"])
    stop = threading.Event()

    def stream() -> None:
        tick = 0
        while not stop.is_set():
            for h in homes.values():
                send(h.heartbeat(datetime.now(UTC)))
                send(h.motion(datetime.now(UTC), room="kitchen"))
            if tick % 3 == 0:
                fall()  # about 1.7 falls a second, through both rebalances
            tick += 1
            time.sleep(0.2)

    feeder = threading.Thread(target=stream, daemon=True)
    try:
        first.start()
        fall()
        producer.flush()
        assert alerts.wait_for(set(expected), 60), "the first worker never proposed the probe fall"
        feeder.start()
        time.sleep(2.0)
        second.start()  # rebalance 1: half the partitions move to the second worker
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Worker ready" not in second.log.read_text():
            time.sleep(0.5)
        assert "Worker ready" in second.log.read_text(), "the second worker never became ready"
        time.sleep(4.0)
        second.stop()  # rebalance 2: its partitions come back to the first worker
        time.sleep(6.0)
        stop.set()
        feeder.join(5)
        producer.flush()
        assert all(f.is_done and f.succeeded() for f in sent), "a test event was not delivered to Kafka"
        ok = alerts.wait_for(expected, 60)
        time.sleep(2.0)  # let any duplicate show itself
    finally:
        stop.set()
        first.stop()
        second.stop()
        alerts.close()
        producer.close()

    seen = [f"{a['incident_key']}#{a['state']}" for a in alerts.items]
    logs = "\n".join(w.log.read_text()[-2000:] for w in (first, second))
    assert ok, f"missing {len(expected - set(seen))} of {len(expected)}: {sorted(expected - set(seen))}\n{logs}"
    falls = [k for k in seen if ":fall:" in k]
    duplicates = sorted({k for k in falls if falls.count(k) > 1})
    assert duplicates == [], f"duplicated falls: {duplicates}"
    assert len(expected) >= 15, "too few falls sent to cover both rebalances"
