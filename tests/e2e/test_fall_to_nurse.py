"""The system's one full end-to-end test on the real services.

A fall published over MQTT by a seeded home's pendant goes through real subprocesses —
``carechain bridge`` -> Kafka -> ``carechain worker`` -> ``carechain alerts`` ->
PostgreSQL NOTIFY -> ``carechain api`` — and reaches the live SSE stream of the nurse
who cares for that resident, exactly once, with the alert stored under its incident key.

Isolation: a private Mosquitto on a free port (the bridge subscribes to every gateway, so
on the shared broker it would see, and be seen by, everyone else's gateways), and the
shared Kafka and PostgreSQL with a private database, topics and consumer groups.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from carechain.bench_e2e import start_stack, wait_fall, warm_up
from carechain.pipeline import PrivateServices, have_mosquitto
from carechain.services.processes import port_open
from carechain.settings import Settings
from tests.conftest import service_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fall_over_mqtt_reaches_the_nurse_on_sse_once(settings: Settings) -> None:
    kafka_host, _, kafka_port = settings.kafka_bootstrap.rpartition(":")
    pg = urlsplit(settings.database_url)
    if not port_open(kafka_host, int(kafka_port)):
        service_unavailable("Kafka")
    if not port_open(pg.hostname or "127.0.0.1", pg.port or 5432):
        service_unavailable("PostgreSQL")
    if not have_mosquitto():
        service_unavailable("the mosquitto binary")
    # Not pytest's tmp_path: other engineers' pytest runs prune old numbered temp dirs, and the broker's
    # persistence and the API's signing key must stay put for the whole test.
    tmp_path = Path(tempfile.mkdtemp(prefix="cc-e2e-test-"))
    services = PrivateServices(root=tmp_path / "cc", mqtt_port=_free_port(), kafka_port=int(kafka_port),
                               pg_port=pg.port or 5432, api_port=_free_port())
    services.mosquitto_up()
    stack = None
    try:
        stack = start_stack(services, homes=10, batch=10, log_dir=tmp_path / "logs", bring_up=False)
        warm_up(stack, timeout=100.0)  # the first fall that reaches the nurse proves every process is up

        key = stack.falls.inject("check")
        assert key is not None
        latency = wait_fall(stack, key, 20.0)
        assert latency is not None, "the fall never reached the nurse's stream"
        assert latency < 10.0

        time.sleep(1.0)  # anything duplicated would arrive within this
        assert stack.sse.proposed[key] == 1
        with psycopg.connect(stack.settings.database_url) as conn:
            rows = conn.execute(
                "SELECT resident_id, kind, severity FROM alerts WHERE incident_key = %s", (key,)
            ).fetchall()
        assert len(rows) == 1
        resident, kind, severity = rows[0]
        assert key.startswith(f"{resident}:fall:")
        assert (kind, severity) == ("fall", "critical")

        # Every connection to the run's database is cut (what a PostgreSQL restart does to the processes):
        # the next fall must still reach the nurse, once. The chaos run found the alert service skipping
        # candidates, then its Kafka consumer never getting partitions back after such a cut.
        admin = stack.settings.database_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (stack.names.database,),
            ).fetchone()
        assert cut is not None and cut[0] > 0
        after = stack.falls.inject("after-cut")  # published while every process is reconnecting
        assert after is not None
        # Within 30 s: before the API resynced its subscribers after LISTEN came back, it took 67 s.
        assert wait_fall(stack, after, 30.0) is not None, "the fall after the connection cut did not reach the nurse"
        time.sleep(1.0)
        assert stack.sse.proposed[after] == 1
    finally:
        if stack is not None:
            stack.close(keep=False)
        services.mosquitto_down()
        shutil.rmtree(tmp_path, ignore_errors=True)
