"""Apache Kafka for local development and tests: one KRaft node (broker + controller) on 127.0.0.1.

The jars come from Maven Central (``org.apache.kafka:kafka_2.13`` and its
runtime dependencies, plus a logging binding its POM leaves out) through
``mvn dependency:copy-dependencies`` into ``Settings.cache_dir``, so a rerun
starts without downloading. The node runs on the machine's Java 17 with a
small heap, sized for a 2-core test machine. See docs/services.md for why
this version.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import shutil
import subprocess
import uuid

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from carechain.services.base import ServiceError, ServiceStatus
from carechain.services.debian import apt_install
from carechain.services.processes import (
    port_open,
    read_pid,
    spawn_detached,
    terminate,
    wait_until,
)
from carechain.settings import Settings

log = logging.getLogger(__name__)

#: The Kafka release the harness runs (override with CARECHAIN_KAFKA_VERSION). The newest release
#: that faust-streaming 0.15.3 (aiokafka 0.14) and kafka-python 3.0.12 pass our tests with.
KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

#: Logging bindings absent from kafka_2.13's POM (without one the broker logs nothing).
_LOGGING_4X = [
    ("org.apache.logging.log4j", "log4j-slf4j2-impl", "2.24.3"),
    ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
    ("org.slf4j", "slf4j-api", "2.0.17"),
]
_LOGGING_3X = [
    ("org.slf4j", "slf4j-reload4j", "1.7.36"),
    ("ch.qos.reload4j", "reload4j", "1.2.25"),
]

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.log.name = kafka.log
logger.log.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.partition.name = kafka.cluster
logger.partition.level = WARN
logger.replication.name = org.apache.kafka.controller.ReplicationControlManager
logger.replication.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""

_LOG4J1 = """\
log4j.rootLogger=INFO, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log=WARN
log4j.logger.kafka.cluster=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
"""


def kafka_version(settings: Settings) -> str:
    """The Kafka release to run: the setting if given, else KAFKA_VERSION."""
    return settings.kafka_version or KAFKA_VERSION


def harness_topics(settings: Settings) -> list[str]:
    """The topics the harness creates."""
    return [settings.topic_events, settings.topic_urgent, settings.topic_deadletter,
            settings.topic_alerts, settings.topic_feedback]


def _pom(version: str) -> str:
    logging_deps = _LOGGING_4X if int(version.split(".")[0]) >= 4 else _LOGGING_3X
    deps = [("org.apache.kafka", f"kafka_{SCALA_VERSION}", version), *logging_deps]
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>carechain</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{body}
  </dependencies>
</project>
"""


