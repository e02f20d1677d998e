"""Registry through the API on the real services: a home, its resident (personnummer validated), monitoring
only after everyone's consent, and a gateway provisioned on the real Mosquitto (dynamic security) and locked
out at once when revoked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from carechain.services.mosquitto import PROVISIONED_PORT, dynsec_admin_path, mqtt_connects
from carechain.settings import Settings
from tests.api import seed
from tests.api.conftest import LiveServer
from tests.conftest import service_unavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker_live(api_db: str, settings: Settings) -> Iterator[tuple[LiveServer, Any]]:
    """An API whose settings point at the harness's state (the broker's admin credentials live there)."""
    from api.app import create_app
    from api.auth import local_issuer

    path = dynsec_admin_path(settings)
    admin = json.loads(path.read_text()) if path.exists() else {}
    if not admin or not mqtt_connects(settings.mqtt_host, PROVISIONED_PORT, admin["username"], admin["password"]):
        service_unavailable(f"Mosquitto with dynamic security (127.0.0.1:{PROVISIONED_PORT})")
    app_settings = settings.model_copy(update={"database_url": api_db})
    with LiveServer(create_app(app_settings)) as server:
        yield server, local_issuer(app_settings)


def test_home_resident_consent_gateway(broker_live: tuple[LiveServer, Any], db: psycopg.Connection[Any]) -> None:
    live, issuer = broker_live
    seed.organisations(db)
    tag = uuid.uuid4().hex[:8]
    home, gw = f"h-reg-{tag}", f"gw-reg-{tag}"
    admin = {"Authorization": f"Bearer {issuer.mint('admin-reg', seed.KOMMUN_A, 'admin')}"}
    other_admin = {"Authorization": f"Bearer {issuer.mint('admin-b', seed.KOMMUN_B, 'admin')}"}
    nurse = {"Authorization": f"Bearer {issuer.mint('nurse-reg', seed.KOMMUN_A, 'nurse', 'hc')}"}
    settings = Settings()
    with httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.post("/v1/homes", json={"id": home, "region_org_id": seed.REGION_X, "cohabitants": 1}, headers=admin)
        assert r.status_code == 201, r.text
        assert c.post("/v1/homes", json={"id": home, "region_org_id": seed.REGION_X}, headers=admin).status_code == 409
        assert c.get(f"/v1/homes/{home}", headers=other_admin).status_code == 404
        assert c.get(f"/v1/homes/{home}", headers=nurse).status_code == 403
        r = c.post(
            "/v1/residents",
            json={"home_id": home, "name": "A B", "personnummer": seed.personnummer(90_000 + int(tag[:4], 16) % 9000)},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]

        # Monitoring only after the resident's AND the cohabitant's consent.
        status = c.get(f"/v1/homes/{home}/monitoring", headers=admin).json()
        assert not status["active"] and len(status["missing"]) == 2
        consent = {"subject": "resident", "subject_ref": rid, "method": "written"}
        assert c.post(f"/v1/homes/{home}/monitoring-consents", json=consent, headers=admin).status_code == 201
        assert not c.get(f"/v1/homes/{home}/monitoring", headers=admin).json()["active"]
        partner = {"subject": "cohabitant", "subject_ref": f"p-{tag}", "method": "verbal_witnessed"}
        r = c.post(f"/v1/homes/{home}/monitoring-consents", json=partner, headers=admin)
        assert r.status_code == 201, r.text
        assert c.get(f"/v1/homes/{home}/monitoring", headers=admin).json()["active"]

        # A gateway: its own broker account, publish only under its own id.
        r = c.post("/v1/gateways", json={"id": gw, "home_id": home}, headers=admin)
        assert r.status_code == 201, r.text
        password = r.json()["mqtt_password"]
        assert r.json()["topic_prefix"] == f"carechain/v1/gw/{gw}/#"
        assert mqtt_connects(settings.mqtt_host, PROVISIONED_PORT, gw, password)
        assert not mqtt_connects(settings.mqtt_host, PROVISIONED_PORT, gw, "wrong-password")
        r = c.post(
            "/v1/devices", json={"id": f"d-{tag}", "gateway_id": gw, "kind": "motion", "room": "hall"}, headers=admin
        )
        assert r.status_code == 201, r.text
        registry = db.execute(
            "SELECT resident_id, monitoring_active FROM device_registry WHERE device_id = %s", (f"d-{tag}",)
        ).fetchone()
        assert registry == (rid, True)

        # Revoked: locked out at once.
        assert c.delete(f"/v1/gateways/{gw}", headers=admin).status_code == 200
        assert not mqtt_connects(settings.mqtt_host, PROVISIONED_PORT, gw, password)
        assert db.execute("SELECT count(*) FROM device_registry WHERE gateway_id = %s", (gw,)).fetchone() == (0,)

        # Withdrawing a consent stops monitoring (the bridge reads the registry).
        cid = c.get(f"/v1/homes/{home}/monitoring-consents", headers=admin).json()[0]["id"]
        r = c.post(f"/v1/homes/{home}/monitoring-consents/{cid}/withdraw", headers=admin)
        assert r.status_code == 200 and r.json()["withdrawn_by"] == "admin-reg"
        assert not c.get(f"/v1/homes/{home}/monitoring", headers=admin).json()["active"]
