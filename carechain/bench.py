"""``carechain bench NAME``: benchmarks that print one JSON object on stdout.

Progress goes to stderr. Every result has at least ``name`` and, where they
apply, ``events_per_s``, ``p50_ms``, ``p99_ms``, ``ceiling_events_per_s``,
``lost``, ``duplicated``, ``bytes_per_resident``. Each benchmark lives with its
stage and exposes ``add_arguments(parser)`` and ``run(args, settings) -> dict``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from carechain.settings import Settings

BENCHES: dict[str, str] = {
    "ingest": "ingest.bench",
    "storage": "carechain.db.bench",
    "worker": "streams.bench",
    "alerts": "alerts.bench",
    "api": "api.bench",
    "e2e": "carechain.bench_e2e",
    "chaos": "carechain.bench_chaos",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHES))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark")


def run(args: argparse.Namespace, settings: Settings) -> int:
    module = importlib.import_module(BENCHES[args.name])
    p = argparse.ArgumentParser(prog=f"carechain bench {args.name}")
    module.add_arguments(p)
    result: dict[str, Any] = module.run(p.parse_args(args.rest), settings)
    result = {"name": args.name, **result}
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def progress(msg: str) -> None:
    """Progress for a human, on stderr, so stdout stays one JSON object."""
    print(msg, file=sys.stderr, flush=True)


def percentiles(samples_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p99 (and count) of latency samples in milliseconds."""
    if not samples_ms:
        return {"p50_ms": None, "p99_ms": None, "samples": 0}
    s = sorted(samples_ms)
    p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
    return {"p50_ms": round(statistics.median(s), 3), "p99_ms": round(p99, 3), "samples": len(s)}