class Kafka:
    """The harness's single-node KRaft Kafka."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = kafka_version(settings)
        self.bootstrap = settings.kafka_bootstrap
        host, _, port = self.bootstrap.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        # The controller listens next to the broker (19092 -> 19093).
        self.controller_port = self.port + 1
        self.dist = settings.cache_dir / "kafka" / self.version
        self.libs = self.dist / "libs"
        self.home = settings.state_dir / "kafka"
        self.data = self.home / "data"
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "kafka.log"
        self.properties = self.home / "server.properties"

    # -- install ------------------------------------------------------------------------

    def install(self) -> None:
        """Java 17 and Maven from Debian if missing; the Kafka jars from Maven Central into the cache."""
        tools = (("java", "openjdk-17-jre-headless"), ("mvn", "maven"))
        missing = [pkg for tool, pkg in tools if not shutil.which(tool)]
        if missing:
            apt_install(missing)
        done = self.libs / ".complete"
        if done.exists():
            return
        self.dist.mkdir(parents=True, exist_ok=True)
        (self.dist / "pom.xml").write_text(_pom(self.version))
        shutil.rmtree(self.libs, ignore_errors=True)
        log.info("downloading Kafka %s from Maven Central into %s", self.version, self.libs)
        proc = subprocess.run(
            ["mvn", "-B", "-q", "-f", str(self.dist / "pom.xml"),
             f"-Dmaven.repo.local={self.settings.cache_dir / 'maven'}",
             f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={self.libs}"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0 or not any(self.libs.glob(f"kafka_{SCALA_VERSION}-*.jar")):
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise ServiceError(f"fetching Kafka {self.version} with Maven failed:\n{tail}")
        done.write_text(self.version + "\n")

    # -- start / stop ---------------------------------------------------------------------

    def start(self) -> bool:
        """Format storage once, start the node detached, wait for metadata, create the topics."""
        if self._answers():
            self._ensure_topics()
            return False
        if read_pid(self.pid_file, "kafka.Kafka") is None and port_open(self.host, self.port):
            raise ServiceError(f"port {self.port} is taken by a process that is not our Kafka")
        if read_pid(self.pid_file, "kafka.Kafka") is None:
            self._prepare()
            spawn_detached(self._java_argv("kafka.Kafka", str(self.properties)), self.log_file, self.pid_file,
                           cwd=self.home)
        wait_until(self._answers, 120, "kafka", alive=lambda: read_pid(self.pid_file, "kafka.Kafka") is not None,
                   log_file=self.log_file)
        self._ensure_topics()
        return True

    def stop(self) -> bool:
        """Controlled shutdown via SIGTERM; False if it was not running."""
        pid = read_pid(self.pid_file, "kafka.Kafka")
        if pid is None:
            return False
        terminate(pid, timeout=60)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> ServiceStatus:
        """Healthy when a metadata request (topic list) answers and the harness topics exist."""
        topics = self._topics()
        missing = [] if topics is None else [t for t in harness_topics(self.settings) if t not in topics]
        ok = topics is not None and not missing
        if topics is None:
            detail = f"not answering (log {self.log_file})"
        elif missing:
            detail = f"missing topics: {', '.join(missing)}"
        else:
            detail = f"Kafka {self.version} KRaft, {len(topics)} topics"
        address = f"{self.host}:{self.port},{self.controller_port}"
        return ServiceStatus(self.name, ok, address, read_pid(self.pid_file, "kafka.Kafka"), detail)

    # -- internals --------------------------------------------------------------------------

    def _java_argv(self, main_class: str, *args: str) -> list[str]:
        if not self.libs.exists():
            raise ServiceError(f"Kafka {self.version} is not installed in {self.libs}")
        if int(self.version.split(".")[0]) >= 4:
            logging_opt = f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}"
        else:
            logging_opt = f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}"
        return [
            "java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", logging_opt,
            "-cp", f"{self.libs}/*", main_class, *args,
        ]

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(_LOG4J2)
        (self.home / "log4j.properties").write_text(_LOG4J1)
        self.properties.write_text(self._server_properties())
        version_file = self.home / "formatted-by"
        if version_file.exists() and version_file.read_text().strip() != self.version:
            # Storage formatted by another release: start clean rather than risk an incompatible format.
            log.warning("Kafka version changed (%s -> %s): wiping %s", version_file.read_text().strip(),
                        self.version, self.data)
            shutil.rmtree(self.data, ignore_errors=True)
        if not (self.data / "meta.properties").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            proc = subprocess.run(
                self._java_argv("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.properties)),
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise ServiceError(f"kafka-storage format failed:\n{proc.stdout}{proc.stderr}")
            version_file.write_text(self.version + "\n")

    def _server_properties(self) -> str:
        p = self.settings.kafka_partitions
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": str(p),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # One node: every internal topic has one replica; fewer partitions start faster on 2 cores.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Local tests create private topics by producing to them; compose/ turns this off.
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "log.retention.hours": "24",
            "log.retention.bytes": str(2 * 1024**3),
            "log.segment.bytes": str(256 * 1024**2),
            "log.retention.check.interval.ms": "60000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "2",
        }
        return "# written by `carechain services up`; edits are overwritten\n" + "".join(
            f"{k}={v}\n" for k, v in lines.items()
        )

    def _admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="carechain-services",
                                request_timeout_ms=10000)

    def _topics(self) -> set[str] | None:
        if not port_open(self.host, self.port):
            return None
        try:
            admin = self._admin()
        except (KafkaError, OSError, ValueError) as exc:
            log.debug("kafka admin connect: %r", exc)
            return None
        try:
            return set(admin.list_topics())
        except (KafkaError, OSError, ValueError):
            return None
        finally:
            admin.close()

    def _answers(self) -> bool:
        return self._topics() is not None

    def _ensure_topics(self) -> None:
        existing = self._topics() or set()
        wanted = [t for t in harness_topics(self.settings) if t not in existing]
        if not wanted:
            return
        admin = self._admin()
        try:
            for topic in wanted:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([NewTopic(topic, self.settings.kafka_partitions, 1)])
        except KafkaError as exc:
            raise ServiceError(f"creating Kafka topics failed: {exc}") from exc
        finally:
            admin.close()
        wait_until(lambda: set(wanted) <= (self._topics() or set()), 30, "kafka topics")

