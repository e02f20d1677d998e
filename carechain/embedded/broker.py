"""An MQTT broker inside the demo process (amqtt, pure Python), and an in-process subscriber.

A real MQTT client (mosquitto_pub, paho, a gateway) can publish into it on
127.0.0.1. Anonymous access on loopback only: this is the demo, not the
deployment (compose/ runs Mosquitto with passwords, an ACL and TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

from amqtt.broker import Broker
from amqtt.client import MQTTClient
from amqtt.mqtt.constants import QOS_1

log = logging.getLogger(__name__)


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when nobody listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


class EmbeddedBroker:
    """amqtt on ``host:port`` (loopback), started and stopped from the running event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    async def start(self) -> int:
        """Start listening; returns the port (another one when ``port`` was taken)."""
        self.port = free_port(self.host, self.port)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._broker = Broker(config)
        await self._broker.start()
        return self.port

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            with contextlib.suppress(Exception):  # amqtt may complain about half-closed sessions
                await broker.shutdown()


Handler = Callable[[str, bytes, bool], Awaitable[None]]  # topic, payload, retained


class Subscriber:
    """An in-process MQTT client (amqtt) that hands every message on ``topics`` to ``handler``.

    QoS 1: the broker redelivers what was not acknowledged, as with the bridge's paho session.
    """

    def __init__(self, url: str, topics: list[str], handler: Handler, client_id: str = "carechain-demo-bridge") -> None:
        self.url = url
        self.topics = topics
        self.handler = handler
        self.client = MQTTClient(client_id=client_id, config={"auto_reconnect": True, "keep_alive": 30})
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.connect(self.url, cleansession=True)
        await self.client.subscribe([(t, QOS_1) for t in self.topics])
        self._task = asyncio.create_task(self._loop(), name="mqtt-subscriber")

    async def _loop(self) -> None:
        while True:
            msg = await self.client.deliver_message()
            if msg is None:
                continue
            try:
                await self.handler(msg.topic, bytes(msg.data or b""), bool(getattr(msg, "retain", False)))
            except Exception:  # bad input never stops the subscriber
                log.exception("handling a message on %s failed", msg.topic)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.disconnect()
