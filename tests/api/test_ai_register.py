"""The AI register: every detector with its pause state and figures; pause switches are admin actions, logged."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration


def test_register_and_pause_switches(live: LiveServer, mint: Any, db: psycopg.Connection[Any]) -> None:
    from streams.registry import DETECTORS

    seed.organisations(db)
    seed.resident(db, "r-ai", "h-ai")
    seed.relation(db, "nurse-ai", seed.KOMMUN_A, "hc", "r-ai")
    seed.alert(db, "r-ai", "fall", "welfare", notify=False)
    admin = {"Authorization": f"Bearer {mint('admin-ai', seed.KOMMUN_A, 'admin')}"}
    nurse = {"Authorization": f"Bearer {mint('nurse-ai', seed.KOMMUN_A, 'nurse', 'hc')}"}
    with httpx.Client(base_url=live.url) as c:
        register = c.get("/v1/ai-register", headers=nurse).json()
        assert {e["name"] for e in register} == {d.name for d in DETECTORS}
        families = {e["name"]: e["family"] for e in register}
        assert families["fall"] == "welfare" and "clinical" in set(families.values())
        body = {"paused": True, "reason": "Reviewing false alarms"}
        assert c.put("/v1/ai-register/fall/pause", json=body, headers=nurse).status_code == 403
        assert c.put("/v1/ai-register/no_such/pause", json=body, headers=admin).status_code == 404
        assert c.put("/v1/ai-register/fall/pause", json=body, headers=admin).status_code == 200
        r = c.put("/v1/residents/r-ai/detectors/inactivity/pause", json=body, headers=admin)
        assert r.status_code == 200, r.text
        assert c.put("/v1/residents/r-ai/detectors/inactivity/pause", json=body, headers=nurse).status_code == 403
        register = {e["name"]: e for e in c.get("/v1/ai-register", headers=nurse).json()}
        assert register["fall"]["paused_globally"] and register["inactivity"]["paused_residents"] == 1
        site = next(x for x in register["fall"]["per_site"] if x["org_id"] == seed.KOMMUN_A)
        assert site["alerts_per_resident_week"] > 0 and 0 <= site["dismiss_rate"] <= 1
        plan = c.get("/v1/residents/r-ai/care-plan", headers=nurse).json()["plan"]
        assert plan["paused_detectors"] == ["inactivity"]
    logged = db.execute("SELECT resource FROM audit_log WHERE user_id = 'admin-ai' AND outcome = 'allowed'").fetchall()
    assert ("detector/fall/pause",) in logged
