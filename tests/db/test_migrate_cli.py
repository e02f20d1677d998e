"""Two migrations at once on a fresh database, and the `carechain db` commands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from carechain.db import cli
from carechain.db import migrate as migrations
from carechain.settings import Settings
from tests.conftest import private_database

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_dsn(settings: Settings) -> Iterator[str]:
    """An empty private database (not migrated)."""
    with private_database(settings, "cc_db", migrated=False) as dsn:
        yield dsn


def test_two_migrations_at_once_apply_each_file_once(fresh_dsn: str) -> None:
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: migrations.migrate(fresh_dsn), range(2))
    assert a.version == b.version == migrations.code_version()
    assert a.mode == b.mode
    # One of them did all the work while the other waited on the advisory lock.
    assert sorted([len(a.applied), len(b.applied)])[0] == 0
    with psycopg.connect(fresh_dsn) as c:
        rows = c.execute("SELECT filename, count(*) FROM schema_migrations GROUP BY 1").fetchall()
    assert rows and all(n == 1 for _, n in rows)
    assert {f for f, _ in rows} == set(a.applied or b.applied)


def test_cli_migrate_status_prune(fresh_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url=fresh_dsn)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)

    assert cli.run(parser.parse_args(["migrate"]), settings) == 0
    out = capsys.readouterr().out
    assert out.startswith("mode: postgresql;") or out.startswith("mode: timescaledb;")
    assert f"schema version {migrations.code_version()}" in out

    assert cli.run(parser.parse_args(["status"]), settings) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pending"] == [] and status["db_version"] == status["code_version"]
    assert status["retention"]["observations"] == "30 days"

    assert cli.run(parser.parse_args(["prune"]), settings) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert pruned["errors"] == {} and pruned["mode"] == status["mode"]

    with psycopg.connect(fresh_dsn, autocommit=True) as c:
        c.execute("INSERT INTO schema_migrations VALUES ('9999_future.sql', 9999, 'all', 'x')")
    assert cli.run(parser.parse_args(["migrate"]), settings) == 2
    assert "refused" in capsys.readouterr().out
