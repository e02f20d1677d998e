"""The pipeline heartbeat through the whole real chain: the canary's fall published over MQTT (Mosquitto) ->
``carechain bridge`` -> Kafka -> ``carechain worker`` -> Kafka ``alerts`` -> ``carechain alerts --canary``,
which records the round trip and closes the alert without notifying anyone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from carechain.settings import Settings
from ingest.mqtt import forget_session
from tests.conftest import service_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]


def test_canary_travels_the_whole_chain(settings: Settings, alerts_dsn: str, tmp_path: Path) -> None:
    try:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    except Exception:  # the broker is missing
        service_unavailable("Kafka (127.0.0.1:19092)")
        raise
    sfx = uuid.uuid4().hex[:8]
    topics = {k: f"cc-alerts-canary-{k}-{sfx}" for k in ("events", "urgent", "deadletter", "alerts", "feedback")}
    admin.create_topics([NewTopic(t, 2, 1) for t in topics.values()])
    env = {
        **os.environ,
        "CARECHAIN_DATABASE_URL": alerts_dsn,
        "CARECHAIN_TOPIC_EVENTS": topics["events"],
        "CARECHAIN_TOPIC_URGENT": topics["urgent"],
        "CARECHAIN_TOPIC_DEADLETTER": topics["deadletter"],
        "CARECHAIN_TOPIC_ALERTS": topics["alerts"],
        "CARECHAIN_TOPIC_FEEDBACK": topics["feedback"],
        "CARECHAIN_KAFKA_PARTITIONS": "2",
        "CARECHAIN_MQTT_CLIENT_ID": f"cc-alerts-canary-bridge-{sfx}",
        "CARECHAIN_WORKER_APP_ID": f"cc-alerts-canary-worker-{sfx}",
        "CARECHAIN_ALERTS_GROUP_ID": f"cc-alerts-canary-{sfx}",
        "CARECHAIN_CANARY_GATEWAY_ID": f"gw-canary-{sfx}",
        "CARECHAIN_CANARY_RESIDENT_ID": "canary-1",
        "CARECHAIN_SMTP_PORT": "1",  # nothing may be mailed: a nurse is never told about the canary
    }
    subprocess.run(
        [sys.executable, "-m", "carechain.cli", "alerts", "--seed-canary"], env=env, cwd=ROOT, check=True,
        capture_output=True,
    )  # fmt: skip
    procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    for name, args in (
        ("bridge", ["bridge"]),
        ("worker", ["worker"]),
        ("alerts", ["alerts", "--canary", "--canary-every-s", "10", "--canary-quiet-s", "600"]),
    ):
        log = (tmp_path / f"{name}.log").open("wb")
        cmd = [sys.executable, "-m", "carechain.cli", *args]
        procs.append((subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
    conn = psycopg.connect(alerts_dsn, autocommit=True)
    try:
        end = time.time() + 110
        beats: Any = (0, None)
        while time.time() < end:
            row = conn.execute("SELECT count(*), max(rtt_ms) FROM canary_heartbeats").fetchone()
            assert row is not None
            beats = row
            if beats[0] >= 1:
                break
            time.sleep(1)
        if beats[0] < 1:
            for name in ("bridge", "worker", "alerts"):
                print(name, (tmp_path / f"{name}.log").read_text(errors="replace")[-2000:])
        assert beats[0] >= 1, "no canary came through the chain"
        assert 0 < beats[1] < 30_000
        a = conn.execute("SELECT status, suppressed_by, canary FROM alerts WHERE resident_id = 'canary-1'").fetchone()
        assert a == ("resolved", "canary", True)
        assert conn.execute("SELECT count(*) FROM notification_outbox").fetchone() == (0,)
        print(f"\ncanary round trip MQTT -> alert service: {beats[1]:.0f} ms")
    finally:
        for p, _ in procs:
            p.terminate()
        for p, log in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
            log.close()
        # The bridge's persistent session (subscribed to every gateway) would otherwise queue every
        # message later tests and benchmarks publish on the shared broker, until it expires in 7 days.
        forget_session(settings.mqtt_host, settings.mqtt_port, env["CARECHAIN_MQTT_CLIENT_ID"])
        conn.close()
        admin.delete_topics(list(topics.values()))
        admin.close()
