"""``carechain simulate``: homes publishing over real MQTT as their gateways.

    carechain simulate --homes 50 --speed 60 --duration 120

Progress on stderr every two seconds. With ``--speed`` above 1 the run starts
in the past (a gateway may not report the future) and replays it fast until it
reaches the present, then goes on in real time.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from carechain.settings import Settings
from carechain.simulation.homes import home_config
from carechain.simulation.publisher import BrokerAddress, PublishStats, SimClock, publish_stream
from carechain.simulation.stream import demo_incidents, home_stream, merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--homes", type=int, default=50, help="number of homes (one resident, one gateway each)")
    parser.add_argument("--first-home", type=int, default=1, help="index of the first home (ids gw-0001 ...)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (the same seed gives the same days)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="heart-rate readings per second per home (a streaming wristband; 0: every 5 minutes)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall-clock second")
    parser.add_argument("--duration", type=float, default=0.0, help="wall-clock seconds to run (0: until Ctrl-C)")
    parser.add_argument(
        "--start-ago",
        type=float,
        default=None,
        help="start simulated time this many seconds in the past (default: duration x speed when accelerated)",
    )
    parser.add_argument("--incidents", choices=("demo", "none"), default="demo", help="inject the demo incidents")
    parser.add_argument("--fall-after", type=float, default=20.0, help="simulated seconds until the first fall")
    parser.add_argument("--mqtt-host", default=None, help="broker host (default CARECHAIN_MQTT_HOST)")
    parser.add_argument("--mqtt-port", type=int, default=None, help="broker port (default CARECHAIN_MQTT_PORT)")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password", default=None)
    parser.add_argument("--tls-ca", type=Path, default=None)


def start_ago(speed: float, duration: float, given: float | None) -> float:
    """How far in the past an accelerated run starts."""
    if given is not None:
        return max(0.0, given)
    if speed <= 1.0:
        return 0.0
    return duration * speed if duration > 0 else 3600.0


def run(args: argparse.Namespace, settings: Settings) -> int:
    broker = BrokerAddress(
        args.mqtt_host or settings.mqtt_host,
        args.mqtt_port or settings.mqtt_port,
        args.username or settings.mqtt_username,
        args.password or settings.mqtt_password,
        args.tls_ca or settings.mqtt_tls_ca,
    )
    now = time.time()
    sim_start = now - start_ago(args.speed, args.duration, args.start_ago)
    clock = SimClock(sim_start, args.speed, wall_start=now)
    start = datetime.fromtimestamp(sim_start, UTC)
    homes = [home_config(args.seed, args.first_home + i) for i in range(args.homes)]
    incidents = demo_incidents(args.seed, homes, start, args.fall_after) if args.incidents == "demo" else []
    for inc in incidents:
        print(f"incident {inc.type.value} {inc.resident_id} at {inc.start.isoformat()}", file=sys.stderr)
    hr_interval = 1.0 / args.rate if args.rate > 0 else 300.0
    stream = merged([home_stream(args.seed, h, start, None, incidents, hr_interval) for h in homes])
    stop = threading.Event()
    if args.duration > 0:
        threading.Timer(args.duration, stop.set).start()
    t0 = time.time()

    def progress(s: PublishStats) -> None:
        wall = max(time.time() - t0, 1e-9)
        sim = datetime.fromtimestamp(s.sim_time or clock.now(), UTC).isoformat(timespec="seconds")
        print(
            f"sim {sim}  messages {s.messages}  readings {s.readings}  {s.readings / wall:,.0f} readings/s"
            f"  drops {s.drops}  failed {s.failed}  lag {s.lag_s:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    try:
        stats = publish_stream(stream, broker, clock, stop, on_progress=progress)
    except KeyboardInterrupt:
        stop.set()
        return 130
    finally:
        stop.set()
    progress(stats)
    if stats.messages == 0 and stats.failed:
        print(f"nothing published: no MQTT broker answered on {broker.host}:{broker.port}", file=sys.stderr)
        return 1
    return 0
