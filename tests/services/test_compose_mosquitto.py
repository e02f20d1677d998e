"""The deployment's Mosquitto configuration (compose/mosquitto/) loads in the real Mosquitto and enforces its ACL.

The test rewrites only container paths and ports, runs a private broker on free
loopback ports for a few seconds, and stops it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from carechain.services.mosquitto import find_broker, find_dynsec_plugin
from carechain.services.processes import port_open
from carechain.services.tls import ensure_certificates
from tests.conftest import service_unavailable
from tests.services.mqtt_clients import Collector, connect, new_client, stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "mosquitto"
PASSWORDS = {"gw-c-1": "pw-1", "gw-c-2": "pw-2", "bridge": "pw-bridge"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def compose_broker(tmp_path: Path) -> Iterator[dict[str, int]]:
    broker, plugin = find_broker(), find_dynsec_plugin()
    if broker is None or plugin is None or shutil.which("mosquitto_passwd") is None:
        service_unavailable("Mosquitto 2 with the dynamic-security plugin (run `carechain services up`)")
    assert broker is not None and plugin is not None
    config, data, certs = tmp_path / "config", tmp_path / "data", tmp_path / "certs"
    for d in (config, data):
        d.mkdir()
    ensure_certificates(certs)
    shutil.copy(COMPOSE / "acl", config / "acl")
    passwd = config / "passwd"
    passwd.touch(mode=0o600)
    for user, pw in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(data / "dynamic-security.json"), "admin", "pw-admin"],
                   check=True, capture_output=True)
    ports = {"bridge": _free_port(), "tls": _free_port(), "dynsec": _free_port()}
    text = (COMPOSE / "mosquitto.conf").read_text()
    text = text.replace("/mosquitto/config/", f"{config}/").replace("/mosquitto/data/", f"{data}/")
    text = text.replace("/mosquitto/certs/", f"{certs}/").replace("/usr/lib/mosquitto_dynamic_security.so", plugin)
    for container_port, key in ((1883, "bridge"), (8883, "tls"), (8884, "dynsec")):
        text = re.sub(rf"^listener {container_port}$", f"listener {ports[key]} 127.0.0.1", text, flags=re.M)
    if os.geteuid() == 0:
        text += "user root\n"  # the test's temporary files are private to us
    (tmp_path / "mosquitto.conf").write_text(text)
    log = open(tmp_path / "mosquitto.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([broker, "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not all(port_open("127.0.0.1", p) for p in ports.values()):
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            assert time.monotonic() < deadline, "compose Mosquitto did not open its listeners"
            time.sleep(0.05)
        yield ports
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_compose_config_loads_and_its_acl_holds(compose_broker: dict[str, int]) -> None:
    nonce = uuid.uuid4().hex
    bridge = Collector(new_client("c-bridge", "bridge", PASSWORDS["bridge"]))
    connect(bridge.client, "127.0.0.1", compose_broker["bridge"])
    gw = new_client("c-gw", "gw-c-1", PASSWORDS["gw-c-1"])
    connect(gw, "127.0.0.1", compose_broker["bridge"])
    try:
        bridge.subscribe("carechain/v1/gw/+/#")
        gw.publish("carechain/v1/gw/gw-c-2/events", f"forged-{nonce}".encode(), qos=1).wait_for_publish(5)
        gw.publish("carechain/v1/gw/gw-c-1/events", f"own-{nonce}".encode(), qos=1).wait_for_publish(5)
        assert bridge.wait_for(f"own-{nonce}".encode())
        time.sleep(0.2)
        assert f"forged-{nonce}".encode() not in bridge.received()
    finally:
        stop(gw)
        stop(bridge.client)
    with pytest.raises(ConnectionError):
        connect(new_client("c-anon"), "127.0.0.1", compose_broker["bridge"])
