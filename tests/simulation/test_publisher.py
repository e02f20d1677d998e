"""The live publisher against a real broker: the embedded amqtt broker (pure Python, own port)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from carechain.embedded.broker import EmbeddedBroker, Subscriber
from carechain.simulation.homes import home_config
from carechain.simulation.publisher import BrokerAddress, SimClock, publish_stream
from carechain.simulation.stream import demo_incidents, home_stream, merged


def test_gateways_publish_paced_by_an_accelerated_clock_and_the_broker_sends_the_will() -> None:
    async def main() -> tuple[Counter[str], list[bytes], int]:
        broker = EmbeddedBroker(port=0)
        port = await broker.start()
        got: Counter[str] = Counter()
        statuses: list[bytes] = []

        async def on_message(topic: str, payload: bytes, retained: bool) -> None:
            channel = topic.rsplit("/", 1)[1]
            got[channel] += 1
            if channel == "status" and "gw-0002" in topic:
                statuses.append(payload)

        sub = Subscriber(
            f"mqtt://127.0.0.1:{port}", ["carechain/v1/gw/+/events", "carechain/v1/gw/+/status"], on_message
        )
        await sub.start()
        now = time.time()
        start = now - 300
        homes = [home_config(1, i) for i in range(1, 4)]
        incidents = demo_incidents(1, homes, datetime.fromtimestamp(start, UTC), 5)
        stream = merged([home_stream(1, h, datetime.fromtimestamp(start, UTC), None, incidents) for h in homes])
        stop = threading.Event()
        threading.Timer(4.0, stop.set).start()
        stats = await asyncio.to_thread(
            publish_stream, stream, BrokerAddress("127.0.0.1", port), SimClock(start, 60, now), stop
        )
        await asyncio.sleep(0.5)
        await sub.stop()
        await broker.stop()
        return got, statuses, stats.drops

    got, statuses, drops = asyncio.run(main())
    # 4 s at 60x = 240 s of three homes: about 16 heartbeat batches each, plus urgent readings.
    assert got["events"] >= 3 * 12
    assert drops == 1  # home 2's gateway drops out after 2 simulated minutes
    assert b"offline" in statuses  # the broker published its last will (or the clean shutdown's status)
