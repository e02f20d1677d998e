"""PostgreSQL access of the alert service (the only psycopg module of the lifecycle; the core is pure).

Every function runs on the caller's connection and inside the caller's transaction, so an alert
change, its ``alert_events`` row (with ``pg_notify``), its deadlines and its outbox rows commit together.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.escalation import EscalationPolicy, EscalationStep
from alerts.lifecycle import AlertRecord, FlapState, Status
from alerts.rosters import DayType, Shift
from alerts.routing import Responsibility, RoutingRule
from alerts.silences import Scope, Silence

Conn = psycopg.Connection[Any]
NOTIFY_CHANNEL = "carechain_alert_events"

_RECORD_COLS = (
    "id, incident_key, incident_seq, group_id::text, resident_id, home_id, kind, family, severity, status,"
    " opened_at, resolved_at, last_candidate_at, condition_active, acknowledged_at, suppressed"
)


def _record(r: Sequence[Any]) -> AlertRecord:
    return AlertRecord(
        id=r[0],
        incident_key=r[1],
        incident_seq=r[2],
        group_id=r[3],
        resident_id=r[4],
        home_id=r[5],
        kind=r[6],
        family=r[7],
        severity=r[8],
        status=Status(r[9]),
        opened_at=r[10],
        resolved_at=r[11],
        last_candidate_at=r[12],
        condition_active=r[13],
        acknowledged_at=r[14],
        suppressed=r[15],
    )


def latest_by_key(conn: Conn, incident_key: str, lock: bool = True) -> AlertRecord | None:
    """The newest alert of an incident key, row-locked so concurrent candidates of a key serialise."""
    q = f"SELECT {_RECORD_COLS} FROM alerts WHERE incident_key = %s ORDER BY incident_seq DESC LIMIT 1"
    row = conn.execute((q + (" FOR UPDATE" if lock else "")).encode(), (incident_key,)).fetchone()
    return _record(row) if row else None


@dataclass(slots=True)
class Prefetch:
    """What applying one candidate reads, fetched in one round trip when the connection is in pipeline mode."""

    current: AlertRecord | None
    recent: list[AlertRecord]
    silences: list[Silence]
    flap: FlapState
    next_id: int  # an alert id reserved for a new alert (sequence gaps are harmless)


def prefetch(conn: Conn, incident_key: str, home_id: str | None, since: datetime, now: datetime,
             resident_id: str, kind: str) -> Prefetch:  # fmt: skip
    """The newest alert of the key (locked), the home's recent alerts, active silences and the flap state
    (locked). All queries are sent before any result is read, so a pipelined connection waits once."""
    q_cur = f"SELECT {_RECORD_COLS} FROM alerts WHERE incident_key = %s ORDER BY incident_seq DESC LIMIT 1 FOR UPDATE"
    c1 = conn.execute(q_cur.encode(), (incident_key,))
    c2 = conn.execute(_RECENT_Q.encode(), (home_id, since)) if home_id else None
    c3 = conn.execute(_SILENCES_Q.encode(), (now, now))
    c4 = conn.execute(_FLAP_Q.encode(), (resident_id, kind))
    c5 = conn.execute("SELECT nextval(pg_get_serial_sequence('alerts', 'id'))")
    row = c1.fetchone()
    recent = [_record(r) for r in c2.fetchall()] if c2 is not None else []
    silences = [Silence(r[0], Scope(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in c3.fetchall()]
    f = c4.fetchone()
    nxt = c5.fetchone()
    assert nxt is not None
    return Prefetch(
        _record(row) if row else None,
        recent,
        silences,
        FlapState(tuple(f[0]), bool(f[1])) if f else FlapState(),
        int(nxt[0]),
    )


_RECENT_Q = (
    f"SELECT {_RECORD_COLS} FROM alerts WHERE home_id = %s AND (opened_at >= %s OR"
    " status IN ('proposed', 'acknowledged', 'accepted')) AND NOT canary ORDER BY opened_at DESC LIMIT 50"
)
_SILENCES_Q = (
    "SELECT id, scope, target, reason, starts_at, expires_at, created_by FROM silences"
    " WHERE starts_at <= %s AND expires_at > %s"
)
_FLAP_Q = "SELECT changes, flapping FROM alert_flaps WHERE resident_id = %s AND kind = %s FOR UPDATE"


def recent_in_home(conn: Conn, home_id: str | None, since: datetime) -> list[AlertRecord]:
    """Alerts of a home opened since ``since`` or still open (grouping, inhibition)."""
    if not home_id:
        return []
    q = (
        f"SELECT {_RECORD_COLS} FROM alerts WHERE home_id = %s AND (opened_at >= %s OR"
        " status IN ('proposed', 'acknowledged', 'accepted')) AND NOT canary ORDER BY opened_at DESC LIMIT 50"
    )
    return [_record(r) for r in conn.execute(q.encode(), (home_id, since))]


def alert_row(conn: Conn, alert_id: int, lock: bool = False) -> dict[str, Any] | None:
    """The whole alert row as a dict (what the actions return)."""
    with conn.cursor(row_factory=dict_row) as cur:
        q = "SELECT * FROM alerts WHERE id = %s" + (" FOR UPDATE" if lock else "")
        return cur.execute(q.encode(), (alert_id,)).fetchone()


def insert_alert(conn: Conn, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Insert a new alert and return its row; None when the (incident key, seq) exists already (a concurrent
    duplicate)."""
    cols = list(fields)
    vals = [Jsonb(v) if isinstance(v, dict) else v for v in fields.values()]
    q = (
        f"INSERT INTO alerts ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
        " ON CONFLICT (incident_key, incident_seq) DO NOTHING RETURNING *"
    )
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q.encode(), vals).fetchone()


