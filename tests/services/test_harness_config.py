"""Unit tests of the harness's generated configuration (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carechain.services.broker_accounts import _check_id, gateway_topic_prefix
from carechain.services.kafka import KAFKA_VERSION, Kafka, _pom, harness_topics
from carechain.services.mosquitto import ACL_RULES, Mosquitto
from carechain.services.postgres import target_from_url
from carechain.services.tls import tls_files
from carechain.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_compose_acl_is_the_harness_acl() -> None:
    # The secured local listeners must enforce exactly what the deployment enforces.
    assert (REPO / "compose" / "mosquitto" / "acl").read_text() == ACL_RULES


def test_compose_config_keeps_the_queue_limits() -> None:
    conf = (REPO / "compose" / "mosquitto" / "mosquitto.conf").read_text()
    for line in ("max_queued_messages 1000000", "max_queued_bytes 0", "max_inflight_messages 1000",
                 "persistence true", "allow_anonymous false"):
        assert line in conf.splitlines(), line


def test_database_target_from_url() -> None:
    t = target_from_url("postgresql://carechain:s%40cret@127.0.0.1:55432/carechain")
    assert (t.host, t.port, t.user, t.password, t.database) == ("127.0.0.1", 55432, "carechain", "s@cret", "carechain")


def test_kafka_pom_adds_the_logging_binding_the_broker_pom_lacks() -> None:
    assert "log4j-slf4j2-impl" in _pom("4.4.0") and "log4j-core" in _pom("4.4.0")
    assert "slf4j-reload4j" in _pom("3.9.2") and "log4j-core" not in _pom("3.9.2")
    assert f"<version>{KAFKA_VERSION}</version>" in _pom(KAFKA_VERSION)


def test_kafka_properties_single_node_on_loopback(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, cache_dir=tmp_path, kafka_partitions=8)
    props = dict(
        line.split("=", 1) for line in Kafka(settings)._server_properties().splitlines() if "=" in line
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:19092")
    assert props["num.partitions"] == "8"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert harness_topics(settings) == ["events", "events.urgent", "deadletter", "alerts", "feedback"]


def test_mosquitto_config_listeners_and_queues(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    conf = Mosquitto(settings)._config(tls_files(tmp_path), "/usr/lib/x/mosquitto_dynamic_security.so").splitlines()
    assert "listener 18830 127.0.0.1" in conf
    assert "listener 18831 127.0.0.1" in conf
    assert "listener 18883 127.0.0.1" in conf
    assert "listener 18832 127.0.0.1" in conf
    assert "max_queued_messages 1000000" in conf
    assert "persistence true" in conf
    # No listener binds beyond loopback.
    assert all(line.endswith("127.0.0.1") for line in conf if line.startswith("listener "))


@pytest.mark.parametrize("bad", ["", "gw/1", "gw+", "gw#", "#", "+", "a" * 65, "-gw"])
def test_gateway_ids_that_would_widen_the_acl_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        _check_id(bad)


def test_gateway_topic_prefix() -> None:
    _check_id("gw-0042")
    assert gateway_topic_prefix("gw-0042") == "carechain/v1/gw/gw-0042/#"
