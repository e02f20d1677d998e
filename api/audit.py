"""The audit log: every read and write of resident data, append-only and hash-chained.

Each row's ``hash = sha256(prev_hash || canonical JSON of the row)``, where
``prev_hash`` is the hash of the previous row of its chain. There are several
chains (migration 0360): an append takes a chain no other transaction is
appending to, so concurrent appenders (API processes, requests) never wait for
each other's commit; each chain stays linear under its row lock in
``audit_chains``, which also records its head. The database refuses
UPDATE/DELETE (trigger in migration 0300); the chains make any edit, removal or
reordering made around the trigger visible to ``carechain audit verify``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from api.access import Outcome, Purpose, UserContext

if TYPE_CHECKING:
    import psycopg

#: The request id of the HTTP request being served (set by the API middleware).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("carechain_request_id", default=None)
GENESIS = "0" * 64
#: pg_advisory_xact_lock key of the single chain before migration 0360 (chain 0; appends no longer take it).
CHAIN_LOCK = 0x0CA2EC4A1A
LOCAL_TZ = ZoneInfo("Europe/Stockholm")  # Swedish law: local time in the log, beside UTC

COLUMNS = (
    "id",
    "at",
    "at_local",
    "user_id",
    "org_id",
    "unit",
    "role",
    "client",
    "on_behalf_of",
    "action",
    "resource",
    "resident_id",
    "purpose",
    "outcome",
    "basis",
    "emergency",
    "request_id",
    "prev_hash",
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One access to log, before it has a place in the chain."""

    action: str
    resource: str
    outcome: str
    purpose: str
    user_id: str | None = None
    org_id: str | None = None
    unit: str | None = None
    role: str | None = None
    client: str | None = None
    on_behalf_of: str | None = None
    resident_id: str | None = None
    basis: str | None = None
    emergency: bool = False
    request_id: str | None = None


def entry(
    ctx: UserContext | None,
    *,
    action: str,
    resource: str,
    outcome: Outcome | str,
    purpose: Purpose | str = Purpose.TREATMENT,
    resident_id: str | None = None,
    basis: str | None = None,
    emergency: bool = False,
    request_id: str | None = None,
) -> AuditEntry:
    """Build an entry from the caller's context (``request_id`` defaults to the current request's)."""
    return AuditEntry(
        action=action,
        resource=resource,
        outcome=str(outcome),
        purpose=str(purpose),
        user_id=ctx.user_id if ctx else None,
        org_id=ctx.org_id if ctx else None,
        unit=ctx.unit if ctx else None,
        role=str(ctx.role) if ctx else None,
        client=ctx.client if ctx else None,
        on_behalf_of=ctx.on_behalf_of if ctx else None,
        resident_id=resident_id,
        basis=basis,
        emergency=emergency,
        request_id=request_id if request_id is not None else REQUEST_ID.get(),
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def body(row: dict[str, Any]) -> str:
    """Canonical JSON of a row's content: every column but id, prev_hash and hash; sorted keys, no spaces."""
    doc = {k: row[k] for k in COLUMNS if k not in ("id", "prev_hash")}
    doc["at"] = _iso(row["at"]) if isinstance(row["at"], datetime) else row["at"]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row: dict[str, Any]) -> str:
    """The canonical JSON of a row (every column but ``hash``): id and prev_hash first, then sorted keys."""
    return f'{{"id":{int(row["id"])},"prev_hash":"{row["prev_hash"]}",' + body(row)[1:]


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """sha256(prev_hash || canonical JSON of the row), hex."""
    return hashlib.sha256((prev_hash + canonical(row)).encode()).hexdigest()


