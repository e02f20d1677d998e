"""Several hash chains (migration 0360): concurrent appenders each take a free chain instead of waiting for one
lock, and `carechain audit verify` walks every chain and still detects an edited, removed or moved row, a chain's
newest rows removed, a whole chain removed, and (after `carechain db prune`) tells retention cuts per chain from
deletions."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from api import audit
from api.access import OrgKind, Role, UserContext
from api.audit_cli import run as verify_cli
from carechain.settings import Settings
from tests.conftest import private_database

CTX = UserContext("u-chains", "kommun-a", OrgKind.MUNICIPALITY, "hc", Role.NURSE)


def _entries(n: int, resident: str = "r-c") -> list[audit.AuditEntry]:
    return [audit.entry(CTX, action="GET /t", resource="t", outcome="allowed", resident_id=resident)] * n


def test_verify_rows_per_chain_and_heads() -> None:
    at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    a = audit.chain(audit.GENESIS, [1, 3, 5], at, _entries(3, "r-a"))
    b = audit.chain(audit.GENESIS, [2, 4], at, _entries(2, "r-b"))
    for r in a:
        r["chain"] = 1
    for r in b:
        r["chain"] = 2
    rows = sorted(a + b, key=lambda r: r["id"])
    heads = [audit.Head(0, None, audit.GENESIS), audit.Head(1, 5, a[-1]["hash"]), audit.Head(2, 4, b[-1]["hash"])]
    assert audit.verify_rows(rows, {}, heads) == (5, None)
    # A middle row of chain 1 removed: the next row of that chain no longer links.
    gone = [r for r in rows if r["id"] != 3]
    assert audit.verify_rows(gone, {}, heads)[1] == audit.Break(
        5, "prev_hash does not match the previous row's hash (row removed or reordered)"
    )
    # The newest row of chain 2 removed: its recorded head is missing.
    broken = audit.verify_rows([r for r in rows if r["id"] != 4], {}, heads)[1]
    assert broken is not None and broken.id == 4 and "chain 2" in broken.problem
    # Every row of chain 2 removed.
    broken = audit.verify_rows([r for r in rows if r["chain"] != 2], {}, heads)[1]
    assert broken is not None and broken.id == 4 and "missing" in broken.problem
    # A row moved to a chain nobody registered.
    moved = [{**r, "chain": 9} if r["id"] == 5 else r for r in rows]
    broken = audit.verify_rows(moved, {}, heads)[1]
    assert broken is not None and broken.id == 5 and "not registered" in broken.problem
    # Without heads (a database before 0360) each chain is still walked on its own.
    assert audit.verify_rows(rows) == (5, None)


@pytest.fixture
def chain_db(settings: Settings) -> Iterator[str]:
    """A database of its own: these tests break chains."""
    with private_database(settings, "cc_api_chains") as dsn:
        yield dsn


def _verify(dsn: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = verify_cli(argparse.Namespace(action="verify", database_url=dsn), Settings())
    return code, capsys.readouterr().out


def _tamper(conn: psycopg.Connection[Any], statement: str, *params: Any) -> None:
    """What an attacker with superuser rights can do around the append-only trigger."""
    with conn.transaction():
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute(statement, params)  # type: ignore[arg-type]
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


@pytest.mark.integration
def test_concurrent_appenders_take_separate_chains(chain_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Three transactions append and stay open together: none waits for another, each has a chain of its own.
    conns = [psycopg.connect(chain_db) for _ in range(3)]
    try:
        ids = [audit.append_many(c, _entries(2)) for c in conns]
        for c in conns:
            c.commit()
    finally:
        for c in conns:
            c.close()
    with psycopg.connect(chain_db, autocommit=True) as c:
        chains = {r[0]: r[1] for r in c.execute("SELECT id, chain FROM audit_log")}
        assert len({chains[i[0]] for i in ids}) == 3 and all(chains[i[0]] == chains[i[1]] for i in ids)
        assert 0 not in chains.values()  # the former single chain is not handed out

        # Many writers at once, some in transactions of their own: every chain stays linear.
        def writer(n: int) -> None:
            with psycopg.connect(chain_db, autocommit=True) as conn:
                for k in range(n):
                    if k % 2:
                        audit.append_many(conn, _entries(3))
                    else:
                        audit.record(conn, CTX, action="concurrent", resource="t", outcome="allowed")

        threads = [threading.Thread(target=writer, args=(20,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        code, out = _verify(chain_db, capsys)
        assert code == 0 and "chain intact" in out, out
        used = c.execute("SELECT count(DISTINCT chain) FROM audit_log").fetchone()
        assert used is not None and 3 <= used[0] <= 9  # about as many chains as concurrent appenders

        # The newest row of a chain removed around the trigger: verify sees its head missing.
        chain, head = c.execute("SELECT id, head_id FROM audit_chains WHERE id = %s", (chains[ids[1][0]],)).fetchone()
        _tamper(c, "DELETE FROM audit_log WHERE id = %s", head)
        code, out = _verify(chain_db, capsys)
        assert code == 1 and f"row id {head}" in out and f"chain {chain}" in out, out


@pytest.mark.integration
def test_edit_move_and_whole_chain_removal_are_detected(chain_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(chain_db, autocommit=True) as c:
        held = psycopg.connect(chain_db)
        try:
            first = audit.append_many(held, _entries(3, "r-held"))  # chain 1, held open...
            other = audit.append_many(c, _entries(3, "r-other"))  # ...so this goes to chain 2
            held.commit()
        finally:
            held.close()
        assert _verify(chain_db, capsys)[0] == 0
        _tamper(c, "UPDATE audit_log SET resident_id = 'r-x' WHERE id = %s", other[1])
        code, out = _verify(chain_db, capsys)
        assert code == 1 and f"row id {other[1]}" in out and "edited" in out, out
        _tamper(c, "UPDATE audit_log SET resident_id = 'r-other' WHERE id = %s", other[1])
        assert _verify(chain_db, capsys)[0] == 0
        # A row moved into the other chain: both chains' links break.
        _tamper(c, "UPDATE audit_log SET chain = (SELECT chain FROM audit_log WHERE id = %s) WHERE id = %s",
                other[0], first[1])  # fmt: skip
        assert _verify(chain_db, capsys)[0] == 1
        _tamper(c, "UPDATE audit_log SET chain = (SELECT chain FROM audit_log WHERE id = %s) WHERE id = %s",
                first[0], first[1])  # fmt: skip
        assert _verify(chain_db, capsys)[0] == 0
        # Every row of a chain removed.
        _tamper(c, "DELETE FROM audit_log WHERE id = ANY(%s)", other)
        code, out = _verify(chain_db, capsys)
        assert code == 1 and "missing" in out, out


@pytest.mark.integration
def test_prune_records_a_cut_per_chain(chain_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from carechain.db.prune import prune

    old = datetime.now(UTC) - timedelta(days=6 * 365)

    def append_dated(conn: psycopg.Connection[Any], at: datetime, n: int) -> list[int]:
        local = at.astimezone(audit.LOCAL_TZ).isoformat(timespec="seconds")
        bodies = [audit.body({"id": 0, **audit._content(e, at, local), "prev_hash": ""}) for e in _entries(n)]
        return [int(r[0]) for r in conn.execute(audit._APPEND, (bodies,))]

    with psycopg.connect(chain_db, autocommit=True) as c:
        held = psycopg.connect(chain_db)
        try:
            gone = append_dated(held, old, 2) + append_dated(c, old, 2)  # two chains, both past retention...
            held.commit()
            kept = append_dated(held, datetime.now(UTC), 1) + append_dated(c, datetime.now(UTC), 1)  # ...and on
            held.commit()
        finally:
            held.close()
        assert c.execute("SELECT count(DISTINCT chain) FROM audit_log").fetchone() == (2,)
        result = prune(chain_db, batch=3)
        assert not result.errors and result.deleted["audit_log"] == 4
        assert sorted(r[0] for r in c.execute("SELECT id FROM audit_log")) == sorted(kept)
        cuts = c.execute("SELECT chain, through_id FROM audit_log_pruned ORDER BY chain, id").fetchall()
        assert {through for _, through in cuts} >= {max(gone[:2]), max(gone[2:])} and len({ch for ch, _ in cuts}) == 2
        code, out = _verify(chain_db, capsys)
        assert code == 0 and "2 rows, chain intact" in out, out
        audit.append_many(c, _entries(1))  # appends continue after the cut
        assert _verify(chain_db, capsys)[0] == 0
