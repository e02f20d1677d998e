"""The page's routes on the real app and database: the page itself, and the medication-robot figure
(aggregated for the caller's organisation, role-checked, audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration

URL = "/v1/statistics/medication-robot"
ORG = "kommun-robot"  # its own municipality: other tests' doses in the shared database do not count here


@pytest.fixture(scope="module")
def seeded(db: psycopg.Connection[Any]) -> None:
    seed.organisations(db)
    db.execute(
        "INSERT INTO organisations (org_id, name, kind) VALUES (%s, 'Kommun Robot', 'kommun') ON CONFLICT DO NOTHING",
        (ORG,),
    )
    seed.resident(db, "r-robot-1", "h-robot-1", ORG)
    seed.resident(db, "r-robot-2", "h-robot-2", seed.KOMMUN_B)
    now = datetime.now(UTC)
    rows = [
        ("robot-a-1", "r-robot-1", now - timedelta(days=1), "medication.dose_taken"),
        ("robot-a-2", "r-robot-1", now - timedelta(hours=12), "medication.dose_taken"),
        ("robot-a-3", "r-robot-1", now - timedelta(hours=1), "medication.dose_missed"),
        ("robot-a-4", "r-robot-1", now - timedelta(days=60), "medication.dose_taken"),  # outside the window
        ("robot-b-1", "r-robot-2", now - timedelta(hours=2), "medication.dose_taken"),  # another municipality
    ]
    for n, (event_id, rid, ts, kind) in enumerate(rows):
        db.execute(
            "INSERT INTO observations (event_id, resident_id, home_id, device_id, kind, value_text, ts, received_at,"
            " seq) VALUES (%s, %s, 'h', 'robot', %s, '08:00', %s, %s, %s) ON CONFLICT DO NOTHING",
            (event_id, rid, kind, ts, ts, n),
        )


def test_page_is_served_by_the_app(live: LiveServer, seeded: None) -> None:
    r = httpx.get(f"{live.url}/", timeout=10)
    assert r.status_code == 200
    assert '<html lang="sv">' in r.text
    assert httpx.get(f"{live.url}/static/i18n/en.json", timeout=10).json()["alert.ack"] == "Acknowledge"


def test_robot_doses_for_the_callers_organisation(
    live: LiveServer, mint: Any, db: psycopg.Connection[Any], seeded: None
) -> None:
    token = mint("coord-robot", ORG, "coordinator")
    r = httpx.get(f"{live.url}{URL}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    # Only the organisation's residents, only the last 28 days; no resident ids in the answer.
    assert (body["doses_taken"], body["doses_missed"], body["rounds_saved"]) == (2, 1, 2)
    assert body["residents"] == 1 and "r-robot-1" not in r.text
    row = db.execute(
        "SELECT outcome, purpose, resident_id FROM audit_log WHERE user_id = 'coord-robot'"
        " AND resource = 'statistics/medication-robot' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row == ("allowed", "quality", None)


def test_robot_doses_refused_for_auditors_and_without_token(live: LiveServer, mint: Any, seeded: None) -> None:
    auditor = mint("auditor-robot", seed.KOMMUN_A, "auditor")
    r = httpx.get(f"{live.url}{URL}", headers={"Authorization": f"Bearer {auditor}"}, timeout=10)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{live.url}{URL}", timeout=10).status_code == 401
    bad = httpx.get(
        f"{live.url}{URL}",
        params={"since": "2026-01-02T00:00:00+00:00", "until": "2026-01-01T00:00:00+00:00"},
        headers={"Authorization": f"Bearer {mint('coord-robot', ORG, 'coordinator')}"},
        timeout=10,
    )
    assert bad.status_code == 422