def insert_alert_blind(conn: Conn, fields: dict[str, Any]) -> None:
    """Insert a new alert whose id the caller chose; reads no answer (pipelined). A duplicate key raises."""
    cols = list(fields)
    vals = [Jsonb(v) if isinstance(v, dict) else v for v in fields.values()]
    conn.execute(f"INSERT INTO alerts ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})".encode(), vals)


def update_alert(conn: Conn, alert_id: int, fields: dict[str, Any], now: datetime) -> None:
    fields = {**fields, "updated_at": now}
    sets = ", ".join(f"{k} = %s" for k in fields)
    vals = [Jsonb(v) if isinstance(v, dict) else v for v in fields.values()]
    conn.execute(f"UPDATE alerts SET {sets} WHERE id = %s".encode(), [*vals, alert_id])


def lock_event_order(conn: Conn) -> None:
    """Take the alert history's ordering lock (migration 0260) as the first statement of a transaction that
    may add lifecycle steps: ids then become visible in id order, so the live stream's cursor never skips
    one. Taken before any alert row is locked, so it cannot deadlock with another writer."""
    conn.execute("SELECT cc_lock_alert_events()")


def add_event(
    conn: Conn,
    alert_id: int,
    type_: str,
    at: datetime,
    actor: str = "system",
    actor_org: str | None = None,
    actor_role: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """One lifecycle step, and its notification to the live stream, in the caller's transaction
    (one statement: the insert and the pg_notify travel together)."""
    row = conn.execute(
        "WITH e AS (INSERT INTO alert_events (alert_id, at, type, actor, actor_org, actor_role, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id)"
        " SELECT id, pg_notify(%s, id::text) FROM e",
        (alert_id, at, type_, actor, actor_org, actor_role, Jsonb(detail or {}), NOTIFY_CHANNEL),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_event_blind(
    conn: Conn, alert_id: int, type_: str, at: datetime, actor: str = "system", detail: dict[str, Any] | None = None
) -> None:
    """As :func:`add_event`, without reading the id back (no round trip of its own when pipelined)."""
    conn.execute(
        "WITH e AS (INSERT INTO alert_events (alert_id, at, type, actor, detail) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id) SELECT pg_notify(%s, id::text) FROM e",
        (alert_id, at, type_, actor, Jsonb(detail or {}), NOTIFY_CHANNEL),
    )


def schedule_deadline(conn: Conn, alert_id: int, step: int, due_at: datetime) -> None:
    conn.execute(
        "INSERT INTO escalation_deadlines (alert_id, step, due_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (alert_id, step) DO NOTHING",
        (alert_id, step, due_at),
    )


def clear_deadlines(conn: Conn, alert_id: int) -> None:
    """A reopened alert starts its escalation afresh."""
    conn.execute("DELETE FROM escalation_deadlines WHERE alert_id = %s", (alert_id,))


def enqueue(
    conn: Conn,
    alert_id: int | None,
    channel: str,
    target: str,
    payload: dict[str, Any],
    dedup_key: str,
    due_at: datetime,
) -> bool:
    """An outbox row; the unique dedup key makes a retried transaction add nothing. Reads no result, so
    it costs no round trip of its own on a pipelined connection."""
    conn.execute(
        "INSERT INTO notification_outbox (alert_id, channel, target, payload, dedup_key, created_at, due_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (dedup_key) DO NOTHING",
        (alert_id, channel, target, Jsonb(payload), dedup_key, due_at, due_at),
    )
    return True


@dataclass(frozen=True, slots=True)
class OutboxRow:
    alert_id: int | None
    channel: str
    target: str
    payload: dict[str, Any]
    dedup_key: str
    due_at: datetime


def enqueue_many(conn: Conn, rows: Sequence[OutboxRow]) -> None:
    """Several outbox rows in one statement (dedup keys make a retried transaction add nothing)."""
    if not rows:
        return
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for r in rows:
        params += [r.alert_id, r.channel, r.target, Jsonb(r.payload), r.dedup_key, r.due_at, r.due_at]
    conn.execute(
        (
            "INSERT INTO notification_outbox (alert_id, channel, target, payload, dedup_key, created_at, due_at)"
            f" VALUES {values} ON CONFLICT (dedup_key) DO NOTHING"
        ).encode(),
        params,
    )


@dataclass(slots=True)
class ScanWrites:
    """Everything one escalation scan writes, gathered so it goes out in five statements."""

    outbox: list[OutboxRow] = field(default_factory=list)
    done: list[tuple[int, int, str]] = field(default_factory=list)  # alert_id, step, outcome
    next: list[tuple[int, int, datetime]] = field(default_factory=list)  # alert_id, step, due_at
    tiers: list[tuple[int, int]] = field(default_factory=list)  # alert_id, tier
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # alert_id, type, detail


def write_scan(conn: Conn, w: ScanWrites, now: datetime) -> None:
    """The writes of one escalation scan, set-wise (unnest), in the caller's transaction. Parameters go in
    binary format: the text format would escape every quote of every JSON payload (slow)."""
    cur = conn.cursor()
    if w.outbox:
        cur.execute(
            "INSERT INTO notification_outbox (alert_id, channel, target, payload, dedup_key, created_at, due_at)"
            " SELECT a, c, t, p::jsonb, k, d, d FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::timestamptz[]) AS u(a, c, t, p, k, d) ON CONFLICT (dedup_key) DO NOTHING",
            (
                [r.alert_id for r in w.outbox],
                [r.channel for r in w.outbox],
                [r.target for r in w.outbox],
                [json.dumps(r.payload, default=str) for r in w.outbox],
                [r.dedup_key for r in w.outbox],
                [r.due_at for r in w.outbox],
            ),
        )
    if w.done:
        cur.execute(
            "UPDATE escalation_deadlines d SET done_at = %b, outcome = u.o"
            " FROM unnest(%b::bigint[], %b::int[], %b::text[]) AS u(a, s, o) WHERE d.alert_id = u.a AND d.step = u.s",
            (now, [x[0] for x in w.done], [x[1] for x in w.done], [x[2] for x in w.done]),
        )
    if w.next:
        cur.execute(
            "INSERT INTO escalation_deadlines (alert_id, step, due_at)"
            " SELECT * FROM unnest(%b::bigint[], %b::int[], %b::timestamptz[]) ON CONFLICT (alert_id, step) DO NOTHING",
            ([x[0] for x in w.next], [x[1] for x in w.next], [x[2] for x in w.next]),
        )
    if w.tiers:
        # Two overdue steps of one alert in one scan: the higher tier wins (an UPDATE ... FROM would pick one).
        top: dict[int, int] = {}
        for a, t in w.tiers:
            top[a] = max(t, top.get(a, 0))
        w.tiers = sorted(top.items())
        cur.execute(
            "UPDATE alerts a SET tier = u.t, updated_at = %b FROM unnest(%b::bigint[], %b::int[]) AS u(i, t)"
            " WHERE a.id = u.i AND a.tier <> u.t",
            (now, [x[0] for x in w.tiers], [x[1] for x in w.tiers]),
        )
    if w.events:
        cur.execute(
            "WITH e AS (INSERT INTO alert_events (alert_id, at, type, actor, detail)"
            " SELECT a, %b, t, 'system', d::jsonb FROM unnest(%b::bigint[], %b::text[], %b::text[])"
            " WITH ORDINALITY AS u(a, t, d, n) ORDER BY n RETURNING id)"
            " SELECT count(pg_notify(%b, id::text)) FROM (SELECT id FROM e ORDER BY id) ids",
            (
                now,
                [x[0] for x in w.events],
                [x[1] for x in w.events],
                [json.dumps(x[2], default=str) for x in w.events],
                NOTIFY_CHANNEL,
            ),
        )


def advance_deadline(
    conn: Conn,
    alert_id: int,
    step: int,
    now: datetime,
    outcome: str,
    next_step: int | None,
    next_due: datetime | None,
    tier: int,
    event_type: str,
    detail: dict[str, Any],
) -> None:
    """One statement: the deadline done, the next one scheduled, the alert's tier, the lifecycle event and
    its notification to the live stream."""
    conn.execute(
        "WITH done AS (UPDATE escalation_deadlines SET done_at = %(now)s, outcome = %(outcome)s"
        "  WHERE alert_id = %(a)s AND step = %(step)s),"
        " nxt AS (INSERT INTO escalation_deadlines (alert_id, step, due_at)"
        "  SELECT %(a)s, %(nstep)s::int, %(ndue)s::timestamptz WHERE %(nstep)s::int IS NOT NULL"
        "  ON CONFLICT (alert_id, step) DO NOTHING),"
        " up AS (UPDATE alerts SET tier = %(tier)s, updated_at = %(now)s WHERE id = %(a)s AND tier <> %(tier)s),"
        " ev AS (INSERT INTO alert_events (alert_id, at, type, actor, detail)"
        "  VALUES (%(a)s, %(now)s, %(type)s, 'system', %(detail)s) RETURNING id)"
        " SELECT pg_notify(%(channel)s, id::text) FROM ev",
        {
            "now": now,
            "outcome": outcome,
            "a": alert_id,
            "step": step,
            "nstep": next_step,
            "ndue": next_due,
            "tier": tier,
            "type": event_type,
            "detail": Jsonb(detail),
            "channel": NOTIFY_CHANNEL,
        },
    )


def responsibility(conn: Conn, resident_id: str) -> Responsibility:
    row = conn.execute(
        "SELECT kommun_org_id, region_org_id FROM residents WHERE resident_id = %s", (resident_id,)
    ).fetchone()
    return Responsibility(row[0], row[1]) if row else Responsibility(None, None)


def routing_rules(conn: Conn) -> list[RoutingRule]:
    return [
        RoutingRule(*r)
        for r in conn.execute("SELECT org_id, kind, min_severity, tier, org_kind, role FROM routing_rules")
    ]


def escalation_policies(conn: Conn) -> list[tuple[str | None, EscalationPolicy]]:
    steps: dict[int, list[EscalationStep]] = {}
    for pid, step, after, tier in conn.execute(
        "SELECT policy_id, step, after_minutes, tier FROM escalation_steps ORDER BY policy_id, step"
    ):
        steps.setdefault(pid, []).append(EscalationStep(step, timedelta(minutes=after), tier))
    out = []
    for pid, org, sev, rep, retr in conn.execute(
        "SELECT id, org_id, severity, repeat_minutes, retrigger_minutes FROM escalation_policies"
    ):
        out.append(
            (
                org,
                EscalationPolicy(
                    sev,
                    tuple(steps.get(pid, [])),
                    timedelta(minutes=rep) if rep else None,
                    timedelta(minutes=retr) if retr else None,
                ),
            )
        )
    return out


def active_silences(conn: Conn, now: datetime) -> list[Silence]:
    return [
        Silence(r[0], Scope(r[1]), r[2], r[3], r[4], r[5], r[6])
        for r in conn.execute(
            "SELECT id, scope, target, reason, starts_at, expires_at, created_by FROM silences"
            " WHERE starts_at <= %s AND expires_at > %s",
            (now, now),
        )
    ]


def add_silence(
    conn: Conn, scope: str, target: str, reason: str, expires_at: datetime, created_by: str, starts_at: datetime
) -> int:
    """Record a silence (validated by the pure Silence first: reason and expiry are required)."""
    Silence(0, Scope(scope), target, reason, starts_at, expires_at, created_by)
    row = conn.execute(
        "INSERT INTO silences (scope, target, reason, starts_at, expires_at, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (scope, target, reason, starts_at, expires_at, created_by),
    ).fetchone()
    assert row is not None
    return int(row[0])


def gateways_of_home(conn: Conn, home_id: str | None) -> list[str]:
    if not home_id:
        return []
    return [r[0] for r in conn.execute("SELECT gateway_id FROM gateways WHERE home_id = %s", (home_id,))]


def flap_state(conn: Conn, resident_id: str, kind: str) -> FlapState:
    row = conn.execute(
        "SELECT changes, flapping FROM alert_flaps WHERE resident_id = %s AND kind = %s FOR UPDATE",
        (resident_id, kind),
    ).fetchone()
    return FlapState(tuple(row[0]), bool(row[1])) if row else FlapState()


def save_flap_state(conn: Conn, resident_id: str, kind: str, state: FlapState, now: datetime) -> None:
    conn.execute(
        "INSERT INTO alert_flaps (resident_id, kind, changes, flapping, updated_at) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (resident_id, kind) DO UPDATE SET changes = EXCLUDED.changes, flapping = EXCLUDED.flapping,"
        " updated_at = EXCLUDED.updated_at",
        (resident_id, kind, list(state.changes), state.flapping, now),
    )


def webhook_endpoints(conn: Conn, org_id: str) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM webhook_endpoints WHERE org_id = %s AND active", (org_id,))]


def team_shifts(conn: Conn, org_id: str, role: str) -> tuple[list[Shift], list[str], str]:
    """Shifts of the organisation's teams for a role, their fallback e-mails, and the teams' time zone."""
    shifts = [
        Shift(r[0], r[1], r[2], DayType(r[3]), r[4], r[5], r[6])
        for r in conn.execute(
            "SELECT s.team_id, s.user_id, s.email, s.day_type, s.starts, s.ends, s.priority"
            " FROM roster_shifts s JOIN teams t ON t.team_id = s.team_id WHERE t.org_id = %s AND t.role = %s",
            (org_id, role),
        )
    ]
    teams = conn.execute(
        "SELECT email, timezone FROM teams WHERE org_id = %s AND role = %s ORDER BY team_id", (org_id, role)
    ).fetchall()
    tz = teams[0][1] if teams else "Europe/Stockholm"
    return shifts, [t[0] for t in teams if t[0]], tz


def record_canary(conn: Conn, resident_id: str, event_time: datetime, arrived_at: datetime) -> float:
    rtt_ms = (arrived_at - event_time).total_seconds() * 1000.0
    conn.execute(
        "INSERT INTO canary_heartbeats (resident_id, event_time, arrived_at, rtt_ms) VALUES (%s, %s, %s, %s)",
        (resident_id, event_time, arrived_at, rtt_ms),
    )
    return rtt_ms


def last_canary(conn: Conn) -> tuple[datetime, float] | None:
    row = conn.execute("SELECT arrived_at, rtt_ms FROM canary_heartbeats ORDER BY arrived_at DESC LIMIT 1").fetchone()
    return (row[0], float(row[1])) if row else None


# --- escalation scan -------------------------------------------------------------------------------------


def due_deadlines(conn: Conn, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Due, undone deadlines with their alerts, locked; rows another instance holds are skipped."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT d.alert_id, d.step, d.due_at AS deadline_due_at, a.*"
            " FROM escalation_deadlines d JOIN alerts a ON a.id = d.alert_id"
            " WHERE d.done_at IS NULL AND d.due_at <= %s ORDER BY d.due_at LIMIT %s"
            " FOR UPDATE OF d, a SKIP LOCKED",
            (now, limit),
        ).fetchall()


def mark_deadline(conn: Conn, alert_id: int, step: int, now: datetime, outcome: str) -> None:
    conn.execute(
        "UPDATE escalation_deadlines SET done_at = %s, outcome = %s WHERE alert_id = %s AND step = %s",
        (now, outcome, alert_id, step),
    )


# --- outbox ----------------------------------------------------------------------------------------------


def claim_one(conn: Conn, now: datetime) -> dict[str, Any] | None:
    """The next due, unsent row, locked for the caller's transaction (SKIP LOCKED: another dispatcher takes
    another row). The lock lasts while the caller sends and marks, so two instances never send one row."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM notification_outbox WHERE sent_at IS NULL AND dead_at IS NULL AND due_at <= %s"
            " ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            (now,),
        ).fetchone()


def defer(conn: Conn, outbox_id: int, until: datetime) -> None:
    """Not attempted now (its endpoint is backing off): due again later."""
    conn.execute("UPDATE notification_outbox SET due_at = %s WHERE id = %s", (until, outbox_id))


def finish_attempt(
    conn: Conn,
    outbox_id: int,
    now: datetime,
    ok: bool,
    status: int | None,
    detail: str | None,
    retry_at: datetime | None,
    dead: bool,
) -> None:
    """Record one delivery attempt; mark sent, reschedule or give up, in one transaction."""
    conn.execute(
        "INSERT INTO notification_attempts (outbox_id, at, ok, status, detail) VALUES (%s, %s, %s, %s, %s)",
        (outbox_id, now, ok, status, (detail or "")[:2000]),
    )
    if ok:
        conn.execute(
            "UPDATE notification_outbox SET sent_at = %s, attempts = attempts + 1, last_error = NULL WHERE id = %s",
            (now, outbox_id),
        )
    else:
        conn.execute(
            "UPDATE notification_outbox SET last_error = %s, attempts = attempts + 1, due_at = coalesce(%s, due_at),"
            " dead_at = CASE WHEN %s THEN %s ELSE NULL END WHERE id = %s",
            ((detail or "")[:2000], retry_at, dead, now, outbox_id),
        )


def endpoint(conn: Conn, endpoint_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM webhook_endpoints WHERE id = %s", (endpoint_id,)).fetchone()


def endpoint_result(conn: Conn, endpoint_id: int, ok: bool, next_try_at: datetime | None) -> None:
    """Per-endpoint backoff: consecutive failures push the endpoint's next try out."""
    if ok:
        conn.execute("UPDATE webhook_endpoints SET failures = 0, next_try_at = NULL WHERE id = %s", (endpoint_id,))
    else:
        conn.execute(
            "UPDATE webhook_endpoints SET failures = failures + 1, next_try_at = %s WHERE id = %s",
            (next_try_at, endpoint_id),
        )


def new_group_id() -> str:
    return str(uuid.uuid4())
