"""Nurse actions through the API on the alert service's lifecycle (alerts.actions), gated and audited."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration


def test_acknowledge_resolve_comment_dismiss(live: LiveServer, mint: Any, db: psycopg.Connection[Any]) -> None:
    seed.organisations(db)
    seed.resident(db, "r-act", "h-act")
    seed.relation(db, "nurse-act", seed.KOMMUN_A, "hc-act", "r-act")
    seed.relation(db, "clin-act", seed.REGION_X, "vc-act", "r-act")  # no consent for the municipality's alerts
    first, _ = seed.alert(db, "r-act", "fall", "welfare", notify=False)
    second, _ = seed.alert(db, "r-act", "inactivity", "welfare", notify=False)
    nurse = {"Authorization": f"Bearer {mint('nurse-act', seed.KOMMUN_A, 'nurse', 'hc-act')}"}
    clinician = {"Authorization": f"Bearer {mint('clin-act', seed.REGION_X, 'clinician', 'vc-act')}"}
    stranger = {"Authorization": f"Bearer {mint('nurse-x', seed.KOMMUN_B, 'nurse', 'hc')}"}
    with httpx.Client(base_url=live.url) as c:
        assert c.post(f"/v1/alerts/{first}/acknowledge", headers=stranger).status_code == 404
        assert c.post(f"/v1/alerts/{first}/acknowledge", headers=clinician).status_code == 403
        assert c.post("/v1/alerts/999999999/acknowledge", headers=nurse).status_code == 404
        r = c.post(f"/v1/alerts/{first}/acknowledge", headers=nurse)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "acknowledged"
        r = c.post(f"/v1/alerts/{first}/comments", json={"text": "On my way"}, headers=nurse)
        assert r.status_code == 201, r.text
        r = c.post(
            f"/v1/alerts/{first}/resolve", json={"outcome": "true_incident", "comment": "Helped up"}, headers=nurse
        )
        assert r.status_code == 200 and r.json()["status"] == "resolved", r.text
        again = c.post(f"/v1/alerts/{first}/acknowledge", headers=nurse)
        assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
        assert c.post(f"/v1/alerts/{second}/dismiss", json={"reason": ""}, headers=nurse).status_code == 422
        r = c.post(f"/v1/alerts/{second}/dismiss", json={"reason": "Was at the day centre"}, headers=nurse)
        assert r.status_code == 200 and r.json()["status"] == "dismissed", r.text
        detail = c.get(f"/v1/alerts/{first}", headers=nurse).json()
        assert [e["type"] for e in detail["history"]][-3:] == ["acknowledged", "commented", "resolved"]
    events = db.execute(
        "SELECT type, actor, actor_org FROM alert_events WHERE alert_id = %s ORDER BY id", (first,)
    ).fetchall()
    assert ("resolved", "nurse-act", seed.KOMMUN_A) in events
    outbox = db.execute("SELECT count(*) FROM notification_outbox WHERE alert_id = %s", (first,)).fetchone()
    assert outbox is not None and outbox[0] >= 1  # the outcome goes back as feedback through the outbox
    audit = db.execute(
        "SELECT user_id, outcome, resource FROM audit_log WHERE resident_id = 'r-act' AND resource LIKE 'alert/%%'"
    ).fetchall()
    assert ("clin-act", "denied", f"alert/{first}/acknowledge") in audit
    assert ("nurse-act", "allowed", f"alert/{first}/resolve") in audit
