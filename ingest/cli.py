"""``carechain bridge``: run the MQTT -> Kafka ingest bridge until SIGTERM/SIGINT.

Connections come from the settings (``CARECHAIN_MQTT_*``, ``CARECHAIN_KAFKA_BOOTSTRAP``,
``CARECHAIN_DATABASE_URL``, ``CARECHAIN_TOPIC_EVENTS`` / ``_URGENT`` / ``_DEADLETTER``,
``CARECHAIN_MQTT_CLIENT_ID``); the options below tune the bridge itself.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from carechain.settings import Settings
from ingest.bridge import Bridge, BridgeTuning, LaneTopics
from ingest.kafka import EventProducer, ProducerTuning
from ingest.messages import DeliveryError
from ingest.mqtt import GatewaySubscriber
from ingest.registry import DeviceRegistry, RegistryUnavailable

if TYPE_CHECKING:
    from ingest.producer_process import ProcessProducer

log = logging.getLogger("ingest.bridge")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carechain bridge``."""
    parser.add_argument("--client-id", help="MQTT client id (the persistent session); default from settings")
    parser.add_argument("--batch-max", type=int, default=500, help="most MQTT messages per Kafka batch")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="longest wait to fill a batch")
    parser.add_argument("--inflight-batches", type=int, default=4,
                        help="Kafka batches in flight while the next is routed (MQTT acks stay in order)")
    parser.add_argument("--producer-process", action=argparse.BooleanOptionalAction, default=False,
                        help="run the Kafka producer in a child process (it was worth it when producing cost "
                             "~18 us a record; with the batch API in-process is cheaper: docs/ingest.md)")
    parser.add_argument("--linger-ms", type=int, default=0,
                        help="Kafka producer linger (the bridge hands over complete record batches, which "
                             "are sent at once; this only delays batches that are not closed)")
    parser.add_argument("--kafka-batch-bytes", type=int, default=512 * 1024, help="Kafka producer batch size")
    parser.add_argument("--compression", choices=["none", "gzip"], default="none", help="Kafka compression")
    parser.add_argument("--registry-refresh-s", type=float, default=30.0,
                        help="reload the device registry this often even without a NOTIFY")
    parser.add_argument("--session-expiry-s", type=int, default=7 * 24 * 3600,
                        help="how long the broker keeps the bridge's session and queue while it is down")
    parser.add_argument("--startup-wait-s", type=float, default=60.0,
                        help="how long to wait for PostgreSQL and Kafka at start-up")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve Prometheus /metrics on this port (0: off)")
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics")
    parser.add_argument("--stats-interval-s", type=float, default=30.0, help="log the counters this often")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start registry, producer and subscriber; loop until a signal; shut down in order."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the batch in hand, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    client_id = args.client_id or settings.mqtt_client_id
    registry = DeviceRegistry(settings.database_url, refresh_s=args.registry_refresh_s)
    try:
        registry.start(wait_s=args.startup_wait_s)
    except RegistryUnavailable as exc:
        log.error("%s; is the database migrated (`carechain db migrate`)?", exc)
        return 2
    producer = _connect_kafka(args, settings, client_id, stop)
    if producer is None:
        registry.stop()
        return 2
    topics = LaneTopics(settings.topic_events, settings.topic_urgent, settings.topic_deadletter)
    try:
        missing = producer.missing_topics([topics.events, topics.urgent, topics.deadletter])
        if missing:
            log.error("Kafka topics missing: %s (run `carechain services up`)", ", ".join(missing))
            return 2
        try:
            producer.warm([topics.urgent, topics.events, topics.deadletter])
        except DeliveryError as exc:  # fetched again on first use
            log.warning("Kafka metadata not fetched at start-up: %s", exc)
        subscriber = GatewaySubscriber(
            settings.mqtt_host,
            settings.mqtt_port,
            client_id,
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            tls_ca=settings.mqtt_tls_ca,
            session_expiry_s=args.session_expiry_s,
        )
        bridge = Bridge(
            registry,
            producer,
            subscriber.ack,
            topics=topics,
            tuning=BridgeTuning(
                batch_max_messages=args.batch_max,
                batch_wait_ms=args.batch_wait_ms,
                max_inflight_batches=args.inflight_batches,
                stats_interval_s=args.stats_interval_s,
            ),
        )
        if args.metrics_port:
            from ingest.metrics import serve

            serve(bridge.metrics, lambda: len(registry.snapshot), args.metrics_host, args.metrics_port)
            log.info("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
        subscriber.start(bridge.offer)
        try:
            while not subscriber.wait_connected(1.0):
                if stop.is_set():
                    return 0
                log.info("waiting for MQTT %s:%d", settings.mqtt_host, settings.mqtt_port)
            log.info("bridge ready: MQTT %s:%d -> Kafka %s (%s, %s, %s)", settings.mqtt_host, settings.mqtt_port,
                     settings.kafka_bootstrap, topics.events, topics.urgent, topics.deadletter)
            bridge.run(stop)
        finally:
            subscriber.stop()
        return 0
    finally:
        producer.close()
        registry.stop()


def _connect_kafka(args: argparse.Namespace, settings: Settings, client_id: str,
                   stop: threading.Event) -> EventProducer | ProcessProducer | None:
    """The producer, once Kafka answers (retrying with backoff up to ``--startup-wait-s``)."""
    tuning = ProducerTuning(
        linger_ms=args.linger_ms,
        batch_size=args.kafka_batch_bytes,
        compression_type=None if args.compression == "none" else args.compression,
    )
    deadline = time.monotonic() + args.startup_wait_s
    delay = 0.5
    while True:
        try:
            if args.producer_process:
                from ingest.producer_process import ProcessProducer

                return ProcessProducer(settings.kafka_bootstrap, client_id, tuning, [settings.topic_urgent])
            return EventProducer(settings.kafka_bootstrap, client_id=client_id, tuning=tuning,
                                 urgent_topics=[settings.topic_urgent])
        except DeliveryError as exc:
            if time.monotonic() > deadline or stop.is_set():
                log.error("%s; giving up (is `carechain services up` running?)", exc)
                return None
            log.warning("%s; retrying", exc)
            stop.wait(delay)
            delay = min(delay * 2, 5.0)
