"""A tiny faust app the Kafka compatibility test runs as a worker process.

It reads ``CC_PROBE_COUNT`` messages from topic ``CC_PROBE_TOPIC`` (created by
faust itself through the Kafka admin API), counts them in a table (so faust
also creates a changelog topic), and writes the count to ``CC_PROBE_RESULT``.
"""

from __future__ import annotations

import os
from pathlib import Path

import faust

APP_ID = os.environ["CC_PROBE_APP"]
TOPIC = os.environ["CC_PROBE_TOPIC"]
COUNT = int(os.environ["CC_PROBE_COUNT"])
RESULT = Path(os.environ["CC_PROBE_RESULT"])

app = faust.App(
    APP_ID,
    broker=os.environ.get("CC_PROBE_BROKER", "kafka://127.0.0.1:19092"),
    store="memory://",
    topic_partitions=2,
    topic_replication_factor=1,
    web_enabled=False,
)
source = app.topic(TOPIC, key_type=str, value_type=str, partitions=2)
counts = app.Table(f"{APP_ID}-counts", default=int, partitions=2)
seen: set[str] = set()


@app.agent(source)
async def count(stream: faust.Stream) -> None:
    async for key, value in stream.items():
        counts[key] += 1
        seen.add(value)
        if len(seen) >= COUNT:
            RESULT.write_text(f"{len(seen)}\n")


@app.task
async def ready() -> None:
    (RESULT.parent / (RESULT.name + ".ready")).write_text("ready\n")


if __name__ == "__main__":
    app.main()
