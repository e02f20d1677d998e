"""``carechain bench api``: latency of the alert list and a resident's 30-day timeline under many concurrent
clients, and the live stream's fan-out to many subscribers.

Runs against a private database on the configured PostgreSQL server and a real ``carechain api`` process
(uvicorn) on a free port; the load comes from this process (asyncio, a minimal HTTP/1.1 keep-alive client per
client: the generator shares the cores with what it measures, so its own CPU must stay small). Each client is a
nurse with her own token and care relations; a client sends a request, waits for the answer, thinks, and repeats.
Each load phase reports the CPU used per request by the load generator, the API processes and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from api.auth import LocalIssuer
from carechain.bench import percentiles, progress
from carechain.settings import Settings

ORG = "bench-kommun"
REGION = "bench-region"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (nurses)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load phase")
    parser.add_argument("--think-ms", type=float, default=1000.0, help="pause between a client's requests")
    parser.add_argument("--residents", type=int, default=400)
    parser.add_argument("--residents-per-nurse", type=int, default=10)
    parser.add_argument("--alerts-per-resident", type=int, default=10)
    parser.add_argument("--timeline-residents", type=int, default=20, help="residents with 30 days of readings")
    parser.add_argument("--readings-per-hour", type=int, default=12)
    parser.add_argument("--subscribers", type=int, default=1000, help="0: no fan-out test")
    parser.add_argument("--sse-alerts", type=int, default=5, help="alerts sent to the subscribers, one at a time")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes of the API")
    parser.add_argument(
        "--warmup", type=float, default=6.0, help="seconds of unmeasured load first (pool, backends, caches)"
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="load generator processes (the clients split among them, results merged)",
    )
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--samples-out",
        help="write every measured request as CSV (phase, s from the phase's first request, ms, Unix time)",
    )


# --- set-up ---------------------------------------------------------------------------------------


def _db_url(base: str, name: str) -> str:
    return base.rpartition("/")[0] + "/" + name


def _migrate(url: str) -> str:
    from carechain.db.migrate import migrate

    return migrate(url).mode


def _seed(url: str, args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    residents = [f"rb-{i:05d}" for i in range(args.residents)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organisations (org_id, name, kind) VALUES (%s, 'Bench kommun', 'kommun'),"
            " (%s, 'Bench region', 'region')",
            (ORG, REGION),
        )
        with conn.cursor() as cur:
            with cur.copy("COPY homes (home_id, kommun_org_id, region_org_id) FROM STDIN") as cp:
                for r in residents:
                    cp.write_row((f"h-{r}", ORG, REGION))
            with cur.copy("COPY residents (resident_id, home_id, kommun_org_id, region_org_id) FROM STDIN") as cp:
                for r in residents:
                    cp.write_row((r, f"h-{r}", ORG, REGION))
            with cur.copy(
                "COPY care_relations (user_id, org_id, unit, resident_id, kind, valid_from, created_by) FROM STDIN"
            ) as cp:
                for n in range(args.clients):
                    for k in range(args.residents_per_nurse):
                        r = residents[(n * args.residents_per_nurse + k) % len(residents)]
                        cp.write_row((f"nurse-{n}", ORG, "hc", r, "care_team", now - timedelta(days=1), "bench"))
                for s in range(50):  # the subscribers' nurses all care for resident 0
                    cp.write_row((f"sse-{s}", ORG, "hc", residents[0], "care_team", now - timedelta(days=1), "bench"))
        progress(f"seeding {len(residents) * args.alerts_per_resident} alerts")
        with conn.cursor() as cur:
            for r in residents:
                cur.executemany(
                    "INSERT INTO alerts (resident_id, kind, family, severity, status, detector, detector_version,"
                    " reason, reason_sv, evidence, responsible_org_id, created_at)"
                    " VALUES (%s, %s, %s, 'high', 'proposed', %s, '1.0', 'Bench alert.', 'Benchlarm.', %s, %s, %s)",
                    [
                        (
                            r,
                            "fall" if a % 3 else "infection_signs",
                            "welfare" if a % 3 else "clinical",
                            "fall",
                            Jsonb({"score": 0.9}),
                            ORG,
                            now - timedelta(hours=a * 7),
                        )
                        for a in range(args.alerts_per_resident)
                    ],
                )
        timeline = residents[: args.timeline_residents]
        progress(f"seeding 30 days of readings for {len(timeline)} residents")
        copy = (
            "COPY observations (event_id, resident_id, home_id, device_id, room, kind, value_num, ts, received_at,"
            " seq) FROM STDIN"
        )
        if conn.execute("SELECT to_regproc('cc_observation_partitions')").fetchone() != (None,):
            # Plain PostgreSQL partitions observations by UTC day, made on demand (migration 0006).
            days = [(now - timedelta(days=d)).date() for d in range(32)]
            conn.execute("SELECT cc_observation_partitions(%s::date[])", (days,))
        with conn.cursor() as cur, cur.copy(copy) as cp:
            step = 60 // args.readings_per_hour
            for r in timeline:
                for h in range(30 * 24):
                    for k in range(args.readings_per_hour):
                        ts = now - timedelta(hours=h, minutes=k * step)
                        kind = "motion" if k % 3 else "heart_rate"
                        value = 1.0 if kind == "motion" else 60.0 + k
                        cp.write_row((f"{r}-{h}-{k}", r, f"h-{r}", "d", "hall", kind, value, ts, ts, h * 100 + k))
        # The seed's maintenance must not fall into the measured phases, where every request waits for a WAL
        # flush: autovacuum visits a new database within a minute and vacuums every freshly filled table (setting
        # hint bits and the visibility map writes every page again, WAL-logged, with full-page images after a
        # checkpoint), and COPY's ring buffer hands its dirty pages to the kernel, which writes them back ~30 s
        # later. So vacuum, analyze, and write and sync everything now.
        progress("vacuum, analyze and checkpoint after seeding")
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    return {"residents": residents, "timeline": timeline}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(url: str, state_dir: str, workers: int) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {
        **os.environ,
        "CARECHAIN_DATABASE_URL": url,
        "CARECHAIN_STATE_DIR": state_dir,
        "CARECHAIN_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "carechain.cli", "api", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the API did not become ready")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- load -----------------------------------------------------------------------------------------


class _HttpConnection:
    """A minimal HTTP/1.1 keep-alive client for GETs (the load generator's own CPU must stay small: httpx
    costs ~3 ms of client CPU a request, which on 2 shared cores is a large share of what is measured)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        return self._reader, self._writer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def get(self, path: str, headers: bytes) -> tuple[int, bytes]:
        """One GET; returns (status, body). A broken connection raises (the next call reconnects)."""
        try:
            reader, writer = await self._open()
            writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + self.host.encode() + b"\r\n" + headers)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length = -1
            chunked = close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                parts = []
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    parts.append(await reader.readexactly(size + 2))
                    if size == 0:
                        break
                body = b"".join(p[:-2] for p in parts)
            elif length >= 0:
                body = await reader.readexactly(length)
            else:
                body = await reader.read()
                close = True
            if close:
                await self.close()
            return status, body
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await self.close()
            raise


