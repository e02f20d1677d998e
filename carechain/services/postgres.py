"""PostgreSQL for local development and tests, on 127.0.0.1 only.

Debian's PostgreSQL (newest major under /usr/lib/postgresql/*/bin), our own
cluster in the state directory, started with ``pg_ctl``. PostgreSQL refuses
to run as root, so when we are root the cluster belongs to the ``postgres``
system user and every server command runs through ``runuser``. Role, password
and database come from ``Settings.database_url`` (``carechain`` by default,
a superuser so tests can create private databases).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from carechain.services.base import ServiceError, ServiceStatus
from carechain.services.debian import apt_install
from carechain.services.processes import grant_traverse, log_tail, pid_alive, port_open, read_pid, wait_until
from carechain.settings import Settings

log = logging.getLogger(__name__)

PG_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"


@dataclass(frozen=True)
class Target:
    """Where the server listens and which role/database it must have (from the database URL)."""

    host: str
    port: int
    user: str
    password: str
    database: str


def target_from_url(url: str) -> Target:
    """Split a postgresql:// URL into the parts the harness creates."""
    parts = urlsplit(url)
    return Target(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or "carechain"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") or "carechain",
    )


def find_bin_dir() -> Path | None:
    """The bin directory of the newest installed PostgreSQL major, if any."""
    candidates = []
    for d in PG_ROOT.glob("*/bin"):
        with contextlib.suppress(ValueError):
            if (d / "pg_ctl").exists() and (d / "initdb").exists():
                candidates.append((int(d.parent.name), d))
    return max(candidates)[1] if candidates else None


