"""``carechain alerts``: the alert service (consumer, escalation loop, outbox dispatcher) and the canary.

carechain alerts                      # all three loops
carechain alerts --canary             # also the pipeline heartbeat publisher and dead-man's switch
carechain alerts --canary-only        # only the heartbeat (run it apart from the pipeline's hosts)
carechain alerts --clock-offset-s 600 # run ten minutes in the future (tests of escalation timing)
carechain alerts --seed-canary        # insert the canary's rows and exit
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import timedelta
from types import FrameType

from carechain.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-consume", action="store_true", help="do not consume Kafka alerts")
    parser.add_argument("--no-escalate", action="store_true", help="do not run the escalation loop")
    parser.add_argument("--no-dispatch", action="store_true", help="do not dispatch the outbox")
    parser.add_argument("--canary", action="store_true", help="also publish the canary and watch for it")
    parser.add_argument("--canary-only", action="store_true", help="only the canary publisher and watchdog")
    parser.add_argument("--canary-every-s", type=float, default=60.0)
    parser.add_argument("--canary-quiet-s", type=float, default=180.0, help="dead-man's switch after this silence")
    parser.add_argument("--seed-canary", action="store_true", help="insert the canary's rows and exit")
    parser.add_argument("--clock-offset-s", type=float, default=0.0, help="run this many seconds in the future")
    parser.add_argument("--escalate-every-s", type=float, default=1.0)
    parser.add_argument("--dispatchers", type=int, default=2, help="parallel outbox senders")
    parser.add_argument("--migrate", action="store_true", help="apply pending migrations first")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from alerts.canary import seed_canary
    from alerts.runner import AlertServiceRunner, Loops, offset_clock

    if args.migrate:
        from carechain.db.migrate import migrate

        migrate(settings.database_url)
    if args.seed_canary:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            seed_canary(conn, settings)
        print("canary seeded")
        return 0
    clock = offset_clock(args.clock_offset_s)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner: AlertServiceRunner | None = None
    if not args.canary_only:
        loops = Loops(
            consume=not args.no_consume,
            escalate=not args.no_escalate,
            dispatch=not args.no_dispatch,
            escalate_every_s=args.escalate_every_s,
            dispatchers=max(1, args.dispatchers),
        )
        runner = AlertServiceRunner(settings, clock, loops)
        runner.start()
        log.info("alert service running (consume=%s escalate=%s dispatch=%s)", loops.consume, loops.escalate,
                 loops.dispatch)  # fmt: skip
    canary: threading.Thread | None = None
    if args.canary or args.canary_only:
        from alerts.canary import run_canary

        quiet = timedelta(seconds=args.canary_quiet_s)
        every = timedelta(seconds=args.canary_every_s)

        def _canary() -> None:
            run_canary(settings, stop, clock, every=every, quiet_after=quiet)

        canary = threading.Thread(target=_canary, name="alerts-canary", daemon=True)
        canary.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        stop.set()
        if runner is not None:
            runner.shutdown()
        if canary is not None:
            canary.join(timeout=10)
    return 0
