"""Alert history ids become visible in id order (migration 0260), so the live stream's cursor never skips.

Real PostgreSQL: two writers race; the one that took its id later commits later, whichever way it wrote.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from alerts import service, store
from tests.alerts.conftest import T0, candidate


def _raw_insert(dsn: str, alert_id: int, out: list[int], started: threading.Event) -> None:
    """A writer that does not take the lock itself (the trigger's backstop must order it)."""
    with psycopg.connect(dsn, autocommit=True) as c, c.transaction():
        started.set()
        row = c.execute(
            "INSERT INTO alert_events (alert_id, at, type) VALUES (%s, now(), 'comment') RETURNING id", (alert_id,)
        ).fetchone()
        assert row is not None
        out.append(int(row[0]))


def test_a_later_id_never_commits_first(alerts_dsn: str, conn: psycopg.Connection[Any]) -> None:
    svc = service.AlertService(conn)
    res = svc.handle(candidate(resident="res-0003", home="home-0003", key="order-1"), T0)
    assert res.alert_id is not None
    with psycopg.connect(alerts_dsn, autocommit=True) as first, first.transaction():
        store.lock_event_order(first)
        mine = store.add_event(first, res.alert_id, "comment", T0, detail={"n": 1})
        out: list[int] = []
        started = threading.Event()
        t = threading.Thread(target=_raw_insert, args=(alerts_dsn, res.alert_id, out, started))
        t.start()
        assert started.wait(5)
        t.join(0.5)
        assert t.is_alive() and not out, "the second writer must wait for the first one's commit"
    t.join(5)
    assert out and out[0] > mine, (mine, out)
    with psycopg.connect(alerts_dsn, autocommit=True) as c:
        ids = [r[0] for r in c.execute("SELECT id FROM alert_events WHERE alert_id = %s ORDER BY id", (res.alert_id,))]
    assert ids[-2:] == [mine, out[0]]


def test_a_locked_writer_keeps_its_ids(conn: psycopg.Connection[Any]) -> None:
    """Writers that take the lock first (the alert service, the API's actions) keep the ids they drew."""
    svc = service.AlertService(conn)
    res = svc.handle(candidate(resident="res-0004", home="home-0004", key="order-2"), T0)
    assert res.alert_id is not None
    with conn.transaction():
        store.lock_event_order(conn)
        a = store.add_event(conn, res.alert_id, "comment", T0)
        b = store.add_event(conn, res.alert_id, "comment", T0)
    assert b == a + 1
