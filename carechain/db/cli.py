"""``carechain db migrate|status``."""

from __future__ import annotations

import argparse
import json

from carechain.db import migrate as migrations
from carechain.db import prune as retention
from carechain.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    m = sub.add_parser("migrate", help="apply pending migrations (idempotent)")
    m.add_argument("--target", type=int, default=None, help="stop at this version")
    sub.add_parser("status", help="schema version, mode, pending migrations and retention settings")
    sub.add_parser("prune", help="apply retention now (plain: roll up, then delete; TimescaleDB: run policy jobs)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "migrate":
        try:
            result = migrations.migrate(settings.database_url, target=args.target)
        except migrations.SchemaTooNew as exc:
            print(f"refused: {exc}")
            return 2
        print(f"mode: {result.mode}; schema version {result.version}; applied {len(result.applied)} file(s)")
        for f in result.applied:
            print(f"  {f}")
        return 0
    if args.action == "prune":
        pruned = retention.prune(settings.database_url)
        print(json.dumps(pruned.as_dict(), indent=2))
        return 1 if pruned.errors else 0
    print(json.dumps(migrations.status(settings.database_url), indent=2, default=str))
    return 0
