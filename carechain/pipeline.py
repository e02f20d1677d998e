"""A small supervisor for the distributed pipeline on a PRIVATE set of services.

The end-to-end and chaos benchmarks (and the end-to-end smoke test) run the real
processes — ``carechain bridge``, ``worker``, ``alerts``, ``api`` — as subprocesses,
against their own Mosquitto, Kafka and PostgreSQL so that restarting a broker or
flooding it never disturbs anyone else using the shared services on the default ports.

* Kafka and PostgreSQL come from the harness (``carechain services up --only kafka
  postgres``) with a private state directory, bootstrap address and database URL.
* Mosquitto's harness listeners have fixed secured ports (18831, 18883, 18832), so a
  second harness broker cannot start next to the shared one; the private broker here
  is started directly with the harness's queue settings and one anonymous listener.
* Each run uses its own database, topics, consumer groups and MQTT client id
  (:class:`RunNames`), so runs never see each other's data even on the same services.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from carechain.services.mosquitto import QUEUE_SETTINGS, SYSTEM_USER, find_broker, mqtt_connects
from carechain.services.processes import chown_tree, grant_traverse, port_open, wait_until
from carechain.settings import Settings


@dataclass(frozen=True)
class PrivateServices:
    """Where the private services live: a state directory and four ports."""

    root: Path = Path("/tmp/cc-e2e")
    mqtt_port: int = 28830
    kafka_port: int = 29092  # the controller listens on the next port
    pg_port: int = 56432
    api_port: int = 28000

    def env(self) -> dict[str, str]:
        """CARECHAIN_* variables that point every process at these services."""
        return {
            "CARECHAIN_STATE_DIR": str(self.root),
            "CARECHAIN_MQTT_HOST": "127.0.0.1",
            "CARECHAIN_MQTT_PORT": str(self.mqtt_port),
            "CARECHAIN_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "CARECHAIN_DATABASE_URL": f"postgresql://carechain:carechain@127.0.0.1:{self.pg_port}/carechain",
            "CARECHAIN_API_HOST": "127.0.0.1",
            "CARECHAIN_API_PORT": str(self.api_port),
        }

    def harness(self, action: str, *only: str, timeout: float = 300) -> None:
        """``carechain services ACTION --only ...`` on the private instance (never the shared one)."""
        argv = [sys.executable, "-m", "carechain.cli", "services", action]
        if only:
            argv += ["--only", *only]
        proc = subprocess.run(argv, env={**os.environ, **self.env()}, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"services {action} {' '.join(only)} failed: {proc.stdout[-800:]}{proc.stderr[-800:]}")

    def up(self) -> None:
        """Start whatever of the private services is not running (idempotent)."""
        self.harness("up", "kafka", "postgres")
        self.mosquitto_up()

    # -- the private Mosquitto -----------------------------------------------------------------

    @property
    def mosquitto_home(self) -> Path:
        return self.root / "mosquitto-e2e"

    def mosquitto_pid(self) -> int | None:
        pid_file = self.mosquitto_home / "pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) and "mosquitto" in " ".join(psutil.Process(pid).cmdline()) else None

    def mosquitto_up(self) -> None:
        """Start the private broker (one anonymous listener, harness queue settings, persistence)."""
        if mqtt_connects("127.0.0.1", self.mqtt_port, timeout=2.0):
            return
        if port_open("127.0.0.1", self.mqtt_port):
            raise RuntimeError(f"port {self.mqtt_port} is taken by something that is not an MQTT broker")
        broker = find_broker()
        if broker is None:
            raise RuntimeError("mosquitto is not installed (run `carechain services up` once)")
        home = self.mosquitto_home
        (home / "data").mkdir(parents=True, exist_ok=True)
        log = home / "mosquitto.log"
        log.touch()
        user_line = f"user {SYSTEM_USER}\n" if os.geteuid() == 0 else ""
        (home / "mosquitto.conf").write_text(
            f"{user_line}persistence true\npersistence_location {home}/data/\nautosave_interval 30\n"
            f"persistent_client_expiration 2h\n{QUEUE_SETTINGS}set_tcp_nodelay true\n"
            f"log_dest file {log}\nlog_type error\nlog_type warning\nconnection_messages false\n"
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\n"
        )
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SYSTEM_USER)
            chown_tree(home, owner.pw_uid, owner.pw_gid)
            grant_traverse(home)
        with open(log, "ab") as out:
            proc = subprocess.Popen([broker, "-c", str(home / "mosquitto.conf")], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        (home / "pid").write_text(f"{proc.pid}\n")
        wait_until(lambda: mqtt_connects("127.0.0.1", self.mqtt_port, timeout=1.0), 20, "private mosquitto")

    def mosquitto_down(self) -> None:
        pid = self.mosquitto_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(20)

    def down(self) -> None:
        """Stop the private services (the harness's graceful stop; the broker by SIGTERM)."""
        self.mosquitto_down()
        self.harness("down", "kafka", "postgres")


@dataclass(frozen=True)
class RunNames:
    """Private names of one run: database, topics, consumer groups, MQTT session."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def database(self) -> str:
        return f"cc_e2e_{self.tag}"

    def topics(self) -> dict[str, str]:
        return {f"CARECHAIN_TOPIC_{k.upper()}": f"e2e-{self.tag}-{v}"
                for k, v in (("events", "events"), ("urgent", "events.urgent"), ("deadletter", "deadletter"),
                             ("alerts", "alerts"), ("feedback", "feedback"))}

    def env(self, services: PrivateServices) -> dict[str, str]:
        base = services.env()
        return {
            **base,
            **self.topics(),
            "CARECHAIN_DATABASE_URL": base["CARECHAIN_DATABASE_URL"].rsplit("/", 1)[0] + f"/{self.database}",
            "CARECHAIN_WORKER_APP_ID": f"e2e-{self.tag}-worker",
            "CARECHAIN_ALERTS_GROUP_ID": f"e2e-{self.tag}-alerts",
            "CARECHAIN_MQTT_CLIENT_ID": f"e2e-{self.tag}-bridge",
            # Nothing of a benchmark run may reach a real mailbox or another engineer's SMTP sink.
            "CARECHAIN_SMTP_PORT": "1",
        }

    def settings(self, services: PrivateServices) -> Settings:
        env = self.env(services)
        return Settings(**{k.removeprefix("CARECHAIN_").lower(): v for k, v in env.items()})  # type: ignore[arg-type]

    def create(self, services: PrivateServices, partitions: int = 8) -> None:
        """The run's database (migrated) and its five topics."""
        admin_url = services.env()["CARECHAIN_DATABASE_URL"]
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        from carechain.db.migrate import migrate  # storage module; imported late so the supervisor stays light

        migrate(self.settings(services).database_url)
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{services.kafka_port}")
        try:
            for name in self.topics().values():
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()

    def drop(self, services: PrivateServices) -> None:
        """Remove the run's database and topics (best effort)."""
        with contextlib.suppress(Exception), psycopg.connect(services.env()["CARECHAIN_DATABASE_URL"],
                                                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{services.kafka_port}")
            try:
                existing = set(admin.list_topics())
                mine = [t for t in existing if t.startswith(f"e2e-{self.tag}")]
                if mine:
                    admin.delete_topics(mine)
            finally:
                admin.close()


@dataclass
class Process:
    """One supervised ``carechain`` subprocess (its own session, output in a log file)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "carechain.cli", *self.argv], env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process and its children (the bridge may have a producer child)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.alive() or self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Pipeline:
    """The distributed processes of one run: start, kill -9, restart, measure."""

    def __init__(self, services: PrivateServices, names: RunNames, log_dir: Path) -> None:
        self.services, self.names, self.log_dir = services, names, log_dir
        self.env = names.env(services)
        self.processes: dict[str, Process] = {}
        self._ps: dict[int, psutil.Process] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Process:
        proc = Process(name, list(argv), {**self.env, **(env or {})}, self.log_dir / f"{name}.log")
        self.processes[name] = proc
        proc.start()
        return proc

    def restart(self, name: str) -> None:
        self.processes[name].start()

    def kill9(self, name: str) -> None:
        self.processes[name].kill9()

    def stop_all(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()

    def dead(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.popen is not None and not p.alive()]

    def resources(self) -> dict[str, dict[str, Any]]:
        """CPU seconds and resident memory per process (children included: the bridge's producer)."""
        out: dict[str, dict[str, Any]] = {}
        for name, proc in self.processes.items():
            if not proc.alive() or proc.pid is None:
                continue
            try:
                root = psutil.Process(proc.pid)
                family = [root, *root.children(recursive=True)]
                cpu = sum(p.cpu_times().user + p.cpu_times().system for p in family)
                rss = sum(p.memory_info().rss for p in family)
            except psutil.Error:
                continue
            out[name] = {"pid": proc.pid, "cpu_s": round(cpu, 2), "rss_mb": round(rss / 2**20, 1)}
        return out


def service_resources(services: PrivateServices) -> dict[str, dict[str, Any]]:
    """CPU seconds and memory of the private Kafka, PostgreSQL (all backends) and Mosquitto."""
    out: dict[str, dict[str, Any]] = {}
    root = str(services.root)
    groups: dict[str, list[psutil.Process]] = {"kafka": [], "postgres": [], "mosquitto": []}
    pg_main = None
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if root not in cmd:
            continue
        if "kafka.Kafka" in cmd:
            groups["kafka"].append(p)
        elif "mosquitto" in cmd:
            groups["mosquitto"].append(p)
        elif "postgres" in cmd and " -D " in cmd:
            pg_main = p
    if pg_main is not None:
        with contextlib.suppress(psutil.Error):
            groups["postgres"] = [pg_main, *pg_main.children(recursive=True)]
    for name, procs in groups.items():
        cpu = rss = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        if procs:
            out[name] = {"cpu_s": round(cpu, 2), "rss_mb": round(rss / 2**20, 1)}
    return out


def have_mosquitto() -> bool:
    return find_broker() is not None and shutil.which("java") is not None