def chain(prev_hash: str, ids: Sequence[int], at: datetime, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Give entries their ids, times and hashes, continuing the chain after ``prev_hash`` (as the database does)."""
    rows = []
    for id_, e in zip(ids, entries, strict=True):
        row = {"id": id_, **_content(e, at), "prev_hash": prev_hash}
        row["hash"] = chain_hash(prev_hash, row)
        prev_hash = row["hash"]
        rows.append(row)
    return rows


_ENTRY_FIELDS = tuple(f.name for f in fields(AuditEntry))


def _content(e: AuditEntry, at: datetime, at_local: str | None = None) -> dict[str, Any]:
    # A shallow copy (the fields are all plain values): dataclasses.asdict deep-copies, ten times slower.
    local = at_local if at_local is not None else at.astimezone(LOCAL_TZ).isoformat(timespec="seconds")
    return {"at": at, "at_local": local, **{f: getattr(e, f) for f in _ENTRY_FIELDS}}


_APPEND = "SELECT id FROM audit_append(%b::text[]) AS id"  # binary: no per-character array escaping


def append_many(conn: psycopg.Connection[Any], entries: Sequence[AuditEntry]) -> list[int]:
    """Append entries in one statement, the SQL function ``audit_append`` (migration 0360; same hashes as
    :func:`chain`); returns their ids, in chain order.

    The rows go to the first chain no other transaction is appending to (a new chain when every one is busy), so
    concurrent appenders never wait for each other's commit: the chain's row lock is held only by this statement
    on an autocommit connection (durable when this returns), or until the caller's transaction ends inside one
    (a write and its audit rows then commit together).
    """
    if not entries:
        return []
    at = datetime.now(UTC)
    local = at.astimezone(LOCAL_TZ).isoformat(timespec="seconds")
    bodies = [body({"id": 0, **_content(e, at, local), "prev_hash": ""}) for e in entries]
    return [int(r[0]) for r in conn.execute(_APPEND, (bodies,)).fetchall()]


def record_many(conn: psycopg.Connection[Any], entries: Sequence[AuditEntry]) -> list[int]:
    """Append entries to a chain in the caller's transaction (outside one, as a short transaction of their own,
    committed when this returns); returns their ids. :func:`append_many`, committed on a connection that is
    neither in autocommit mode nor in a transaction."""
    from psycopg.pq import TransactionStatus

    if conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        return append_many(conn, entries)
    with conn.transaction():
        return append_many(conn, entries)


def record(
    conn: psycopg.Connection[Any],
    ctx: UserContext | None,
    *,
    action: str,
    resource: str,
    outcome: Outcome | str,
    purpose: Purpose | str = Purpose.TREATMENT,
    resident_id: str | None = None,
    basis: str | None = None,
    emergency: bool = False,
    request_id: str | None = None,
) -> int:
    """Log one access of ``ctx`` (allowed or denied); returns the audit row id.

    Call it inside the transaction of a write so both commit together; for a
    read, call it before the data leave the API.
    """
    e = entry(
        ctx,
        action=action,
        resource=resource,
        outcome=outcome,
        purpose=purpose,
        resident_id=resident_id,
        basis=basis,
        emergency=emergency,
        request_id=request_id,
    )
    return record_many(conn, [e])[0]


class AuditWriter:
    """Group commit for the audit chain: entries of concurrent requests go into one append.

    Every append waits for a WAL flush (the row must be durable before the data leave the API); one writer
    thread appending whatever has queued while the previous flush ran turns N flushes into one, in one statement
    (:func:`append_many`). Callers block (or await) until their rows are durable. For many rows at once (the
    live stream's deliveries); a request appending its own few rows on the connection it already holds
    (:func:`append_many`) saves the hand-over to this thread and back.
    """

    def __init__(self, database_url: str, max_batch: int = 5000) -> None:
        # Its own connection, not one from the request pool: requests hold pooled connections while they wait
        # for their rows, so a writer drawing from the same pool could starve.
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self.max_batch = max_batch
        self._pending: list[tuple[Sequence[AuditEntry], Future[list[int]]]] = []
        self._cv = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            import psycopg

            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def submit(self, entries: Sequence[AuditEntry]) -> Future[list[int]]:
        fut: Future[list[int]] = Future()
        if not entries:
            fut.set_result([])
            return fut
        with self._cv:
            if self._stopped:
                fut.set_exception(RuntimeError("audit writer stopped"))
                return fut
            self._pending.append((entries, fut))
            self._cv.notify()
        return fut

    def write(self, entries: Sequence[AuditEntry], timeout: float = 30.0) -> list[int]:
        """Append and wait until durable; returns the row ids."""
        return self.submit(entries).result(timeout)

    def _take(self) -> list[tuple[Sequence[AuditEntry], Future[list[int]]]]:
        with self._cv:
            while not self._pending and not self._stopped:
                self._cv.wait()
            batch: list[tuple[Sequence[AuditEntry], Future[list[int]]]] = []
            n = 0
            while self._pending and (not batch or n + len(self._pending[0][0]) <= self.max_batch):
                item = self._pending.pop(0)
                batch.append(item)
                n += len(item[0])
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return  # stopped and drained
            flat = [e for entries, _ in batch for e in entries]
            try:
                ids = append_many(self._connection(), flat)
            except Exception as e:  # every waiting request fails with it: no data leave without their row
                self._close()
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            self.batches += 1
            self.rows += len(ids)
            i = 0
            for entries, fut in batch:
                fut.set_result(ids[i : i + len(entries)])
                i += len(entries)


@dataclass(frozen=True, slots=True)
class Break:
    """The first row where the chain does not hold."""

    id: int
    problem: str


@dataclass(frozen=True, slots=True)
class Head:
    """A chain as ``audit_chains`` records it: the newest row appended through ``audit_append``."""

    chain: int
    head_id: int | None
    head_hash: str


def verify_rows(
    rows: Iterable[dict[str, Any]], cuts: Mapping[str, int] | None = None, heads: Sequence[Head] | None = None
) -> tuple[int, Break | None]:
    """Walk rows in id order, each chain on its own (a row's ``chain``, 0 when absent); returns (rows checked,
    first break or None).

    Each chain starts at the genesis hash, or, once retention removed its oldest rows, at its first remaining
    row: its ``prev_hash`` must then be the hash of a row that ``carechain db prune`` recorded removing
    (``cuts``: hash -> id, from ``audit_log_pruned``), with a lower id. With ``heads`` (``audit_chains``),
    every row must belong to a registered chain and every chain's recorded head must still be there (or be a
    recorded cut): removing a chain's newest rows, or all of its rows, is a break too.
    """
    prev: dict[int, str] = {}
    seen: dict[int, dict[str, int]] = {}  # chain -> {hash: id} of its recorded head, when met
    registered = {h.chain: h for h in heads} if heads is not None else None
    n = 0
    for row in rows:
        n += 1
        c = int(row.get("chain") or 0)
        p = prev.get(c)
        if p is None:
            if registered is not None and c not in registered:
                return n, Break(row["id"], f"the row belongs to chain {c}, which is not registered")
            p = GENESIS
            if row["prev_hash"] != GENESIS:
                if cuts is None or cuts.get(row["prev_hash"], row["id"]) >= row["id"]:
                    return n, Break(row["id"], "the chain starts after rows that no recorded retention removed")
                p = row["prev_hash"]
        if row["prev_hash"] != p:
            return n, Break(row["id"], "prev_hash does not match the previous row's hash (row removed or reordered)")
        if chain_hash(p, row) != row["hash"]:
            return n, Break(row["id"], "hash does not match the row's content (row edited)")
        prev[c] = row["hash"]
        if registered is not None and row["hash"] == registered[c].head_hash:
            seen[c] = {row["hash"]: row["id"]}
    for h in registered.values() if registered is not None else ():
        if h.head_hash == GENESIS or h.chain in seen or (cuts is not None and h.head_hash in cuts):
            continue
        return n, Break(
            h.head_id or 0, f"the newest row of chain {h.chain} is missing (rows at the end of the chain removed)"
        )
    return n, None


def _has_chains(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('audit_chains')").fetchone()
    return bool(row and row[0] is not None)


def iter_log(conn: psycopg.Connection[Any], batch: int = 5000) -> Iterator[dict[str, Any]]:
    """All rows in id order, streamed with a server-side cursor (in the caller's transaction, if any)."""
    from psycopg.rows import dict_row

    cols = ", ".join((*COLUMNS, "hash", "chain") if _has_chains(conn) else (*COLUMNS, "hash"))
    with conn.transaction(), conn.cursor(name="audit_verify", row_factory=dict_row) as cur:
        cur.itersize = batch
        cur.execute(f"SELECT {cols} FROM audit_log ORDER BY id")
        yield from cur


def retention_cuts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Where retention cut the chain (``audit_log_pruned``, migration 0350): last removed row's hash -> id."""
    row = conn.execute("SELECT to_regclass('audit_log_pruned')").fetchone()
    if not row or row[0] is None:
        return {}
    return {str(h): int(i) for h, i in conn.execute("SELECT through_hash, through_id FROM audit_log_pruned")}


def chain_heads(conn: psycopg.Connection[Any]) -> list[Head] | None:
    """Every chain with its recorded head (``audit_chains``, migration 0360); None before that migration."""
    if not _has_chains(conn):
        return None
    return [Head(int(c), h, str(hh)) for c, h, hh in conn.execute("SELECT id, head_id, head_hash FROM audit_chains")]


def verify(conn: psycopg.Connection[Any]) -> tuple[int, Break | None]:
    """Verify every chain in the database, from its first remaining row (rows past retention may be gone).

    The heads, the cuts and the rows are read in one repeatable-read snapshot (appends may go on meanwhile).
    """
    from psycopg import IsolationLevel
    from psycopg.pq import TransactionStatus

    if conn.info.transaction_status != TransactionStatus.IDLE:  # inside the caller's transaction: its snapshot
        return verify_rows(iter_log(conn), retention_cuts(conn), chain_heads(conn))
    level = conn.isolation_level
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            return verify_rows(iter_log(conn), retention_cuts(conn), chain_heads(conn))
    finally:
        conn.isolation_level = level