class Postgres:
    """The harness's PostgreSQL cluster."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.target = target_from_url(settings.database_url)
        self.home = settings.state_dir / "postgres"
        self.data = self.home / "data"
        self.sockets = self.home / "run"
        self.log_file = self.home / "postgres.log"
        self.url = settings.database_url

    # -- install -------------------------------------------------------------------

    def install(self) -> None:
        """Install Debian's postgresql when no server binaries are found."""
        if find_bin_dir() is None:
            apt_install(["postgresql"])
        if find_bin_dir() is None:
            raise ServiceError(f"PostgreSQL installed but no pg_ctl found under {PG_ROOT}/*/bin")

    # -- start / stop ----------------------------------------------------------------

    def start(self) -> bool:
        """Create the cluster if needed, start it, create role and database; False if already up."""
        if self._answers():
            self._ensure_role_and_database()
            return False
        if port_open("127.0.0.1", self.target.port) and self.pid() is None:
            raise ServiceError(f"port {self.target.port} is taken by a process that is not our PostgreSQL")
        bin_dir = self._bin_dir()
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bin_dir)
        self._write_config(bin_dir)
        if self.pid() is None:
            # After a kill -9 or a reboot the lock file may name a pid that now belongs to another
            # process; PostgreSQL would refuse to start, so a lock file not naming a postgres goes.
            (self.data / "postmaster.pid").unlink(missing_ok=True)
            # pg_ctl -w waits for the server itself; run it in a new session so the
            # postmaster is not in the caller's process group (it must outlive the CLI).
            proc = subprocess.run(
                [*self._as_owner(), str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                 "-w", "-t", "90", "start"],
                capture_output=True, text=True, start_new_session=True,
            )
            if proc.returncode != 0:
                raise ServiceError(f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n{log_tail(self.log_file)}")
        wait_until(lambda: port_open("127.0.0.1", self.target.port), 60, "postgres", log_file=self.log_file)
        self._ensure_role_and_database()
        wait_until(self._answers, 30, "postgres (connect as the carechain role)")
        return True

    def stop(self) -> bool:
        """Fast shutdown (rolls back open transactions, checkpoints); False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        bin_dir = self._bin_dir()
        proc = subprocess.run(
            [*self._as_owner(), str(bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0 and pid_alive(pid):
            raise ServiceError(f"pg_ctl stop failed:\n{proc.stdout}{proc.stderr}")
        return True

    def status(self) -> ServiceStatus:
        """Healthy when the carechain role can connect and run a query."""
        ok = self._answers()
        return ServiceStatus(
            name=self.name,
            healthy=ok,
            address=f"{self.target.host}:{self.target.port}",
            pid=self.pid(),
            detail=f"db {self.target.database}, data {self.data}" if ok else "not answering",
        )

    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process is alive and is a postgres."""
        return read_pid(self.data / "postmaster.pid", expect="postgres")

    # -- internals --------------------------------------------------------------------

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                return conn.execute("select 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    def _bin_dir(self) -> Path:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise ServiceError("PostgreSQL is not installed (run `carechain services up`)")
        return bin_dir

    def _running_as_root(self) -> bool:
        return os.geteuid() == 0

    def _as_owner(self) -> list[str]:
        """Prefix that runs a command as the cluster's owner."""
        return ["runuser", "-u", SYSTEM_USER, "--"] if self._running_as_root() else []

    def _prepare_dirs(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        if not self._running_as_root():
            os.chmod(self.data, 0o700)
            return
        try:
            owner = pwd.getpwnam(SYSTEM_USER)
        except KeyError as exc:
            raise ServiceError(f"system user {SYSTEM_USER!r} missing (is Debian's postgresql installed?)") from exc
        for path in (self.home, self.data, self.sockets, self.log_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(self.data, 0o700)
        # The postgres user must be able to reach the state directory (e.g. under /root).
        grant_traverse(self.home)

    def _initdb(self, bin_dir: Path) -> None:
        auth_local = "peer" if self._running_as_root() else "trust"
        log.info("initdb %s", self.data)
        proc = subprocess.run(
            [*self._as_owner(), str(bin_dir / "initdb"), "-D", str(self.data), "-U", SYSTEM_USER,
             "-E", "UTF8", "--locale=C.UTF-8", f"--auth-local={auth_local}", "--auth-host=scram-sha-256"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise ServiceError(f"initdb failed:\n{proc.stdout}{proc.stderr}")

    def _write_config(self, bin_dir: Path) -> None:
        """Our settings live in carechain.conf, included from postgresql.conf, rewritten on each start."""
        main_conf = self.data / "postgresql.conf"
        include = "include_if_exists = 'carechain.conf'"
        text = main_conf.read_text()
        if include not in text:
            main_conf.write_text(text + f"\n{include}\n")
        lines = [
            "# written by `carechain services up`; edits are overwritten",
            "listen_addresses = '127.0.0.1'",
            f"port = {self.target.port}",
            f"unix_socket_directories = '{self.sockets}'",
            # ~8 engineers' tests and services share one server.
            "max_connections = 300",
            "shared_buffers = 256MB",
            # Ingest (docs/storage.md "Writer"): every DROP DATABASE of the tests forces a checkpoint,
            # after which each page's first change is logged whole; lz4 shrinks those full-page images.
            # Durability is untouched (fsync, synchronous_commit, full_page_writes stay on).
            "max_wal_size = 4GB",
            "checkpoint_timeout = 15min",
            "wal_compression = lz4",
            "log_min_duration_statement = -1",
        ]
        if self._has_timescaledb(bin_dir):
            lines.append("shared_preload_libraries = 'timescaledb'")
            lines.append("timescaledb.telemetry_level = off")
        conf = self.data / "carechain.conf"
        conf.write_text("\n".join(lines) + "\n")
        if self._running_as_root():
            owner = pwd.getpwnam(SYSTEM_USER)
            os.chown(conf, owner.pw_uid, owner.pw_gid)

    @staticmethod
    def _has_timescaledb(bin_dir: Path) -> bool:
        pg_config = bin_dir / "pg_config"
        try:
            libdir = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return False
        return any(Path(libdir.stdout.strip()).glob("timescaledb*.so"))

    def _psql(self, sql: str) -> str:
        bin_dir = self._bin_dir()
        proc = subprocess.run(
            [*self._as_owner(), str(bin_dir / "psql"), "-h", str(self.sockets), "-p", str(self.target.port),
             "-U", SYSTEM_USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAX", "-c", sql],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise ServiceError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def _ensure_role_and_database(self) -> None:
        t = self.target
        ident = '"' + t.user.replace('"', '""') + '"'
        password = "'" + t.password.replace("'", "''") + "'"
        literal = "'" + t.user.replace("'", "''") + "'"
        if self._psql(f"select 1 from pg_roles where rolname = {literal}") != "1":
            self._psql(f"create role {ident} login superuser password {password}")
        db_literal = "'" + t.database.replace("'", "''") + "'"
        if self._psql(f"select 1 from pg_database where datname = {db_literal}") != "1":
            db_ident = '"' + t.database.replace('"', '""') + '"'
            self._psql(f"create database {db_ident} owner {ident}")
