"""Mosquitto for local development and tests, on 127.0.0.1 only.

One broker, four listeners (``per_listener_settings true``):

* ``Settings.mqtt_port`` (18830): anonymous, for local development and tests.
* ``SECURE_PORT`` (18831): password file + the ACL of the distributed
  deployment (``compose/mosquitto/acl``), for the ACL tests.
* ``TLS_PORT`` (18883): the same password file and ACL over TLS, with a CA the
  harness generates (``ca_cert_path``).
* ``PROVISIONED_PORT`` (18832): the dynamic-security plugin, where
  ``broker_accounts`` creates and revokes gateway accounts at run time.

Queue limits are sized so that a slow or briefly absent QoS 1 subscriber (the
bridge) loses nothing: see ``QUEUE_SETTINGS`` and docs/services.md.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from carechain.services.base import ServiceError, ServiceStatus
from carechain.services.debian import apt_install
from carechain.services.processes import (
    chown_tree,
    grant_traverse,
    port_open,
    read_pid,
    spawn_detached,
    terminate,
    wait_until,
)
from carechain.services.tls import TlsFiles, ensure_certificates, tls_files
from carechain.settings import Settings

log = logging.getLogger(__name__)

SECURE_PORT = 18831
PROVISIONED_PORT = 18832
TLS_PORT = 18883
SYSTEM_USER = "mosquitto"

#: The ACL of the distributed deployment; compose/mosquitto/acl holds the same text (a test checks).
#: A gateway may publish only under its own id (its username); the bridge may read every gateway.
ACL_RULES = """\
# CareChain broker ACL (Mosquitto acl_file). The same rules run in the local
# harness's secured listeners; tests/services checks the two stay identical.

# Every gateway (username = gateway id) may publish only under its own id.
pattern write carechain/v1/gw/%u/#

# The ingest bridge reads what every gateway publishes.
user bridge
topic read carechain/v1/gw/+/#
"""

#: Local test accounts on the secured listeners (password file); local use only.
TEST_ACCOUNTS: dict[str, str] = {
    "gw-test-1": "gw-test-1-secret",
    "gw-test-2": "gw-test-2-secret",
    "bridge": "bridge-secret",
}

#: Queue sizing (see docs/services.md). The default max_queued_messages (1,000) silently dropped
#: 27-47% of QoS 1 messages to a slow Python subscriber on this machine.
QUEUE_SETTINGS = """\
# A QoS 1 subscriber with a persistent session (the bridge) may fall behind or be
# restarted; Mosquitto silently drops what exceeds its queue, so the queue is large
# and bounded by count only (max_queued_bytes 0 = no byte limit).
max_queued_messages 1000000
max_queued_bytes 0
# The bridge acknowledges an MQTT message only after Kafka has it; its batch to
# Kafka can only be as large as the number of unacknowledged messages it holds.
max_inflight_messages 1000
queue_qos0_messages false
"""


def find_broker() -> str | None:
    """Path of the mosquitto binary (it lives in /usr/sbin, often not on PATH)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )


def find_dynsec_plugin() -> str | None:
    """Path of the dynamic-security plugin shipped with Mosquitto 2, if installed."""
    hits = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob("/usr/lib/mosquitto_*.so"))
    hits = [h for h in hits if h.endswith("mosquitto_dynamic_security.so")]
    return hits[0] if hits else None


def ca_cert_path(settings: Settings) -> Path:
    """The CA certificate a client needs for the TLS listener."""
    return tls_files(settings.state_dir / "mosquitto" / "tls").ca_cert


def dynsec_admin_path(settings: Settings) -> Path:
    """File with the dynamic-security admin credentials (JSON: username, password)."""
    return settings.state_dir / "mosquitto" / "dynsec-admin.json"


