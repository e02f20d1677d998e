"""The live alert stream (SSE): one LISTEN connection per API process, fanned out to subscribers.

The alert service inserts each lifecycle step into ``alert_events`` and
``pg_notify('carechain_alert_events', id)`` in the same transaction
(docs/contracts.md). This process LISTENs once, reads the row joined to its
alert, decides per subscriber with the access policy, audits every delivery
(one batch per event), and puts the text on each allowed subscriber's asyncio
queue. A reconnect with ``Last-Event-ID`` replays from the table, so the stream
is durable without an outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from api import audit, store
from api.access import Category, Decision, UserContext, alert_view, decide, read_scope

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from api.middleware import Metrics
    from carechain.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "carechain_alert_events"
HEARTBEAT_S = 15.0
REPLAY_LIMIT = 1000
QUEUE_MAX = 1000
#: Waits between tries when the database is away while a live event is prepared (seconds).
DISPATCH_RETRIES_S = (0.2, 0.5, 1.0, 2.0)
RESOURCE = "alerts/stream"

_EVENTS_SQL = (
    "SELECT e.id AS event_id, row_to_json(e)::jsonb AS event, row_to_json(a)::jsonb AS alert"
    " FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
)


@dataclass(eq=False)
class Subscriber:
    """One open SSE connection."""

    ctx: UserContext
    request_id: str | None
    queue: asyncio.Queue[tuple[int, str]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    after_id: int = 0  # live events at or below this id were already replayed
    dropped: int = 0
    #: A live event could not be delivered (queue full, database away): end the stream so the client
    #: reconnects with Last-Event-ID and the replay from the table fills the gap. Nothing is lost.
    resync: bool = False


def sse(event_id: int, data: str, event: str = "alert") -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else str(v)


def render(event: dict[str, Any], alert: dict[str, Any], ctx: UserContext) -> str:
    """The data of one SSE message for this user: the lifecycle step and the alert as they may see it."""
    ev = (
        {k: v for k, v in event.items() if k not in ("detail", "payload")}
        if alert.get("family") == "clinical"
        else event
    )
    return json.dumps({"event": ev, "alert": alert_view(ctx, alert)}, default=_jsonable, separators=(",", ":"))


class AlertStream:
    """The process's one LISTEN connection and its subscribers."""

    def __init__(self, settings: Settings, metrics: Metrics, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.settings = settings
        self.metrics = metrics
        self.heartbeat_s = heartbeat_s
        self.subscribers: set[Subscriber] = set()
        self.pool: ConnectionPool | None = None
        self.writer: audit.AuditWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.last_dispatch_ms: float | None = None

    async def start(self, pool: ConnectionPool | None = None, writer: audit.AuditWriter | None = None) -> None:
        if pool is not None:
            self.pool = pool
        self.writer = writer
        self._task = asyncio.create_task(self._listen_forever(), name="alert-stream-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        delay = 0.5
        lost = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.settings.database_url, autocommit=True) as aconn:
                    await aconn.execute(f"LISTEN {CHANNEL}")
                    if lost:
                        # Notifications sent while this connection was away are gone: every subscriber resyncs
                        # (reconnects with Last-Event-ID, the replay fills the gap). Found by the e2e test: a fall
                        # alerted during a connection cut reached the nurse only with the next, unrelated event.
                        # The pool's connections broke too: test them all once now, or each reconnect fails on
                        # one of them until they are used up (~15 s of failing SSE connects in the chaos run).
                        if self.pool is not None:
                            with contextlib.suppress(Exception):
                                await asyncio.to_thread(self.pool.check)
                        for sub in list(self.subscribers):
                            self._resync(sub)
                        lost = False
                    self.listening.set()
                    delay = 0.5
                    async for note in aconn.notifies():
                        try:
                            event_id = int(note.payload)
                        except ValueError:
                            log.warning("ignoring a non-integer payload on %s", CHANNEL)
                            continue
                        if self.subscribers:
                            await self._dispatch(event_id)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database went away: keep trying, subscribers stay connected
                self.listening.clear()
                lost = True
                log.warning("alert stream listener: %s; retrying in %.1fs", type(e).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # --- the work, done in a worker thread with a pooled (sync) connection -------------------

    def _load(self, where: str, params: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        assert self.pool is not None
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"{_EVENTS_SQL} WHERE {where} ORDER BY e.id LIMIT {REPLAY_LIMIT}", params)
            rows = list(cur.fetchall())
            residents = [str(r["alert"].get("resident_id")) for r in rows]
            facts = store.resident_facts_many(conn, residents)
        return rows, facts

    def _audit(self, entries: list[audit.AuditEntry]) -> None:
        if not entries:
            return
        if self.writer is not None:
            self.writer.write(entries)
        else:
            assert self.pool is not None
            with self.pool.connection() as conn:
                audit.record_many(conn, entries)
        self.metrics.audit_rows.inc(len(entries))

    def _deliveries(
        self, rows: list[dict[str, Any]], facts: dict[str, Any], subs: Sequence[Subscriber]
    ) -> tuple[list[tuple[Subscriber, int, str]], list[audit.AuditEntry]]:
        now = datetime.now(UTC)
        out: list[tuple[Subscriber, int, str]] = []
        entries: list[audit.AuditEntry] = []
        for row in rows:
            alert = row["alert"]
            if alert.get("suppressed") or alert.get("canary"):
                continue  # recorded, not notified (a silence, an inhibition, the pipeline canary)
            rid = str(alert.get("resident_id"))
            f = facts.get(rid)
            cache: dict[bool, str] = {}
            for sub in subs:
                d: Decision = decide(sub.ctx, f, Category.ALERTS, now)
                if not d.allowed:
                    continue
                summary = alert.get("family") == "clinical" and Category.CLINICAL not in read_scope(sub.ctx)
                text = cache.get(summary)
                if text is None:
                    text = cache[summary] = render(row["event"], alert, sub.ctx)
                out.append((sub, row["event_id"], text))
                entries.append(
                    audit.entry(
                        sub.ctx,
                        action="SSE deliver",
                        resource=f"alert_event/{row['event_id']}",
                        outcome=d.outcome,
                        purpose=d.purpose,
                        resident_id=rid,
                        basis=d.basis,
                        emergency=d.emergency,
                        request_id=sub.request_id,
                    )
                )
        return out, entries

    def _prepare(self, event_id: int, subs: Sequence[Subscriber]) -> list[tuple[Subscriber, int, str]]:
        rows, facts = self._load("e.id = %s", (event_id,))
        out, entries = self._deliveries(rows, facts, subs)
        self._audit(entries)  # logged before it leaves the API
        return out

    async def _dispatch(self, event_id: int) -> None:
        started = asyncio.get_running_loop().time()
        subs = [s for s in self.subscribers if s.after_id < event_id]
        out = None
        for delay in DISPATCH_RETRIES_S:
            try:
                out = await asyncio.to_thread(self._prepare, event_id, subs)
                break
            except Exception as e:  # the database is away: retry, then make the subscribers resync
                log.warning("alert stream: dispatch of event %s failed: %s", event_id, type(e).__name__)
                await asyncio.sleep(delay)
        if out is None:
            log.error("alert stream: event %s not dispatched; %d subscriber(s) will resync", event_id, len(subs))
            for sub in subs:
                self._resync(sub)
            return
        for sub, eid, text in out:
            try:
                sub.queue.put_nowait((eid, text))
            except asyncio.QueueFull:
                # A subscriber that does not read: it resumes from the table with Last-Event-ID.
                sub.dropped += 1
                self._resync(sub)
        self.metrics.sse_deliveries.inc(len(out))
        self.last_dispatch_ms = (asyncio.get_running_loop().time() - started) * 1000

    @staticmethod
    def _resync(sub: Subscriber) -> None:
        sub.resync = True
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait((0, ""))  # wake the stream so it ends now

    def replay(self, sub: Subscriber, last_event_id: int) -> list[tuple[int, str]]:
        """Events after ``last_event_id`` (up to ``sub.after_id``) this subscriber may see (audited), oldest first."""
        rows, facts = self._load("e.id > %s AND e.id <= %s", (last_event_id, sub.after_id))
        out, entries = self._deliveries(rows, facts, [sub])
        self._audit(entries)
        return [(eid, text) for _, eid, text in out]

    def last_event_id(self) -> int:
        assert self.pool is not None
        with self.pool.connection() as conn:
            row = conn.execute("SELECT coalesce(max(id), 0) FROM alert_events").fetchone()
        return int(row[0]) if row else 0

    async def subscribe(
        self, ctx: UserContext, request_id: str | None, last_event_id: int | None
    ) -> AsyncIterator[str]:
        """The SSE text for one subscriber: replay after ``last_event_id``, then live, with heartbeats."""
        sub = Subscriber(ctx, request_id)
        self.subscribers.add(sub)
        self.metrics.sse_subscribers.inc()
        try:
            yield f"retry: 2000\n: subscribed {datetime.now(UTC).isoformat()}\n\n"
            if last_event_id is not None:
                # Registered before the replay, so nothing falls between replay and live.
                sub.after_id = await asyncio.to_thread(self.last_event_id)
                for eid, text in await asyncio.to_thread(self.replay, sub, last_event_id):
                    yield sse(eid, text)
            while True:
                try:
                    eid, text = await asyncio.wait_for(sub.queue.get(), timeout=self.heartbeat_s)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                if sub.resync:
                    yield ": resync: reconnect with Last-Event-ID\n\n"
                    return
                if eid > sub.after_id:
                    yield sse(eid, text)
        finally:
            self.subscribers.discard(sub)
            self.metrics.sse_subscribers.dec()
