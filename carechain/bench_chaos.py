"""``carechain bench chaos``: faults injected into the running distributed pipeline.

At ``--rate`` readings/s (issue: 2,000/s for 10 minutes; ``--duration`` shortens it) with
falls injected every ``--fall-every-s`` (known incident keys), this run, in turn:

* ``kill -9`` the bridge, a worker, the alert service and the API, restarting each at once;
* restarts the Kafka broker and PostgreSQL (``carechain services restart --only ...`` on the
  PRIVATE instance of :mod:`carechain.pipeline`, never the shared services);
* cuts one gateway off for ``--cut-s`` seconds (its readings are held) and lets it send its
  backfill when it is back.

Recovery time of a fault = from the fault until a fall injected at that moment reaches the
nurse's SSE stream (the whole chain works again); for the API also the SSE reconnect time,
for the gateway cut the time until its backfill is stored.

Counted at the end: events ``lost`` (every published reading must be in ``observations``
exactly once, by device and seq), alerts ``duplicated`` (an injected fall's incident key
with more than one alert row, or proposed twice on SSE), injected incidents ``missed`` (no
alert row / never on SSE).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from carechain.bench import progress
from carechain.bench_e2e import Stack, start_stack, wait_fall, warm_up
from carechain.pipeline import PrivateServices
from carechain.settings import Settings

FAULTS = ("bridge", "worker", "alerts", "api", "kafka", "postgres", "gateway")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carechain bench chaos``."""
    parser.add_argument("--rate", type=float, default=2000.0, help="readings/s throughout")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (faults spread over it)")
    parser.add_argument("--homes", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20, help="readings per MQTT message")
    parser.add_argument("--fall-every-s", type=float, default=2.0)
    parser.add_argument("--cut-s", type=float, default=60.0, help="how long the gateway is cut off")
    parser.add_argument("--faults", default=",".join(FAULTS), help="which faults, in this order")
    parser.add_argument("--recovery-timeout-s", type=float, default=180.0)
    parser.add_argument("--drain-timeout-s", type=float, default=180.0, help="wait this long for stragglers")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--keep", action="store_true")