def mqtt_connects(host: str, port: int, username: str | None = None, password: str | None = None,
                  ca_cert: Path | None = None, timeout: float = 3.0) -> bool:
    """A real MQTT connect: True when the broker answers CONNACK success."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"carechain-health-{os.getpid()}-{time.monotonic_ns()}")
    if username is not None:
        client.username_pw_set(username, password)
    if ca_cert is not None:
        client.tls_set(ca_certs=str(ca_cert))
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not client.is_connected():
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                return False
        return client.is_connected()
    finally:
        client.disconnect()
        client.loop(timeout=0.1)
        sock = client.socket()
        if sock is not None:
            sock.close()


def tls_handshake_ok(host: str, port: int, ca_cert: Path, timeout: float = 3.0) -> bool:
    """True if the listener completes a TLS handshake with a certificate our CA signed."""
    if not ca_cert.exists():
        return False
    context = ssl.create_default_context(cafile=str(ca_cert))
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.unwrap()  # close_notify, so the broker does not log an unexpected EOF
            return True
    except (OSError, ssl.SSLError):
        return False


class Mosquitto:
    """The harness's Mosquitto broker."""

    name = "mosquitto"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = "127.0.0.1"
        self.port = settings.mqtt_port
        self.home = settings.state_dir / "mosquitto"
        self.conf = self.home / "mosquitto.conf"
        self.data = self.home / "data"
        self.passwords = self.home / "passwd"
        self.acl = self.home / "acl"
        self.dynsec = self.home / "dynamic-security.json"
        self.pid_file = self.home / "mosquitto.pid"
        self.log_file = self.home / "mosquitto.log"

    def install(self) -> None:
        """Install Debian's mosquitto and mosquitto-clients when the broker or its tools are missing."""
        if find_broker() is None or shutil.which("mosquitto_passwd") is None or shutil.which("mosquitto_ctrl") is None:
            apt_install(["mosquitto", "mosquitto-clients"])
        if find_broker() is None:
            raise ServiceError("mosquitto installed but the binary was not found")

    def start(self) -> bool:
        """Write the configuration, start the broker detached, wait for a real MQTT connect."""
        if self._answers():
            return False
        if read_pid(self.pid_file, "mosquitto") is None and port_open(self.host, self.port):
            raise ServiceError(f"port {self.port} is taken by a process that is not our Mosquitto")
        broker = find_broker()
        if broker is None:
            raise ServiceError("mosquitto is not installed")
        pid = read_pid(self.pid_file, "mosquitto")
        if pid is None:
            self._prepare()
            pid = spawn_detached([broker, "-c", str(self.conf)], self.log_file, self.pid_file, cwd=self.home)
        wait_until(self._answers, 30, "mosquitto", alive=lambda: read_pid(self.pid_file, "mosquitto") is not None,
                   log_file=self.log_file)
        wait_until(lambda: port_open(self.host, SECURE_PORT), 10, f"mosquitto listener {SECURE_PORT}")
        wait_until(self._tls_ok, 10, f"mosquitto TLS listener {TLS_PORT}")
        return True

    def stop(self) -> bool:
        """SIGTERM (Mosquitto saves its persistence file on exit); False if it was not running."""
        pid = read_pid(self.pid_file, "mosquitto")
        if pid is None:
            return False
        terminate(pid, timeout=30)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> ServiceStatus:
        """Healthy when an anonymous client gets CONNACK on the plain port and the secured ports listen."""
        ok = self._answers() and port_open(self.host, SECURE_PORT) and self._tls_ok()
        ports = f"{self.port},{SECURE_PORT},{TLS_PORT}"
        if self.dynsec.exists():
            ports += f",{PROVISIONED_PORT}"
        return ServiceStatus(
            name=self.name,
            healthy=ok,
            address=f"{self.host}:{ports}",
            pid=read_pid(self.pid_file, "mosquitto"),
            detail="anon, passwd+acl, tls, dynsec" if ok else f"not answering (log {self.log_file})",
        )

    # -- internals ----------------------------------------------------------------------

    def _answers(self) -> bool:
        return mqtt_connects(self.host, self.port, timeout=2.0)

    def _tls_ok(self) -> bool:
        return tls_handshake_ok(self.host, TLS_PORT, ca_cert_path(self.settings))

    def _prepare(self) -> None:
        """Create directories, password file, ACL, certificates, dynsec store and the config."""
        self.data.mkdir(parents=True, exist_ok=True)
        self.acl.write_text(ACL_RULES)
        self._write_passwords()
        tls = ensure_certificates(self.home / "tls")
        plugin = find_dynsec_plugin()
        if plugin is not None:
            self._init_dynsec()
        else:
            log.warning("mosquitto_dynamic_security.so not found: no provisioning listener on %d", PROVISIONED_PORT)
        self.conf.write_text(self._config(tls, plugin))
        if os.geteuid() == 0:
            # Mosquitto started as root drops to the mosquitto user; it must own its files.
            try:
                owner = pwd.getpwnam(SYSTEM_USER)
            except KeyError as exc:
                raise ServiceError(f"system user {SYSTEM_USER!r} missing (is Debian's mosquitto installed?)") from exc
            self.log_file.touch()
            chown_tree(self.home, owner.pw_uid, owner.pw_gid)
            grant_traverse(self.home)

    def _write_passwords(self) -> None:
        tmp = self.passwords.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.touch(mode=0o600)
        for user, password in TEST_ACCOUNTS.items():
            proc = subprocess.run(["mosquitto_passwd", "-b", str(tmp), user, password], capture_output=True, text=True)
            if proc.returncode != 0:
                raise ServiceError(f"mosquitto_passwd failed: {proc.stderr.strip()}")
        tmp.replace(self.passwords)

    def _init_dynsec(self) -> None:
        """Create the dynamic-security store with a random admin password (once)."""
        admin_file = dynsec_admin_path(self.settings)
        if self.dynsec.exists() and admin_file.exists():
            return
        self.dynsec.unlink(missing_ok=True)
        password = secrets.token_urlsafe(24)
        proc = subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(self.dynsec), "admin", password],
            capture_output=True, text=True,
        )
        if proc.returncode != 0 or not self.dynsec.exists():
            raise ServiceError(f"mosquitto_ctrl dynsec init failed: {proc.stdout}{proc.stderr}")
        fd = os.open(admin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"username": "admin", "password": password, "port": PROVISIONED_PORT}, f)

    def _config(self, tls: TlsFiles, plugin: str | None) -> str:
        user_line = f"user {SYSTEM_USER}\n" if os.geteuid() == 0 else ""
        secured = f"allow_anonymous false\npassword_file {self.passwords}\nacl_file {self.acl}\n"
        text = (
            "# written by `carechain services up`; edits are overwritten\n"
            "per_listener_settings true\n"
            f"{user_line}"
            "persistence true\n"
            f"persistence_location {self.data}/\n"
            "autosave_interval 30\n"
            # Abandoned persistent sessions of local tests must not pile up forever.
            "persistent_client_expiration 2h\n"
            f"{QUEUE_SETTINGS}"
            "set_tcp_nodelay true\n"
            f"log_dest file {self.log_file}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "connection_messages false\n"
            "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
            "\n# local development and tests: anonymous\n"
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            "\n# the deployment's password file + ACL\n"
            f"listener {SECURE_PORT} {self.host}\n{secured}"
            "\n# the same over TLS\n"
            f"listener {TLS_PORT} {self.host}\n{secured}"
            f"cafile {tls.ca_cert}\ncertfile {tls.server_cert}\nkeyfile {tls.server_key}\ntls_version tlsv1.2\n"
        )
        if plugin is not None:
            text += (
                "\n# gateways provisioned at run time (dynamic-security plugin; carechain.services.broker_accounts)\n"
                f"listener {PROVISIONED_PORT} {self.host}\nallow_anonymous false\n"
                f"plugin {plugin}\nplugin_opt_config_file {self.dynsec}\n"
            )
        return text
