"""Response statistics for coordinators, an alert history per resident, an organisation's open alerts.

Query functions on a psycopg connection (the API calls them). Times are seconds from the alert's
opening to its acknowledgement and to its resolution; p50 and p90 per responsible organisation, kind
and severity. Canary alerts never count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

_STATS = """
SELECT responsible_org_id AS org_id, kind, severity,
       count(*)::int AS alerts,
       count(acknowledged_at)::int AS acknowledged,
       count(resolved_at)::int AS resolved,
       count(*) FILTER (WHERE status = 'dismissed')::int AS dismissed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - opened_at)) AS ack_p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - opened_at)) AS ack_p90_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM resolved_at - opened_at)) AS resolve_p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM resolved_at - opened_at)) AS resolve_p90_s
  FROM alerts
 WHERE NOT canary AND NOT suppressed
   AND (%(org)s::text IS NULL OR responsible_org_id = %(org)s)
   AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
 GROUP BY responsible_org_id, kind, severity
 ORDER BY responsible_org_id, kind, severity
"""


def response_stats(
    conn: psycopg.Connection[Any], org_id: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Time to acknowledge and to resolve (p50/p90 seconds, counts) per organisation, kind and severity."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_STATS, {"org": org_id, "since": since}).fetchall()
    for r in rows:
        for k in ("ack_p50_s", "ack_p90_s", "resolve_p50_s", "resolve_p90_s"):
            if r[k] is not None:
                r[k] = round(float(r[k]), 1)
    return rows


def alert_history(
    conn: psycopg.Connection[Any],
    resident_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    with_events: bool = True,
) -> list[dict[str, Any]]:
    """A resident's alerts, newest first, each with its lifecycle events."""
    with conn.cursor(row_factory=dict_row) as cur:
        alerts = cur.execute(
            "SELECT * FROM alerts WHERE resident_id = %s AND (%s::timestamptz IS NULL OR created_at >= %s)"
            " AND (%s::timestamptz IS NULL OR created_at < %s) ORDER BY created_at DESC, id DESC LIMIT %s",
            (resident_id, since, since, until, until, limit),
        ).fetchall()
        if with_events and alerts:
            events: dict[int, list[dict[str, Any]]] = {}
            for e in cur.execute(
                "SELECT * FROM alert_events WHERE alert_id = ANY(%s) ORDER BY id", ([a["id"] for a in alerts],)
            ):
                events.setdefault(e["alert_id"], []).append(e)
            for a in alerts:
                a["events"] = events.get(a["id"], [])
    return alerts


def open_alerts(
    conn: psycopg.Connection[Any], org_id: str, severity: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """An organisation's open alerts, newest first (served by the partial index ``alerts_open_org``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM alerts WHERE responsible_org_id = %s AND status IN ('proposed', 'acknowledged', 'accepted')"
            " AND (%s::text IS NULL OR severity = %s) ORDER BY created_at DESC, id DESC LIMIT %s",
            (org_id, severity, severity, limit),
        ).fetchall()
