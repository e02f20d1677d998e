"""The bridge's Kafka producer on the real broker: every record acknowledged once, in order per key,
also when record batches fill up and when bridge batches arrive faster than requests complete."""

from __future__ import annotations

from collections import defaultdict

import pytest

from carechain.settings import Settings
from ingest.kafka import EventProducer, ProducerTuning
from ingest.messages import Record
from tests.ingest.live import consumer, drain, private_topics, tag

pytestmark = pytest.mark.integration


def test_many_small_batches_and_full_record_batches_keep_order_per_key(live: Settings) -> None:
    keys = [f"r-{i}".encode() for i in range(12)]
    pad = b"x" * 300
    with private_topics(live, partitions=4) as topics:
        # 8 KiB record batches: ~25 records each, so most partitions' records spill into several.
        producer = EventProducer(live.kafka_bootstrap, client_id=f"test-{tag()}",
                                 tuning=ProducerTuning(batch_size=8 * 1024), urgent_topics=[topics.urgent])
        try:
            producer.warm([topics.events, topics.urgent])
            pending, n = [], 0
            for b in range(300):  # handed over without waiting: they coalesce while requests are out
                records = []
                for _ in range(40 if b % 3 else 1):
                    key = keys[n % len(keys)]
                    topic = topics.urgent if n % 97 == 0 else topics.events
                    records.append(Record(topic, key, b"%d|" % n + pad))
                    n += 1
                pending.append(producer.send_batch(records))
            for p in pending:
                p.wait()
            assert all(p.done() for p in pending)
        finally:
            producer.close()
        urgent = sum(1 for i in range(n) if i % 97 == 0)
        got = []
        for topic, want in ((topics.events, n - urgent), (topics.urgent, urgent)):
            c = consumer(live, topic)
            got += drain(c, lambda recs, w=want: len(recs) >= w, timeout=20)
            c.close()
    seen = [int(r.value.split(b"|")[0]) for r in got]
    assert sorted(seen) == list(range(n)), f"{n - len(set(seen))} missing, {len(seen) - len(set(seen))} twice"
    by_key: dict[tuple[bytes | None, bool], list[int]] = defaultdict(list)
    partitions: dict[bytes | None, set[int]] = defaultdict(set)
    for r in got:
        i = int(r.value.split(b"|")[0])
        by_key[(r.key, i % 97 == 0)].append(i)
        if i % 97:
            partitions[r.key].add(r.partition)
    for seq in by_key.values():
        assert seq == sorted(seq)  # per key and lane, in the order handed over
    assert all(len(p) == 1 for p in partitions.values())  # one partition per key
