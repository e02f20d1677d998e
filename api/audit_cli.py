"""``carechain audit verify``: walk the audit log's hash chain and report the first broken row."""

from __future__ import annotations

import argparse

import psycopg

from api.audit import verify
from carechain.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("verify", help="verify the hash chain (exit 1 at the first broken row)")
    v.add_argument("--database-url", default=None, help="defaults to CARECHAIN_DATABASE_URL")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the chain holds, 1 when a row was edited, removed or reordered, 2 when it cannot be read."""
    url = args.database_url or settings.database_url
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            checked, broken = verify(conn)
    except psycopg.errors.UndefinedTable:
        print("no audit_log table in this database: run `carechain db migrate` first")
        return 2
    except psycopg.OperationalError as e:
        print(f"database unreachable: {type(e).__name__}")
        return 2
    if broken is None:
        print(f"audit log OK: {checked} rows, chain intact")
        return 0
    print(f"audit log BROKEN at row id {broken.id}: {broken.problem} ({checked} rows read)")
    return 1
