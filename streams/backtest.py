"""``carechain backtest``: replay history offline through the same monitor.

Two forms:

* ``--events FILE.jsonl [--plan plan.json]``: a home's event history (one
  :class:`~carechain.events.Event` JSON per line, in arrival order) -> the
  alert candidates it would have raised, as JSON lines on stdout. Time is
  simulated: the monitors tick every ``--tick-s`` seconds of the events'
  ``received_at`` clock, as the worker would have.
* ``--detector NAME FILE.csv``: one signal (CSV ``timestamp,value``) through a
  single learned detector -> CSV ``timestamp,value,score,alert`` on stdout.
  ``--list`` names the detectors; vital signs use ``vitals``.

Bad lines are reported on stderr with their line number and skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from carechain.care_plan import CarePlan
from carechain.events import Event
from carechain.settings import Settings
from streams.models.bathroom import BathroomSeries
from streams.models.decline import DeclineSeries
from streams.models.vitals import FLOOR, VitalSignal
from streams.monitor import ResidentMonitor
from streams.registry import DETECTORS


@dataclass(frozen=True)
class SeriesDetector:
    """A learned detector usable on one signal: ``make(kind)`` returns ``step(ts, value) -> (score, alert)``."""

    name: str
    purpose: str
    make: Callable[[str], Callable[[datetime, float], tuple[float, bool]]]


def _vitals(kind: str) -> Callable[[datetime, float], tuple[float, bool]]:
    sig = VitalSignal(FLOOR.get(kind, 1.0))

    def step(ts: datetime, x: float) -> tuple[float, bool]:
        score, alert, _ = sig.step(ts.timestamp(), x)
        return score, alert

    return step


def _decline(kind: str) -> Callable[[datetime, float], tuple[float, bool]]:
    series = DeclineSeries()

    def step(ts: datetime, x: float) -> tuple[float, bool]:
        drop, alert, _, _ = series.step(x)
        return drop, alert

    return step


def _bathroom(kind: str) -> Callable[[datetime, float], tuple[float, bool]]:
    series = BathroomSeries()

    def step(ts: datetime, x: float) -> tuple[float, bool]:
        score, alert, _, _ = series.step(x, 0.0)
        return score, alert

    return step


SERIES: dict[str, SeriesDetector] = {
    "vitals": SeriesDetector(
        "vitals",
        "one vital sign (heart rate by default; --kind spo2|temperature): |z| against the personal baseline",
        _vitals,
    ),
    "decline": SeriesDetector("decline", "daily activity totals, one row per day: relative drop vs 4 weeks", _decline),
    "bathroom": SeriesDetector(
        "bathroom", "bathroom visits per day (or night), one row per day: sustained rise", _bathroom
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carechain backtest``."""
    parser.add_argument("--events", type=Path, help="Event JSON lines of a home, in arrival order")
    parser.add_argument("--plan", type=Path, help="care plan JSON (CarePlan.to_dict form) for every resident")
    parser.add_argument("--tick-s", type=float, default=5.0, help="simulated timer interval (seconds)")
    parser.add_argument("--detector", metavar="NAME", help="run one detector on a CSV signal (see --list)")
    parser.add_argument("csv", nargs="?", type=Path, help="CSV timestamp,value for --detector")
    parser.add_argument("--kind", default="heart_rate", help="vital sign of the CSV for --detector vitals")
    parser.add_argument("--list", action="store_true", help="name the detectors and exit")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point; returns the exit code."""
    if args.list:
        for s in SERIES.values():
            print(f"{s.name}\t{s.purpose}")
        print("# with --events every detector of the monitor runs: " + ", ".join(d.name for d in DETECTORS))
        return 0
    if args.detector:
        if args.detector not in SERIES:
            print(f"unknown detector {args.detector!r}; try --list", file=sys.stderr)
            return 2
        if args.csv is None:
            print("--detector needs a CSV file (timestamp,value)", file=sys.stderr)
            return 2
        with args.csv.open(newline="") as f:
            return backtest_series(SERIES[args.detector], f, sys.stdout, args.kind)
    if args.events:
        plan = json.loads(args.plan.read_text()) if args.plan else None
        with args.events.open() as f:
            n = backtest_events(f, sys.stdout, plan, timedelta(seconds=args.tick_s))
        print(f"{n} alert candidates", file=sys.stderr)
        return 0
    print("give --events FILE.jsonl, or --detector NAME FILE.csv, or --list", file=sys.stderr)
    return 2


def _parse_ts(raw: str) -> datetime:
    raw = raw.strip()
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except ValueError:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def backtest_series(det: SeriesDetector, rows: IO[str], out: IO[str], kind: str = "heart_rate") -> int:
    """CSV ``timestamp,value`` in, CSV ``timestamp,value,score,alert`` out. Returns the exit code."""
    step = det.make(kind)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "value", "score", "alert"])
    bad = 0
    for lineno, row in enumerate(csv.reader(rows), 1):
        if not row or (lineno == 1 and row[0].strip().lower() in ("timestamp", "ts", "time")):
            continue
        try:
            ts, value = _parse_ts(row[0]), float(row[1])
        except (ValueError, IndexError):
            bad += 1
            print(f"line {lineno}: expected timestamp,value", file=sys.stderr)
            continue
        score, alert = step(ts, value)
        writer.writerow([row[0].strip(), f"{value:g}", f"{score:.4f}", int(alert)])
    return 1 if bad else 0


def _events(lines: IO[str]) -> Iterator[Event]:
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield Event.from_json(line)
        except (ValueError, KeyError, TypeError) as exc:
            print(f"line {lineno}: not an event ({type(exc).__name__})", file=sys.stderr)


def backtest_events(lines: IO[str], out: IO[str], plan: dict[str, Any] | None, tick: timedelta) -> int:
    """Replay events (arrival order) with simulated ticks; write candidates as JSON lines. Returns their count."""
    monitors: dict[str, ResidentMonitor] = {}
    count = 0

    def emit(cands: list[Any]) -> None:
        nonlocal count
        for c in cands:
            out.write(c.to_json().decode() + "\n")
            count += 1

    next_tick: datetime | None = None
    for ev in _events(lines):
        clock = max(ev.received_at, ev.ts)
        if next_tick is None:
            next_tick = clock
        while next_tick <= clock:
            for each in monitors.values():
                emit(each.tick(next_tick).candidates)
            next_tick += tick
        m = monitors.get(ev.resident_id)
        if m is None:
            m = monitors[ev.resident_id] = ResidentMonitor(
                ev.resident_id, ev.home_id, CarePlan.from_dict(ev.resident_id, plan)
            )
        emit(m.process(ev).candidates)
    for each in monitors.values():
        emit(each.flush().candidates)
    return count
