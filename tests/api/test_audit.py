"""The audit log: append-only in the database, tamper-evident by its hash chain (`carechain audit verify`),
auditor tooling, and the resident's extract of who looked."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from api import audit
from api.access import OrgKind, Role, UserContext
from api.audit_cli import run as verify_cli
from carechain.settings import Settings
from tests.api import seed
from tests.api.conftest import LiveServer

CTX = UserContext("u-audit", seed.KOMMUN_A, OrgKind.MUNICIPALITY, "hc-1", Role.NURSE)


def test_chain_hash_is_stable_and_order_sensitive() -> None:
    at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    entries = [
        audit.entry(CTX, action="GET /x", resource="r", outcome="allowed", resident_id=f"r{i}") for i in range(3)
    ]
    rows = audit.chain(audit.GENESIS, [1, 2, 3], at, entries)
    assert audit.verify_rows(rows) == (3, None)
    edited = [rows[0], {**rows[1], "outcome": "denied"}, rows[2]]
    assert audit.verify_rows(edited)[1] == audit.Break(2, "hash does not match the row's content (row edited)")
    removed = [rows[0], rows[2]]
    broken = audit.verify_rows(removed)[1]
    assert broken is not None and broken.id == 3 and "prev_hash" in broken.problem
    assert rows[0]["at_local"] == "2026-11-23T09:00:00+01:00"


@pytest.mark.integration
def test_update_and_delete_are_refused(db: psycopg.Connection[Any]) -> None:
    audit.record(db, CTX, action="test", resource="t", outcome="allowed")
    for statement in ("UPDATE audit_log SET outcome = 'denied'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(statement)  # type: ignore[arg-type]


@pytest.mark.integration
def test_tampering_is_detected_by_verify(
    db: psycopg.Connection[Any], api_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = audit.record_many(
        db, [audit.entry(CTX, action="GET /t", resource="t", outcome="allowed", resident_id="r-t") for _ in range(5)]
    )
    args = argparse.Namespace(action="verify", database_url=None)
    assert verify_cli(args, api_settings) == 0
    assert "chain intact" in capsys.readouterr().out
    victim = ids[2]
    # An attacker with superuser rights goes around the trigger...
    with db.transaction():
        db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        db.execute("UPDATE audit_log SET outcome = 'denied', basis = 'x' WHERE id = %s", (victim,))
        db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    # ...and the chain shows it.
    assert verify_cli(args, api_settings) == 1
    out = capsys.readouterr().out
    assert f"row id {victim}" in out and "edited" in out
    # Restore the row so other tests see an intact chain again.
    with db.transaction():
        db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        db.execute("UPDATE audit_log SET outcome = 'allowed', basis = NULL WHERE id = %s", (victim,))
        db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    assert verify_cli(args, api_settings) == 0


@pytest.mark.integration
def test_concurrent_appends_keep_one_linear_chain(api_db: str) -> None:
    import threading

    def writer(n: int) -> None:
        with psycopg.connect(api_db, autocommit=True) as conn:
            for _ in range(n):
                audit.record(conn, CTX, action="concurrent", resource="t", outcome="allowed")

    threads = [threading.Thread(target=writer, args=(25,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(api_db) as conn:
        checked, broken = audit.verify(conn)
    assert broken is None and checked >= 150


@pytest.mark.integration
def test_auditor_tools_and_extract(live: LiveServer, mint: Any, db: psycopg.Connection[Any]) -> None:
    seed.organisations(db)
    seed.resident(db, "r-extract", "h-extract")
    seed.relation(db, "nurse-extract", seed.KOMMUN_A, "hc-9", "r-extract")
    nurse = {"Authorization": f"Bearer {mint('nurse-extract', seed.KOMMUN_A, 'nurse', 'hc-9')}"}
    auditor = {"Authorization": f"Bearer {mint('auditor-1', seed.KOMMUN_A, 'auditor')}"}
    stranger = {"Authorization": f"Bearer {mint('nurse-stranger', seed.KOMMUN_B, 'nurse', 'x')}"}
    with httpx.Client(base_url=live.url) as c:
        assert c.get("/v1/residents/r-extract", headers=nurse).status_code == 200
        assert c.get("/v1/residents/r-extract", headers=stranger).status_code == 404
        # Auditors read the log, not resident data.
        assert c.get("/v1/residents/r-extract", headers=auditor).status_code == 403
        assert c.get("/v1/audit", headers=nurse).status_code == 403
        log = c.get("/v1/audit", params={"resident_id": "r-extract"}, headers=auditor)
        assert log.status_code == 200
        outcomes = {(r["user_id"], r["outcome"]) for r in log.json()["items"]}
        assert ("nurse-extract", "allowed") in outcomes and ("nurse-stranger", "denied") in outcomes
        # Reading the log is itself logged.
        again = c.get("/v1/audit", params={"user_id": "auditor-1"}, headers=auditor).json()["items"]
        assert any(r["resource"] == "audit/query" for r in again)
        picks = c.get("/v1/audit/review/picks", params={"rule": "without_relation"}, headers=auditor).json()
        assert any(p["user_id"] == "nurse-stranger" for p in picks)
        night = c.get("/v1/audit/review/picks", params={"rule": "night_bulk"}, headers=auditor)
        assert night.status_code == 200
        sample = c.get("/v1/audit/review/sample", params={"n": 5}, headers=auditor).json()
        assert 0 < len(sample) <= 5
        review = c.post(
            "/v1/audit/reviews",
            json={"picked_by": "rule:without_relation", "audit_ids": [picks[0]["id"]], "verdict": "ok"},
            headers=auditor,
        )
        assert review.status_code == 201 and review.json()["reviewer"] == "auditor-1"
        assert c.get("/v1/audit/reviews", headers=auditor).json()[0]["id"] == review.json()["id"]
        # The resident's extract: organisation, unit and time; no user names.
        extract = c.get("/v1/residents/r-extract/audit-extract", headers=nurse)
        assert extract.status_code == 200
        entries = extract.json()
        assert entries and all("user_id" not in e for e in entries)
        assert {(e["org_id"], e["unit"]) for e in entries} == {(seed.KOMMUN_A, "hc-9")}
