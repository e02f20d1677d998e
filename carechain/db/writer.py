"""The storage writer: batched, idempotent, retrying, with explicit back-pressure.

Guarantees (docs/storage.md, "Writer"):

* **Idempotent.** A batch goes by binary COPY straight into ``observations`` inside a
  savepoint; if any row is already there (unique on ``(resident_id, ts, event_id)``; event ids
  are deterministic), the savepoint is rolled back and the batch goes by COPY into a
  session-private staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. A
  replayed batch, or a retry after a commit whose acknowledgement was lost, adds nothing.
* **Durable or raised.** :meth:`EventWriter.write_events` returns only after the commit.
  When the database is away (connection refused, admin shutdown, a terminated connection,
  no pooled connection in time) it retries with exponential backoff and full jitter until
  ``retry_deadline_s``; then it raises :class:`StorageUnavailable`, and the caller must
  not commit its Kafka offsets: nothing is dropped, and the replay is harmless.
* **Back-pressure as a value.** :class:`BufferedWriter` holds a bounded number of pending
  events; :meth:`BufferedWriter.submit` raises :class:`Backpressure` (accepting nothing of
  that batch) when it would overflow, so the caller pauses its source instead of growing
  memory without bound (the quix-streams ``SinkBackpressureError`` idea, STYLE.md).

* **Day partitions** (plain PostgreSQL, migration 0006): before a batch, the UTC days it
  covers that this writer has not seen yet get their partition (``cc_observation_partitions``,
  in its own short transaction); if a partition it knew was dropped since, the COPY fails with
  "no partition" (23514), the writer forgets what it knew, makes the days again and retries.

Errors that no retry can fix (bad data, a missing table) are raised at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from carechain.events import Event
from carechain.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_OBS_COLUMNS = (
    "event_id",
    "resident_id",
    "home_id",
    "device_id",
    "room",
    "kind",
    "value_num",
    "value_text",
    "ts",
    "received_at",
    "seq",
    "late",
)
_OBS_TYPES = ["text"] * 6 + ["float8", "text", "timestamptz", "timestamptz", "int8", "bool"]
_SCORE_COLUMNS = ("resident_id", "detector", "detector_version", "ts", "score", "threshold", "features")
_SCORE_TYPES = ["text", "text", "text", "timestamptz", "float8", "float8", "jsonb"]

_OBS_COLS = ", ".join(_OBS_COLUMNS)
_OBS_RESIDENT = itemgetter(_OBS_COLUMNS.index("resident_id"))
_OBS_TS_INDEX = _OBS_COLUMNS.index("ts")
_OBS_TS = itemgetter(_OBS_TS_INDEX)
_SCORE_COLS = ", ".join(_SCORE_COLUMNS)

# Session-private staging tables, created once per pooled connection. ON COMMIT DELETE ROWS
# empties them at every commit, and a failed transaction rolls their rows back with it.
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS cc_stage_observations ("
    " event_id text, resident_id text, home_id text, device_id text, room text, kind text,"
    " value_num double precision, value_text text, ts timestamptz, received_at timestamptz,"
    " seq bigint, late boolean) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS cc_stage_scores ("
    " resident_id text, detector text, detector_version text, ts timestamptz,"
    " score double precision, threshold double precision, features jsonb) ON COMMIT DELETE ROWS",
)


class StorageUnavailable(ConnectionError):
    """The database stayed unreachable past the retry deadline; nothing of the batch is known to be stored.

    A ``ConnectionError``, so adapters that already treat connection errors as "retry later"
    keep doing so. Callers must not commit the offsets of the batch.
    """


class Backpressure(Exception):
    """The writer's buffer is full: slow down, flush, and submit the same batch again."""

    def __init__(self, pending: int, capacity: int, offered: int) -> None:
        super().__init__(f"writer buffer full: {pending} pending + {offered} offered > capacity {capacity}")
        self.pending = pending
        self.capacity = capacity
        self.offered = offered


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by a deadline per call."""

    deadline_s: float = 30.0
    initial_s: float = 0.05
    max_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """Sleep before retry number ``attempt`` (0-based): random in [0, min(max, initial * 2^attempt)]."""
        return random.uniform(0.0, min(self.max_s, self.initial_s * (2**attempt)))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A detector's serialised state for one resident (explicit codec, never pickle)."""

    resident_id: str
    detector: str
    version: str
    state: bytes
    updated_at: datetime


