"""Prometheus exposition of the bridge's counters (``carechain bridge --metrics-port``).

The only file of the bridge that uses prometheus-client. The counters live in
:class:`ingest.bridge.BridgeMetrics` and are read at scrape time, so exposing
them costs the hot path nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.bridge import BridgeMetrics


def _snapshot(metrics: BridgeMetrics) -> dict[str, Any]:
    # The bridge thread may add a key while we copy; a retry sees a consistent dict.
    for _ in range(5):
        try:
            return metrics.as_dict()
        except RuntimeError:
            continue
    return metrics.as_dict()


class BridgeCollector(Collector):
    """Turns the bridge's counters into Prometheus metric families on every scrape."""

    def __init__(self, metrics: BridgeMetrics, registry_size: Callable[[], int]) -> None:
        self.metrics = metrics
        self.registry_size = registry_size

    def collect(self) -> Iterator[Any]:
        m = _snapshot(self.metrics)
        yield CounterMetricFamily("carechain_bridge_messages", "MQTT messages handled", value=m["messages"])
        forwarded = CounterMetricFamily("carechain_bridge_forwarded", "events produced, per topic", labels=["topic"])
        for topic, n in sorted(m["forwarded"].items()):
            forwarded.add_metric([topic], n)
        yield forwarded
        dead = CounterMetricFamily("carechain_bridge_deadlettered", "dead letters, per reason", labels=["reason"])
        for reason, n in sorted(m["deadlettered"].items()):
            dead.add_metric([reason], n)
        yield dead
        for name, help_ in (
            ("discarded_no_consent", "readings discarded: home without monitoring consent"),
            ("seq_replays", "readings whose seq was not above the device's last"),
            ("redelivered", "MQTT messages flagged DUP by the broker"),
            ("unacked_stale", "messages whose connection dropped before their ack"),
            ("kafka_retries", "batches Kafka refused and the bridge sent again"),
            ("batches", "batches acknowledged end to end"),
        ):
            yield CounterMetricFamily(f"carechain_bridge_{name}", help_, value=m[name])
        yield GaugeMetricFamily("carechain_bridge_registry_devices", "devices in the registry cache",
                                value=self.registry_size())


def serve(metrics: BridgeMetrics, registry_size: Callable[[], int], host: str, port: int) -> None:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread (its own registry: no process
    collectors from other parts of the code)."""
    registry = CollectorRegistry()
    registry.register(BridgeCollector(metrics, registry_size))
    start_http_server(port, addr=host, registry=registry)
