"""The harness's Kafka works with both clients the project uses: kafka-python and aiokafka (faust).

These tests are the evidence for the Kafka version choice (docs/services.md).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewTopic as AioNewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from carechain.services.kafka import harness_topics
from carechain.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROBE = Path(__file__).with_name("faust_probe.py")


def _private(prefix: str) -> str:
    return f"cc-test-services-{prefix}-{uuid.uuid4().hex[:8]}"


def test_harness_topics_exist_with_the_configured_partitions(kafka: Settings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap, client_id="test-services")
    try:
        described = {d.get("name", d.get("topic")): d for d in admin.describe_topics(harness_topics(kafka))}
    finally:
        admin.close()
    for topic in harness_topics(kafka):
        assert topic in described and described[topic]["error_code"] == 0, topic
        assert len(described[topic]["partitions"]) == kafka.kafka_partitions, topic


def test_kafka_python_produce_and_consume(kafka: Settings) -> None:
    topic = _private("kp")
    admin = KafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap, client_id="test-services")
    try:
        admin.create_topics([NewTopic(topic, 4, 1)])
        producer = KafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, acks="all", enable_idempotence=True,
                                 linger_ms=5)
        try:
            for i in range(1000):
                producer.send(topic, key=f"r{i % 10}".encode(), value=str(i).encode())
            producer.flush(30)
        finally:
            producer.close()
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka.kafka_bootstrap, group_id=_private("kp-group"),
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=15000)
        per_key: dict[bytes, list[int]] = {}
        try:
            for msg in consumer:
                assert msg.key is not None and msg.value is not None
                per_key.setdefault(msg.key, []).append(int(msg.value))
                if sum(map(len, per_key.values())) == 1000:
                    break
            consumer.commit()
        finally:
            consumer.close()
        assert sum(map(len, per_key.values())) == 1000
        # Same key -> same partition -> order kept.
        assert all(v == sorted(v) for v in per_key.values())
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_aiokafka_admin_produce_and_consume(kafka: Settings) -> None:
    asyncio.run(_aiokafka_roundtrip(kafka.kafka_bootstrap))


async def _aiokafka_roundtrip(bootstrap: str) -> None:
    topic = _private("aio")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Kafka 4 refuses CreateTopics v1; aiokafka 0.13+ must negotiate a newer version.
        await admin.create_topics([AioNewTopic(topic, 3, 1)])
        # The controller has committed the topic; the broker's metadata may lag a moment behind.
        deadline = time.monotonic() + 15
        while topic not in await admin.list_topics() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert topic in await admin.list_topics()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for i in range(500):
                await producer.send(topic, key=f"r{i % 7}".encode(), value=str(i).encode())
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=_private("aio-group"),
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        got: list[int] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 500 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=1000)
                got.extend(int(m.value) for msgs in batch.values() for m in msgs if m.value is not None)
            await consumer.commit()
        finally:
            await consumer.stop()
        assert sorted(got) == list(range(500))
    finally:
        await admin.delete_topics([topic])
        await admin.close()


def test_faust_worker_creates_its_topics_and_processes_messages(kafka: Settings, tmp_path: Path) -> None:
    app_id = _private("faust")
    source = f"{app_id}-source"
    result = tmp_path / "count"
    count = 200
    asyncio.run(_create_topic(kafka.kafka_bootstrap, source, 2))
    env = {**os.environ, "CC_PROBE_APP": app_id, "CC_PROBE_TOPIC": source, "CC_PROBE_COUNT": str(count),
           "CC_PROBE_RESULT": str(result), "CC_PROBE_BROKER": f"kafka://{kafka.kafka_bootstrap}"}
    log = tmp_path / "faust.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, str(PROBE), "worker", "-l", "warn"], env=env, cwd=tmp_path,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        producer = KafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, acks="all")
        try:
            for i in range(count):
                producer.send(source, key=f"r{i % 4}".encode(), value=f'"m{i}"'.encode())
            producer.flush(30)
        finally:
            producer.close()
        deadline = time.monotonic() + 120
        while not result.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
        assert result.exists(), f"faust did not process {count} messages:\n{log.read_text()[-3000:]}"
        assert int(result.read_text()) == count
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    admin = KafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap, client_id="test-services")
    try:
        topics = set(admin.list_topics())
        # faust created its table's changelog itself, through the admin API.
        created = {t for t in topics if t.startswith(app_id)}
        assert f"{app_id}-{app_id}-counts-changelog" in created
        admin.delete_topics(sorted(created))
    finally:
        admin.close()


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([AioNewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