class CpuMeter:
    """CPU seconds used by the load generator (this process), the API (its process tree) and PostgreSQL
    (the backends of the bench database), between :meth:`start` and :meth:`stop`."""

    def __init__(self, api_pid: int | None, db_name: str | None, database_url: str | None = None) -> None:
        self.api_pid = api_pid
        self.db_name = db_name
        self.database_url = database_url
        self._t0: dict[str, float] = {}

    def _wal(self) -> float:
        """The server's WAL insert position in bytes (the whole cluster's: other databases' writes count too)."""
        if self.database_url is None:
            return 0.0
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
        return float(row[0]) if row else 0.0

    def _api(self) -> float:
        import psutil

        if self.api_pid is None:
            return 0.0
        total = 0.0
        try:
            root = psutil.Process(self.api_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def _pg(self) -> float:
        import psutil

        if self.db_name is None:
            return 0.0
        total = 0.0
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(p.info["cmdline"] or [])
                if cmd.startswith("postgres:") and f" {self.db_name} " in cmd:
                    t = p.cpu_times()
                    total += t.user + t.system
        return total

    def _now(self) -> dict[str, float]:
        return {
            "client": time.process_time(),
            "api": self._api(),
            "postgres": self._pg(),
            "wal": self._wal(),
            "wall": time.monotonic(),
        }

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self, requests: int, client_extra_s: float = 0.0) -> dict[str, Any]:
        """CPU per request (ms) and share of one core, per component (``client_extra_s``: CPU seconds the load
        generator used in processes of its own)."""
        t1 = self._now()
        t1["client"] += client_extra_s
        wall = max(t1["wall"] - self._t0["wall"], 1e-9)
        out: dict[str, Any] = {}
        for k in ("client", "api", "postgres"):
            used = t1[k] - self._t0[k]
            out[f"{k}_cpu_ms_per_request"] = round(used * 1000 / max(requests, 1), 2)
            out[f"{k}_cores"] = round(used / wall, 2)
        if self.database_url is not None:
            # WAL written per request: every request waits for its audit rows' WAL flush, and the flush's time
            # grows with the bytes to write (full-page images of index pages first touched since a checkpoint).
            out["wal_kb_per_request"] = round((t1["wal"] - self._t0["wal"]) / 1024 / max(requests, 1), 2)
        return out


