"""Fixtures for the browser tests: Debian Chromium, a private seeded database, the real API in a subprocess.

Chromium comes from Debian (installed with apt-get when missing, never
``playwright install``); the API runs in a uvicorn subprocess on a free port
against its own database, so the test runs beside everyone else's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from carechain.services.base import ServiceError
from carechain.services.processes import port_open
from carechain.settings import Settings
from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; installed with apt-get when missing (a failure fails under CI=true)."""
    from carechain.services.browser import ensure_chromium

    try:
        return ensure_chromium()
    except ServiceError as e:
        service_unavailable(f"Debian chromium ({e})")
        raise


def _with_db(dsn: str, name: str) -> str:
    return str(psycopg.conninfo.make_conninfo(dsn, dbname=name))


@pytest.fixture(scope="module")
def private_db(settings: Settings) -> Iterator[str]:
    """A private database with every migration applied (the API tests' runner); dropped afterwards."""
    if not port_open("127.0.0.1", 55432):
        service_unavailable("PostgreSQL at 127.0.0.1:55432")
    from tests.api.conftest import _migrate

    name = f"cc_web_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = _with_db(settings.database_url, name)
    try:
        _migrate(dsn, settings)
        yield dsn
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RunningApi:
    base_url: str
    dsn: str
    settings: Settings  # the API's settings (its database and its local issuer's state dir)


@pytest.fixture(scope="module")
def api_server(private_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """The API (as ``carechain api`` builds it) under uvicorn on a free port, its own database and issuer key."""
    state_dir = tmp_path_factory.mktemp("api-state")
    port = _free_port()
    env = {
        **os.environ,
        "CARECHAIN_DATABASE_URL": private_db,
        "CARECHAIN_STATE_DIR": str(state_dir),
        "CARECHAIN_API_PORT": str(port),
    }
    log = (state_dir / "api.log").open("w")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            os.environ.get("CARECHAIN_WEB_TEST_APP", "tests.browser.app_factory:app"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"the API exited ({proc.returncode}):\n{(state_dir / 'api.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the API did not get ready:\n{(state_dir / 'api.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield RunningApi(base, private_db, Settings(database_url=private_db, state_dir=state_dir))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
