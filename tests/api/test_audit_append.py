"""The audit writer appends a group of entries in one statement (``audit_append``); the rows and the chain are
the same as the Python append's, and verify holds across both."""

from __future__ import annotations

import psycopg

from api import audit
from api.access import OrgKind, Role, UserContext

CTX = UserContext("u-append", "kommun-a", OrgKind.MUNICIPALITY, "hc", Role.NURSE)


def test_append_many_continues_the_chain(api_db: str) -> None:
    with psycopg.connect(api_db, autocommit=True) as conn:
        entries = [
            audit.entry(CTX, action="GET /t", resource="t", outcome="allowed", resident_id=f"r-{i}", basis="relation:1")
            for i in range(3)
        ]
        ids = audit.append_many(conn, entries)
        more = audit.record_many(conn, entries[:1])  # the Python append continues the SQL one's chain
        ids += audit.append_many(conn, [audit.entry(None, action="x", resource="y", outcome="denied", emergency=True)])
        assert ids[:3] == sorted(ids[:3]) and more[0] > ids[2] and ids[3] > more[0]
        rows = conn.execute(
            "SELECT resident_id, basis, outcome, emergency FROM audit_log WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
        assert rows == [
            ("r-0", "relation:1", "allowed", False),
            ("r-1", "relation:1", "allowed", False),
            ("r-2", "relation:1", "allowed", False),
            (None, None, "denied", True),
        ]
        n, broken = audit.verify(conn)
        assert broken is None and n >= 5
