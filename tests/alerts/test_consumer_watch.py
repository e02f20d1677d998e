"""The alert service's consumer replaces itself when stuck in its group join (JoinWatch), on real Kafka."""

from __future__ import annotations

import time
import uuid

from alerts.kafka import CandidateConsumer, FeedbackProducer, JoinWatch
from carechain.candidates import AlertCandidate
from carechain.settings import Settings
from tests.alerts.conftest import T0, candidate
from tests.conftest import service_unavailable


def test_join_watch_flags_only_a_lasting_unstable_membership() -> None:
    w = JoinWatch(stuck_after_s=30)
    assert not w.stuck("<rebalancing>", 0.0)
    assert not w.stuck("<rebalancing>", 29.0)
    assert not w.stuck("<stable>", 29.5)  # stable again: the clock restarts
    assert not w.stuck("<unjoined>", 40.0)
    assert not w.stuck("<rebalancing>", 69.0)
    assert w.stuck("<rebalancing>", 70.5)
    assert not w.stuck(None, 71.0)  # unknown (another client version): never replaced for it


def _drain(consumer: CandidateConsumer, got: list[AlertCandidate], want: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        consumer.run_once(got.extend)


def test_a_replaced_consumer_resumes_from_committed_offsets(settings: Settings) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"cc-alerts-test-watch-{uuid.uuid4().hex[:8]}"
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    except Exception:  # the broker is missing
        service_unavailable("Kafka (127.0.0.1:19092)")
        raise
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    s = settings.model_copy(update={"topic_alerts": topic})
    producer = FeedbackProducer(s)
    consumer = CandidateConsumer(s, producer, group_id=f"{topic}-group")
    try:
        first = [candidate(resident=f"res-{i:04d}", key=f"watch-{i}", at=T0) for i in range(3)]
        for c in first:
            assert producer.send(topic, c.resident_id, c.to_json()).ok
        got: list[AlertCandidate] = []
        _drain(consumer, got, 3)
        assert sorted(c.incident_key for c in got) == ["watch-0", "watch-1", "watch-2"]
        assert consumer.member_state() == "<stable>"  # the watch reads kafka-python's real state

        consumer.replace("test")
        later = [candidate(resident=f"res-{i:04d}", key=f"watch-{i}", at=T0) for i in range(3, 5)]
        for c in later:
            assert producer.send(topic, c.resident_id, c.to_json()).ok
        again: list[AlertCandidate] = []
        _drain(consumer, again, 2)
        time.sleep(0.5)
        consumer.run_once(again.extend)  # nothing already committed comes back
        assert sorted(c.incident_key for c in again) == ["watch-3", "watch-4"]
        assert consumer.replaced == 1 and consumer.member_state() == "<stable>"
    finally:
        consumer.close()
        producer.close()
        admin.delete_topics([topic])
        admin.close()