#: The loop-lag probe's period: a sleep this long that wakes later than this is the client's own delay.
LAG_PROBE_S = 0.01


async def _clients(
    base: str,
    tokens: list[str],
    paths: list[str],
    indices: list[int],
    start_at: float,
    duration: float,
    think_s: float,
) -> tuple[list[float], int, list[float], list[float]]:
    """Clients ``indices`` (of ``len(tokens)``) from ``start_at`` (``time.monotonic()``, one clock for every process
    on Linux) for ``duration`` s; returns their latencies (ms), errors, and this event loop's lag (ms: how late each
    of the probe's sleeps woke up — a client whose loop is late adds that to every latency it measures), and when
    each request was sent (Unix time)."""
    samples: list[float] = []
    sent: list[float] = []
    lags: list[float] = []
    errors = 0
    stop = start_at + duration
    host, _, port = base.removeprefix("http://").partition(":")

    async def client(i: int) -> None:
        nonlocal errors
        conn = _HttpConnection(host, int(port))
        headers = f"Authorization: Bearer {tokens[i]}\r\n\r\n".encode()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()) + think_s * i / len(tokens))  # spread the first
        path = paths[i % len(paths)]
        try:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                sent.append(time.time())
                try:
                    status, _ = await asyncio.wait_for(conn.get(path, headers), 30)
                    ok = status == 200
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
                    ok = False  # e.g. a keep-alive connection closed by the server as we sent
                    await conn.close()
                samples.append((time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1
                await asyncio.sleep(think_s)
        finally:
            await conn.close()

    async def lag_probe() -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            lags.append((time.perf_counter() - t0 - LAG_PROBE_S) * 1000)

    await asyncio.gather(lag_probe(), *(client(i) for i in indices))
    return samples, errors, lags, sent


def _clients_process(
    base: str,
    tokens: list[str],
    paths: list[str],
    indices: list[int],
    start_at: float,
    duration: float,
    think_s: float,
) -> tuple[list[float], int, list[float], list[float], float]:
    """:func:`_clients` in a load generator process of its own; also returns the CPU seconds it used."""
    cpu0 = time.process_time()
    samples, errors, lags, sent = asyncio.run(_clients(base, tokens, paths, indices, start_at, duration, think_s))
    return samples, errors, lags, sent, time.process_time() - cpu0


def _load(
    base: str,
    tokens: list[str],
    paths: list[str],
    duration: float,
    think_s: float,
    meter: CpuMeter | None = None,
    procs: ProcessPoolExecutor | None = None,
    n_procs: int = 1,
    trace: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """One load phase: ``len(tokens)`` clients, in this process or split among ``n_procs`` processes of ``procs``
    (client i in process i mod n), results merged."""
    if meter is not None:
        meter.start()
    started = time.monotonic()
    start_at = started + (0.5 if procs is not None else 0.0)  # every process starts its clients at the same time
    if procs is None or n_procs <= 1:
        samples, errors, lags, sent = asyncio.run(
            _clients(base, tokens, paths, list(range(len(tokens))), start_at, duration, think_s)
        )
        lag_by_proc = [lags]
        extra_cpu = 0.0
    else:
        futures = [
            procs.submit(
                _clients_process, base, tokens, paths, list(range(k, len(tokens), n_procs)), start_at, duration, think_s
            )
            for k in range(n_procs)
        ]
        samples, errors, lag_by_proc, sent, extra_cpu = [], 0, [], [], 0.0
        for f in futures:
            s_, e_, l_, t_, c_ = f.result()
            samples += s_
            sent += t_
            errors += e_
            lag_by_proc.append(l_)
            extra_cpu += c_
    elapsed = time.monotonic() - start_at
    if trace is not None:
        trace += zip(sent, samples, strict=True)
    cpu = meter.stop(len(samples), client_extra_s=extra_cpu) if meter is not None else {}
    lag = percentiles([x for lags in lag_by_proc for x in lags])
    return {
        **percentiles(samples),
        "requests_per_s": round(len(samples) / elapsed, 1),
        "errors": errors,
        **cpu,
        "client_processes": max(1, n_procs if procs is not None else 1),
        "client_loop_lag_ms": {**lag, "max_ms": round(max((x for ls in lag_by_proc for x in ls), default=0.0), 3)},
    }


async def _fanout(
    base: str, url: str, tokens: list[str], n_subscribers: int, n_alerts: int, resident: str
) -> dict[str, Any]:
    received: dict[int, list[float]] = {}
    connected = 0
    host, _, port = base.removeprefix("http://").partition(":")
    # One raw HTTP/1.1 connection per subscriber (httpx's per-line cost delayed the client's own reading).

    async def subscriber(i: int) -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
        try:
            writer.write(
                f"GET /v1/alerts/stream HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
                f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                return
            connected += 1
            # Chunked SSE: every event is one chunk; its "id: N" line is all that is timed.
            while line := await reader.readline():
                if line.startswith(b"id: "):
                    received.setdefault(int(line[4:]), []).append(time.perf_counter())
        finally:
            writer.close()

    tasks = [asyncio.create_task(subscriber(i)) for i in range(n_subscribers)]
    deadline = time.monotonic() + 60
    while connected < n_subscribers and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    progress(f"{connected} subscribers connected")
    await asyncio.sleep(1.0)
    latencies: list[float] = []
    complete = 0
    sent: list[tuple[int, float]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(n_alerts):
            with conn.transaction():
                a = conn.execute(
                    "INSERT INTO alerts (resident_id, kind, family, severity, status, responsible_org_id)"
                    " VALUES (%s, 'fall', 'welfare', 'critical', 'proposed', %s) RETURNING id",
                    (resident, ORG),
                ).fetchone()
                assert a is not None
                e = conn.execute(
                    "INSERT INTO alert_events (alert_id, type) VALUES (%s, 'proposed') RETURNING id", (a[0],)
                ).fetchone()
                assert e is not None
                conn.execute("SELECT pg_notify('carechain_alert_events', %s)", (str(e[0]),))
            t_commit = time.perf_counter()
            sent.append((int(e[0]), t_commit))
            await asyncio.sleep(2.0)
    for eid, t_commit in sent:
        times = received.get(eid, [])
        latencies += [(t - t_commit) * 1000 for t in times]
        if len(times) >= n_subscribers:
            complete += 1
        progress(
            f"alert event {eid}: {len(times)}/{n_subscribers} subscribers, slowest "
            f"{max(((t - t_commit) * 1000 for t in times), default=float('nan')):.0f} ms"
        )
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    worst = [max((t - tc) * 1000 for t in received.get(eid, [tc])) for eid, tc in sent]
    return {
        "subscribers": n_subscribers,
        "connected": connected,
        "alerts": n_alerts,
        "alerts_reaching_every_subscriber": complete,
        **percentiles(latencies),
        "slowest_subscriber_ms_per_alert": [round(w, 1) for w in worst],
    }


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Set up, load, measure, clean up; returns the JSON result."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per request would load the client
    name = f"cc_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _db_url(settings.database_url, name)
    state_dir = tempfile.mkdtemp(prefix="cc-bench-api-")
    try:
        schema = _migrate(url)
        progress(f"database {name} ({schema}); seeding")
        world = _seed(url, args)
        issuer = LocalIssuer(Path(state_dir), settings.jwt_issuer, settings.jwt_audience)
        tokens = [issuer.mint(f"nurse-{n}", ORG, "nurse", "hc", ttl_s=7200) for n in range(args.clients)]
        sse_tokens = [issuer.mint(f"sse-{s}", ORG, "nurse", "hc", ttl_s=7200) for s in range(50)]
        since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        timeline_paths = [
            f"/v1/residents/{r}/timeline?interval=1h&since={since.replace('+', '%2B')}" for r in world["timeline"]
        ]
        load_at_start = round(os.getloadavg()[0], 2)
        n_procs = max(1, args.client_procs)
        procs = ProcessPoolExecutor(n_procs, mp_context=mp.get_context("fork")) if n_procs > 1 else None
        with _server(url, state_dir, args.workers) as (base, api_pid), procs or contextlib.nullcontext():
            meter = CpuMeter(api_pid, name, url)
            # Every client also cares for one of the residents with 30 days of readings.
            with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO care_relations (user_id, org_id, unit, resident_id, kind, created_by)"
                    " VALUES (%s, %s, 'hc', %s, 'care_team', 'bench')",
                    [(f"nurse-{n}", ORG, world["timeline"][n % len(world["timeline"])]) for n in range(args.clients)],
                )
            think = args.think_ms / 1000
            per_client = [timeline_paths[n % len(timeline_paths)] for n in range(args.clients)]
            if args.warmup > 0:
                # Steady state is measured: fresh worker processes open their pools, PostgreSQL backends load
                # their catalog caches, tokens are verified once and the timeline cache fills.
                progress(f"warm-up: {args.warmup:.0f} s, not measured")
                for half in (0, 1):  # every client asks for both: half of them the list first, half the timeline
                    mixed = [["/v1/alerts?limit=50", per_client[n]][(n + half) % 2] for n in range(args.clients)]
                    _load(base, tokens, mixed, args.warmup / 2, think, None, procs, n_procs)
            progress(
                f"alert list: {args.clients} clients for {args.duration:.0f} s (think {args.think_ms:.0f} ms),"
                f" {n_procs} client process(es)"
            )
            traces: dict[str, list[tuple[float, float]]] = {"list": [], "timeline": [], "saturated": []}
            alert_list = _load(
                base, tokens, ["/v1/alerts?limit=50"], args.duration, think, meter, procs, n_procs, traces["list"]
            )
            progress(f"  {alert_list}")
            progress(f"timeline 30 days hourly: {args.clients} clients for {args.duration:.0f} s")
            timeline = _load(base, tokens, per_client, args.duration, think, meter, procs, n_procs, traces["timeline"])
            progress(f"  {timeline}")
            progress(f"saturation (no think time): alert list, {args.clients} clients for 5 s")
            saturated = _load(
                base, tokens, ["/v1/alerts?limit=50"], 5.0, 0.0, meter, procs, n_procs, traces["saturated"]
            )
            progress(f"  {saturated}")
            fanout: dict[str, Any] = {"skipped": True}
            if args.subscribers > 0:
                progress(f"SSE fan-out to {args.subscribers} subscribers")
                fanout = asyncio.run(
                    _fanout(base, url, sse_tokens, args.subscribers, args.sse_alerts, world["residents"][0])
                )
        if args.samples_out:
            with open(args.samples_out, "w") as out:
                out.write("phase,sent_s,ms,sent_unix\n")
                for phase, rows in traces.items():
                    t0 = min((t for t, _ in rows), default=0.0)
                    out.writelines(f"{phase},{t - t0:.4f},{ms:.3f},{t:.4f}\n" for t, ms in sorted(rows))
        return {
            "schema": schema,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "load_average_1m_start": load_at_start,
            "cpus": os.cpu_count(),
            "clients": args.clients,
            "think_ms": args.think_ms,
            "api_workers": args.workers,
            "client_processes": n_procs,
            "warmup_s": args.warmup,
            "alert_list": alert_list,
            "timeline_30d_hourly": timeline,
            "alert_list_saturated": saturated,
            "sse_fanout": fanout,
            "p50_ms": alert_list["p50_ms"],
            "p99_ms": alert_list["p99_ms"],
            "targets": {"p99_ms": 100, "sse_every_subscriber_ms": 500},
        }
    finally:
        if not args.keep_db:
            with psycopg.connect(settings.database_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