class Load:
    """The gateways publish at ``rate`` in one-second slices until stopped."""

    def __init__(self, stack: Stack, rate: float, fall_every_s: float) -> None:
        self.stack, self.rate, self.fall_every_s = stack, rate, fall_every_s
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._readings, daemon=True),
                        threading.Thread(target=self._falls, daemon=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _readings(self) -> None:
        while not self.stop.is_set():
            try:
                with self.stack.gateways.lock:
                    pass
                self.stack.gateways.publish_rate(self.rate, 1.0)
            except Exception as e:  # a broker hiccup must not end the load silently
                self.errors.append(type(e).__name__)
                time.sleep(0.5)

    def _falls(self) -> None:
        while not self.stop.wait(self.fall_every_s):
            with contextlib.suppress(Exception):
                self.stack.falls.inject("chaos")

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _kill_and_restart(stack: Stack, name: str) -> Callable[[], dict[str, Any]]:
    def fault() -> dict[str, Any]:
        stack.pipeline.kill9(name)
        stack.pipeline.restart(name)
        return {"action": f"kill -9 {name}, restarted"}

    return fault


def _service_restart(stack: Stack, which: str) -> Callable[[], dict[str, Any]]:
    def fault() -> dict[str, Any]:
        t0 = time.monotonic()
        stack.services.harness("restart", which)
        return {"action": f"services restart --only {which}", "restart_s": round(time.monotonic() - t0, 1)}

    return fault


def _gateway_cut(stack: Stack, cut_s: float) -> Callable[[], dict[str, Any]]:
    def fault() -> dict[str, Any]:
        gws = stack.gateways
        gw = gws.fleet.gateways[-1]
        gws.paused.add(gw)
        time.sleep(cut_s)
        with gws.lock:
            held = len(gws.held.get(gw, []))
            gws.paused.discard(gw)
        sent = gws.backfill(gw)
        return {"action": f"gateway {gw} cut off for {cut_s:.0f} s, then backfill", "held_messages": held,
                "backfill_messages": sent}

    return fault


def _probe(stack: Stack, t_fault: float, timeout: float) -> float | None:
    """Seconds from the fault until a fall injected at the fault reaches the nurse."""
    key = None
    deadline = time.monotonic() + 40
    while key is None and time.monotonic() < deadline:
        key = stack.falls.inject("probe")
        if key is None:
            time.sleep(0.5)
    if key is None:
        return None
    stack.falls.sent[key] = t_fault  # measured from the fault itself
    try:
        lat = wait_fall(stack, key, timeout)
    except RuntimeError:
        lat = None
    return None if lat is None else round(lat, 2)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    for noisy in ("kafka", "httpx", "carechain.db.migrate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    services = PrivateServices()
    args.out.mkdir(parents=True, exist_ok=True)
    stack = start_stack(services, args.homes, args.batch, args.out / "logs")
    result: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "rate": args.rate,
                              "duration_s": args.duration, "homes": args.homes}
    faults_done: list[dict[str, Any]] = []
    try:
        result["warmup_s"] = round(warm_up(stack), 1)
        progress(f"pipeline up; load {args.rate:.0f} readings/s for {args.duration:.0f} s")
        load = Load(stack, args.rate, args.fall_every_s)
        t_start = time.monotonic()
        load.start()
        wanted = [f for f in args.faults.split(",") if f]
        table: dict[str, Callable[[], dict[str, Any]]] = {
            "bridge": _kill_and_restart(stack, "bridge"),
            "worker": _kill_and_restart(stack, "worker-1"),
            "alerts": _kill_and_restart(stack, "alerts"),
            "api": _kill_and_restart(stack, "api"),
            "kafka": _service_restart(stack, "kafka"),
            "postgres": _service_restart(stack, "postgres"),
            "gateway": _gateway_cut(stack, args.cut_s),
        }
        gap = args.duration / (len(wanted) + 1)
        for i, name in enumerate(wanted):
            due = t_start + gap * (i + 1)
            while time.monotonic() < due:
                time.sleep(0.5)
            progress(f"fault {i + 1}/{len(wanted)}: {name}")
            t_fault = time.time()
            reconnects = len(stack.sse.reconnected_at)
            info = table[name]()
            info["fault"] = name
            info["at_s"] = round(time.monotonic() - t_start, 1)
            info["recovery_s"] = _probe(stack, t_fault, args.recovery_timeout_s)
            if name == "api":
                with contextlib.suppress(Exception):
                    deadline = time.monotonic() + 60
                    while len(stack.sse.reconnected_at) <= reconnects and time.monotonic() < deadline:
                        time.sleep(0.2)
                    if len(stack.sse.reconnected_at) > reconnects:
                        info["sse_reconnect_s"] = round(stack.sse.reconnected_at[reconnects] - t_fault, 2)
            progress(f"  {info}")
            faults_done.append(info)
        while time.monotonic() < t_start + args.duration:
            time.sleep(0.5)
        load.finish()
        result["load_errors"] = load.errors
        stack.gateways.wait_all()
        expected = stack.gateways.expected()
        progress(f"load over; waiting for {sum(expected.values())} readings to be stored")
        stack.obs.wait_for(sum(expected.values()), stall_s=args.drain_timeout_s / 3)
        time.sleep(5.0)
        result["faults"] = faults_done
        result["audit"] = stack.obs.audit(expected)
        result["incidents"] = incidents(stack)
        result["dead_processes"] = stack.pipeline.dead()
        result["process_starts"] = {n: p.starts for n, p in stack.pipeline.processes.items()}
    finally:
        stack.close(args.keep)
    inc = result.get("incidents", {})
    return {
        "events_per_s": args.rate,
        "lost": result.get("audit", {}).get("lost"),
        "duplicated": inc.get("duplicated"),
        "missed": inc.get("missed"),
        "recovery_s": {f["fault"]: f["recovery_s"] for f in faults_done},
        **result,
    }


def incidents(stack: Stack) -> dict[str, Any]:
    """Injected falls: missed (no alert / never on SSE) and duplicated (two alerts or two proposals)."""
    # Warm-up falls are left out: the first may be published before the bridge's MQTT session exists,
    # and a broker keeps nothing for a subscription that does not exist yet.
    keys = [k for k in stack.falls.sent if stack.falls.phase_of.get(k) != "warmup"]
    with psycopg.connect(stack.settings.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT incident_key, count(*), bool_or(suppressed), max(suppressed_by), min(opened_at)"
            " FROM alerts WHERE incident_key = ANY(%s) GROUP BY incident_key",
            (keys,),
        ).fetchall()
    in_db = {r[0]: int(r[1]) for r in rows}
    muted = {r[0]: str(r[3]) for r in rows if r[2]}
    opened = {r[0]: r[4].timestamp() for r in rows if r[4] is not None}
    missed_db = [k for k in keys if k not in in_db]
    missed_sse = [k for k in keys if k not in stack.sse.first_seen]
    dup_db = [k for k, c in in_db.items() if c > 1]
    dup_sse = [k for k, c in stack.sse.proposed.items() if c > 1 and k in stack.falls.sent]
    return {
        "injected": len(keys),
        "missed": len(set(missed_db) | set(missed_sse)),
        "missed_in_db": missed_db[:20],
        # Why an alert that is stored never reached the nurse: muted by the alert service (suppressed_by), or
        # not pushed; with the alert's opening time relative to the fall's publish time (seconds).
        "missed_on_sse": [{"key": k, "suppressed_by": muted.get(k),
                           "opened_after_s": round(opened[k] - stack.falls.sent[k], 1) if k in opened else None}
                          for k in missed_sse[:20]],
        "suppressed": dict(Counter(muted.values())),
        "duplicated": len(set(dup_db) | set(dup_sse)),
        "duplicated_keys": sorted(set(dup_db) | set(dup_sse))[:20],
        "sse_connects": stack.sse.connects,
    }