def is_transient(exc: BaseException) -> bool:
    """Whether a retry can help: the server or the connection is away, not the data wrong."""
    if isinstance(exc, errors.QueryCanceled):
        return True  # statement timeout under load
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # OperationalError covers refused connections, AdminShutdown/CrashShutdown/CannotConnectNow
        # (57P0x), "server closed the connection", PoolTimeout; InterfaceError a closed connection.
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate.startswith("57P") or sqlstate in ("40001", "40P01")


def observation_row(event: Event, late: bool) -> tuple[Any, ...]:
    """One ``observations`` row: booleans become 1/0 and numbers ``value_num``, strings ``value_text``."""
    value = event.value
    num: float | None = None
    text: str | None = None
    if isinstance(value, bool):
        num = 1.0 if value else 0.0
    elif isinstance(value, int | float):
        num = float(value)
    elif isinstance(value, str):
        text = value
    return (
        event.event_id,
        event.resident_id,
        event.home_id,
        event.device_id,
        event.room,
        str(event.kind),
        num,
        text,
        event.ts,
        event.received_at,
        event.seq,
        late,
    )


def _field(row: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(row, Mapping):
            if name in row:
                return row[name]
        elif hasattr(row, name):
            return getattr(row, name)
    return default


def score_row(row: Any) -> tuple[Any, ...]:
    """One ``scores`` row from a ``streams.monitor.Score`` (``value``) or a mapping (``score`` or ``value``)."""
    features = _field(row, "features")
    return (
        _field(row, "resident_id"),
        _field(row, "detector"),
        str(_field(row, "detector_version", "version", default="")),
        _field(row, "ts"),
        float(_field(row, "score", "value")),
        _field(row, "threshold"),
        Jsonb(features) if features is not None else None,
    )


def _copy_rows(cur: psycopg.Cursor, table: str, cols: str, types: list[str], rows: Sequence[tuple[Any, ...]]) -> None:
    # Table and column names are this module's constants, never input.
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _prepare_session(conn: psycopg.Connection) -> None:
    for ddl in _STAGING_DDL:
        conn.execute(ddl)
    conn.commit()


def batch_days(rows: Sequence[tuple[Any, ...]]) -> set[date]:
    """The UTC days the rows' timestamps fall on (the partitions a batch needs)."""
    lo: datetime = min(rows, key=_OBS_TS)[_OBS_TS_INDEX]
    hi: datetime = max(rows, key=_OBS_TS)[_OBS_TS_INDEX]
    first, last = lo.astimezone(UTC).date(), hi.astimezone(UTC).date()
    if (last - first).days <= 3:  # the usual case: a live batch spans a day or two
        return {first + timedelta(days=i) for i in range((last - first).days + 1)}
    return {r[_OBS_TS_INDEX].astimezone(UTC).date() for r in rows}  # a backfill: only the days present


def _partitioned(conn: psycopg.Connection) -> bool:
    """Whether ``observations`` is partitioned by day (plain PostgreSQL after migration 0006)."""
    row = conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('observations')").fetchone()
    conn.commit()
    return bool(row and row[0])


class EventWriter:
    """Batched, idempotent writes of observations, scores and checkpoints through a connection pool.

    Thread-safe (one pooled connection per call). Close it, or use it as a context manager.
    """

    def __init__(
        self,
        dsn: str,
        pool_size: int = 4,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 5.0,
        name: str = "carechain-writer",
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"connect_timeout": max(1, int(connect_timeout_s)), "application_name": name},
            configure=_prepare_session,
            name=name,
            open=False,
        )
        # Do not wait for the first connection: the database may be away at start-up, and the
        # first write's retry loop is where that is handled.
        self._pool.open(wait=False)
        # Day partitions of observations known to exist (plain PostgreSQL, migration 0006);
        # None until the first write has looked whether the table is partitioned at all.
        self._partitioned: bool | None = None
        self._days: set[date] = set()
        self._days_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> EventWriter:
        """A writer on ``settings.database_url``."""
        return cls(settings.database_url)

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- retry ---------------------------------------------------------------------------

    def _with_retry(self, what: str, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` in one transaction on a pooled connection; retry transient failures until the deadline."""
        deadline = time.monotonic() + self.retry.deadline_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                with self._pool.connection(timeout=max(0.1, min(remaining, 10.0))) as conn:
                    return work(conn)  # the pool commits on a clean exit, rolls back otherwise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StorageUnavailable(
                        f"{what}: database unavailable for {self.retry.deadline_s:.1f} s "
                        f"({type(exc).__name__}: {str(exc).strip()[:200]})"
                    ) from exc
                pause = min(self.retry.delay(attempt), remaining)
                log.warning(
                    "%s: database unavailable (%s); retry %d in %.2f s", what, type(exc).__name__, attempt + 1, pause
                )
                attempt += 1
                time.sleep(pause)

    # --- observations --------------------------------------------------------------------

    def write_events(self, events: Sequence[Event], late_ids: set[str] | None = None) -> int:
        """Store a batch of events as observations; returns the number of rows newly inserted.

        Idempotent: events already stored (same ``resident_id``, ``ts``, ``event_id``) are skipped. An event is
        marked late when its id is in ``late_ids`` or the worker set ``extra["late"]``. Returns
        only when durable; raises :class:`StorageUnavailable` after the retry deadline.
        """
        if not events:
            return 0
        late = late_ids or set()
        rows = [observation_row(e, e.event_id in late or bool(e.extra.get("late"))) for e in events]
        # Grouped by resident (a stable sort keeps each resident's rows in arrival order, i.e. by time):
        # neighbouring rows land on the same pages of the (resident_id, ts, event_id) index.
        rows.sort(key=_OBS_RESIDENT)

        def work(conn: psycopg.Connection) -> int:
            self._ensure_partitions(conn, rows)
            with conn.cursor() as cur:
                # Fast path: a batch of new events goes straight in by COPY. If any of it is already
                # stored (a replay), the savepoint undoes the COPY and the staged path skips the known rows.
                def copy_new() -> bool:
                    try:
                        with conn.transaction():
                            _copy_rows(cur, "observations", _OBS_COLS, _OBS_TYPES, rows)
                        return True
                    except errors.UniqueViolation:
                        return False

                try:
                    if copy_new():
                        return len(rows)
                except errors.CheckViolation:
                    # "no partition of relation found for row": a partition we thought existed was
                    # dropped (retention); forget what we knew and make the batch's days again.
                    if not self._partitioned:
                        raise
                    with self._days_lock:
                        self._days.clear()
                    self._ensure_partitions(conn, rows)
                    if copy_new():
                        return len(rows)
                _copy_rows(cur, "cc_stage_observations", _OBS_COLS, _OBS_TYPES, rows)
                cur.execute(
                    f"INSERT INTO observations ({_OBS_COLS}) SELECT {_OBS_COLS} FROM cc_stage_observations"
                    " ON CONFLICT DO NOTHING"
                )
                return max(cur.rowcount, 0)

        return self._with_retry("write_events", work)

    def _ensure_partitions(self, conn: psycopg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Make the day partitions a batch needs, in their own short transaction (plain PostgreSQL)."""
        if self._partitioned is None:
            self._partitioned = _partitioned(conn)
        if not self._partitioned:
            return
        missing = batch_days(rows) - self._days
        if not missing:
            return
        conn.execute("SELECT cc_observation_partitions(%s::date[])", (sorted(missing),))
        conn.commit()  # ATTACH PARTITION's lock is released before the COPY
        with self._days_lock:
            self._days |= missing

    # --- scores --------------------------------------------------------------------------

    def write_scores(self, rows: Sequence[Any]) -> int:
        """Store detector scores (``streams.monitor.Score`` objects or mappings); idempotent per
        ``(resident_id, detector, ts)``. Returns the number of rows newly inserted."""
        if not rows:
            return 0
        prepared = [score_row(r) for r in rows]

        def work(conn: psycopg.Connection) -> int:
            with conn.cursor() as cur:
                _copy_rows(cur, "cc_stage_scores", _SCORE_COLS, _SCORE_TYPES, prepared)
                cur.execute(
                    f"INSERT INTO scores ({_SCORE_COLS}) SELECT {_SCORE_COLS} FROM cc_stage_scores"
                    " ON CONFLICT DO NOTHING"
                )
                return max(cur.rowcount, 0)

        return self._with_retry("write_scores", work)

    # --- model checkpoints ---------------------------------------------------------------

    def save_checkpoint(self, resident_id: str, detector: str, version: str, state: bytes) -> None:
        """Store (replace) one detector's state for a resident."""
        self.save_checkpoints([(resident_id, detector, version, state)])

    def save_checkpoints(self, items: Iterable[tuple[str, str, str, bytes]]) -> None:
        """Store (replace) many ``(resident_id, detector, version, state)`` in one transaction."""
        batch = list(items)
        if not batch:
            return

        def work(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO model_checkpoints (resident_id, detector, version, state, updated_at)"
                    " VALUES (%s, %s, %s, %s, now())"
                    " ON CONFLICT (resident_id, detector) DO UPDATE"
                    " SET version = EXCLUDED.version, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
                    [(r, d, v, bytes(s)) for r, d, v, s in batch],
                )

        self._with_retry("save_checkpoints", work)

    def load_checkpoints(
        self, resident_ids: Iterable[str] | None = None, detector: str | None = None
    ) -> list[Checkpoint]:
        """Checkpoints of the given residents (all when ``None``), optionally of one detector."""
        ids = list(resident_ids) if resident_ids is not None else None

        def work(conn: psycopg.Connection) -> list[Checkpoint]:
            rows = conn.execute(
                "SELECT resident_id, detector, version, state, updated_at FROM model_checkpoints"
                " WHERE (%s::text[] IS NULL OR resident_id = ANY(%s::text[]))"
                " AND (%s::text IS NULL OR detector = %s) ORDER BY resident_id, detector",
                (ids, ids, detector, detector),
            ).fetchall()
            return [Checkpoint(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

        return self._with_retry("load_checkpoints", work)


class BufferedWriter:
    """A bounded buffer in front of an :class:`EventWriter`: back-pressure instead of unbounded memory.

    ``submit`` accepts a whole batch or none of it (raising :class:`Backpressure`), so the caller
    knows exactly what to offer again; ``flush`` writes everything pending in batches of
    ``batch_size`` and drops events from the buffer only after their batch is durable. If the
    database stays away, ``flush`` raises :class:`StorageUnavailable` and keeps the events.
    """

    def __init__(self, writer: EventWriter, capacity: int = 50_000, batch_size: int = 5_000) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError("capacity and batch_size must be positive")
        self.writer = writer
        self.capacity = capacity
        self.batch_size = batch_size
        self._pending: deque[tuple[Event, bool]] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Events accepted but not yet durable."""
        return len(self._pending)

    @property
    def full(self) -> bool:
        """Whether no further event fits."""
        return len(self._pending) >= self.capacity

    @property
    def flush_due(self) -> bool:
        """Whether at least one full batch is waiting."""
        return len(self._pending) >= self.batch_size

    def submit(self, events: Sequence[Event], late_ids: set[str] | None = None) -> None:
        """Accept a batch for writing, or raise :class:`Backpressure` and accept none of it."""
        late = late_ids or set()
        with self._lock:
            if len(self._pending) + len(events) > self.capacity:
                raise Backpressure(len(self._pending), self.capacity, len(events))
            self._pending.extend((e, e.event_id in late) for e in events)

    def flush(self) -> int:
        """Write everything pending; returns rows newly inserted. Raises StorageUnavailable, keeping the rest."""
        inserted = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
                if not batch:
                    return inserted
                late_ids = {e.event_id for e, is_late in batch if is_late}
                inserted += self.writer.write_events([e for e, _ in batch], late_ids)
                with self._lock:
                    for _ in batch:
                        self._pending.popleft()
