"""``carechain services up|down|status``: the local Mosquitto, Kafka and PostgreSQL.

``up`` installs what is missing, starts each service detached and waits until
a real client gets an answer (already running: nothing to do). ``down`` stops
them gracefully. ``status`` prints a table and exits 1 if any is down. With
``CI=true`` any failure is fatal at once; elsewhere ``up`` carries on with the
other services and exits 1 at the end. ``restart`` is ``down`` then ``up``
(the chaos benchmark restarts Kafka and PostgreSQL with it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time

from carechain.services.base import Service, ServiceError, ServiceStatus
from carechain.settings import Settings

log = logging.getLogger(__name__)

#: Start order: PostgreSQL first (others need it soonest), then Mosquitto, then Kafka.
SERVICES: dict[str, tuple[str, str]] = {
    "postgres": ("carechain.services.postgres", "Postgres"),
    "mosquitto": ("carechain.services.mosquitto", "Mosquitto"),
    "kafka": ("carechain.services.kafka", "Kafka"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``carechain services``."""
    parser.add_argument("action", choices=["up", "down", "restart", "status"])
    parser.add_argument("--only", nargs="+", choices=sorted(SERVICES), metavar="SERVICE",
                        help=f"act on these services only ({', '.join(SERVICES)})")


def in_ci() -> bool:
    """True when running under CI (CI=true), where a missing service is a failure."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def build(settings: Settings, names: list[str] | None = None) -> list[Service]:
    """The selected services in start order."""
    selected = [n for n in SERVICES if names is None or n in names]
    services: list[Service] = []
    for name in selected:
        module_name, class_name = SERVICES[name]
        cls = getattr(importlib.import_module(module_name), class_name)
        services.append(cls(settings))
    return services


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point of ``carechain services``."""
    # kafka-python logs every connection at INFO; the harness's own lines are enough.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    services = build(settings, args.only)
    if args.action == "up":
        return up(services)
    if args.action == "down":
        return down(services)
    if args.action == "restart":
        return down(services) or up(services)
    return print_status(services)


def up(services: list[Service]) -> int:
    """Install and start each service; 0 when all are healthy."""
    failed: list[str] = []
    for service in services:
        t0 = time.monotonic()
        try:
            service.install()
            started = service.start()
        except ServiceError as exc:
            msg = f"{service.name}: FAILED: {exc}"
            print(msg, file=sys.stderr, flush=True)
            if in_ci():
                print("CI=true: a service that cannot start is a failure", file=sys.stderr)
                return 1
            failed.append(service.name)
            continue
        what = "started" if started else "already running"
        print(f"{service.name}: {what} ({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    code = print_status(services)
    return 1 if failed else code


def down(services: list[Service]) -> int:
    """Stop each service, in reverse start order."""
    code = 0
    for service in reversed(services):
        try:
            stopped = service.stop()
        except ServiceError as exc:
            print(f"{service.name}: FAILED to stop: {exc}", file=sys.stderr)
            code = 1
            continue
        print(f"{service.name}: {'stopped' if stopped else 'not running'}", file=sys.stderr)
    return code


def print_status(services: list[Service]) -> int:
    """Print a status table on stdout; 1 if any service is down."""
    rows: list[ServiceStatus] = [s.status() for s in services]
    print(f"{'SERVICE':<10} {'STATE':<6} {'ADDRESS':<28} {'PID':>8}  DETAIL")
    for r in rows:
        state = "up" if r.healthy else "DOWN"
        print(f"{r.name:<10} {state:<6} {r.address:<28} {r.pid if r.pid else '-':>8}  {r.detail}")
    sys.stdout.flush()
    return 0 if all(r.healthy for r in rows) else 1
