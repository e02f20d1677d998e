"""The one ``carechain`` command.

Each subcommand lives in the module of its stage and is imported only when it
is used, so ``carechain services up`` does not load Faust or FastAPI. A command
module exposes ``add_arguments(parser)`` and ``run(args, settings) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from carechain.settings import Settings

#: subcommand -> (module, help). Each module has add_arguments() and run().
COMMANDS: dict[str, tuple[str, str]] = {
    "services": ("carechain.services.cli", "install, start, stop local Mosquitto, Kafka, PostgreSQL"),
    "db": ("carechain.db.cli", "database migrations and maintenance"),
    "bridge": ("ingest.cli", "MQTT -> Kafka ingest bridge"),
    "worker": ("streams.cli", "stream worker (faust): per-resident monitoring"),
    "backtest": ("streams.backtest", "replay history through the monitor offline"),
    "alerts": ("alerts.cli", "alert service: dedup, lifecycle, routing, escalation, notifications"),
    "api": ("api.cli", "the care-chain API and web page"),
    "token": ("api.token_cli", "mint a token from the local issuer (demo, tests)"),
    "audit": ("api.audit_cli", "audit log tools (verify the hash chain)"),
    "simulate": ("carechain.simulation.cli", "simulate homes publishing over MQTT"),
    "evaluate": ("carechain.evaluation", "recall, precision and delay on scenarios with ground truth"),
    "demo": ("carechain.demo", "the embedded demo: everything in one process"),
    "bench": ("carechain.bench", "benchmarks (JSON on stdout)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="carechain", description="CareChain: monitoring for elderly people at home.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"carechain {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(module.run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
