"""Fixtures for the API tests: a private PostgreSQL database with every migration, a real uvicorn server on a
free port, and tokens from the local issuer (state in a temporary directory)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from carechain.settings import Settings
from tests.conftest import service_unavailable

HERE = Path(__file__).parent


def _admin_url(url: str, db: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


def _migrate(url: str, settings: Settings) -> None:
    """Every migration: storage, alerts, API (the storage runner)."""
    from datetime import UTC, datetime, timedelta

    from carechain.db.migrate import migrate
    from tests.api import seed

    migrate(url)
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:  # the readings tests COPY in: the last 62 days
        seed.partitions(conn, now - timedelta(days=62), now + timedelta(days=1))


@pytest.fixture(scope="session")
def api_db(settings: Settings) -> Iterator[str]:
    """A private database ``cc_api_<random>`` with the whole schema; dropped afterwards."""
    name = f"cc_api_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(settings.database_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        service_unavailable("PostgreSQL (127.0.0.1:55432)")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = _admin_url(settings.database_url, name)
    try:
        _migrate(url, settings)
        yield url
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def api_settings(api_db: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(database_url=api_db, state_dir=tmp_path_factory.mktemp("api-state"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server running the app in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def app(api_settings: Settings) -> Any:
    from api.app import create_app

    return create_app(api_settings, sse_heartbeat_s=0.5)


@pytest.fixture(scope="session")
def live(app: Any) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def mint(api_settings: Settings) -> Callable[..., str]:
    """mint(user, org, role, unit=None) -> a bearer token from the local issuer."""
    from api.auth import local_issuer

    issuer = local_issuer(api_settings)

    def _mint(user: str, org: str, role: str, unit: str | None = None, **kw: Any) -> str:
        return issuer.mint(user, org, role, unit=unit, **kw)

    return _mint


@pytest.fixture(scope="session")
def db(api_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(api_db, autocommit=True) as conn:
        yield conn
