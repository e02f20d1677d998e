"""``carechain worker``: the stream worker (Faust) that runs the per-resident monitors."""

from __future__ import annotations

import argparse
import logging

from carechain.settings import Settings
from streams.registry import PauseSwitch

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carechain worker`` (Kafka, topics and database come from the settings)."""
    parser.add_argument("--app-id", help="Faust app id = consumer group (default: settings.worker_app_id)")
    parser.add_argument("--tick-s", type=float, default=5.0, help="deadline timer interval (<= 5 s)")
    parser.add_argument("--batch", type=int, default=2000, help="bulk events per batch")
    parser.add_argument("--lateness-s", type=float, default=120.0, help="allowed lateness of events (seconds)")
    parser.add_argument("--pause", default="", help="comma-separated detectors paused globally (adds to settings)")
    parser.add_argument("--no-store", action="store_true", help="do not store observations (benchmarks)")
    parser.add_argument("--no-plans", action="store_true", help="default care plans; do not read the database")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the worker from the settings and run it until stopped."""
    from streams.sink import CountingSink, ObservationSink, open_sink
    from streams.store import CarePlanStore
    from streams.worker import StreamWorker, WorkerOptions, run_worker

    paused = PauseSwitch()
    for name in f"{settings.worker_paused_detectors},{args.pause}".split(","):
        if name.strip():
            paused.pause(name.strip())
    sink: ObservationSink = CountingSink() if args.no_store else open_sink(settings)
    plans = None if args.no_plans else CarePlanStore(settings.database_url)
    options = WorkerOptions(
        app_id=args.app_id or settings.worker_app_id,
        tick_s=min(args.tick_s, 5.0),
        batch_max=args.batch,
        lateness_s=args.lateness_s,
        paused=paused,
    )
    worker = StreamWorker(settings, options, sink, plans)
    log.info(
        "worker %s: topics %s (urgent), %s; paused: %s",
        options.app_id,
        settings.topic_urgent,
        settings.topic_events,
        ", ".join(sorted(paused)) or "none",
    )
    try:
        return run_worker(worker, settings.log_level.lower())
    finally:
        sink.close()
        if plans is not None:
            plans.close()
