"""Alert list items are serialised from plain dicts: the JSON is the one the ``Alert`` model gives."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic_core import to_json

from api.access import OrgKind, Role, UserContext, alert_view
from api.models import Alert
from api.pagination import Page
from api.routes.alerts import alert_item

ROW = {
    "id": 7,
    "alert_uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "resident_id": "r-1",
    "home_id": "h-1",
    "kind": "infection_signs",
    "family": "clinical",
    "severity": "high",
    "status": "proposed",
    "reason": "Signs of infection.",
    "reason_sv": "Tecken på infektion.",
    "evidence": {"score": 0.91, "features": [1, 2.5, None]},
    "created_at": datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
    "acknowledged_at": None,
    "flap_count": 0,
    "canary": False,
    "sort_at": datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
}


@pytest.mark.parametrize("role", [Role.NURSE, Role.CLINICIAN])  # home-care nurse: "needs a visit"; clinician: full
@pytest.mark.parametrize("family", ["clinical", "welfare"])
def test_item_json_is_the_models_json(role: Role, family: str) -> None:
    ctx = UserContext("u", "kommun-a", OrgKind.MUNICIPALITY, "hc", role)
    row = {**ROW, "family": family}
    by_model = Page[Alert](items=[Alert(**alert_view(ctx, row))], next_cursor="abc").model_dump_json()
    by_dict = to_json({"items": [alert_item(ctx, row)], "next_cursor": "abc", "restricted": False})
    assert json.loads(by_dict) == json.loads(by_model)
    assert (json.loads(by_dict)["items"][0]["kind"] == "needs_visit") == (role is Role.NURSE and family == "clinical")
