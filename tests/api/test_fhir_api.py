"""FHIR R4 read through the real app on PostgreSQL: every resource type, access rules, audit rows, paging, errors.

Regional systems apply no privacy filter themselves, so these tests check the
rules on the FHIR path: allowed with a care relation, 404 without (as for an
unknown id), 403 across organisations without consent, summaries for home
care, and an audit row for every read, allowed or denied.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fhir.resources.R4B import get_fhir_model_class

from api import audit
from api.access import Outcome
from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration

FHIR = "application/fhir+json"
RID = "r-fhir-1"
HOME = "h-fhir-1"
NURSE = "nurse-fhir"  # kommun-a, care relation
STRANGER = "nurse-fhir-2"  # kommun-a, no relation
CLINICIAN = "clin-fhir"  # region-x, care relation; consent only where a test records one
AUDITOR = "audit-fhir"


@pytest.fixture(scope="module")
def seeded(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """One resident with a home, devices, readings, scores, doses, alerts, consents and relations."""
    seed.organisations(db)
    seed.resident(db, RID, HOME)
    seed.relation(db, NURSE, seed.KOMMUN_A, "hc-1", RID)
    seed.relation(db, CLINICIAN, seed.REGION_X, None, RID)
    db.execute("INSERT INTO gateways (gateway_id, home_id) VALUES ('gw-fhir-1', %s) ON CONFLICT DO NOTHING", (HOME,))
    for dev, kind in (("d-1-fhir", "motion"), ("robot-fhir-1", "robot")):
        db.execute(
            "INSERT INTO devices (device_id, gateway_id, home_id, device_kind, room, resident_id)"
            " VALUES (%s, 'gw-fhir-1', %s, %s, 'kitchen', %s) ON CONFLICT DO NOTHING",
            (dev, HOME, kind, RID),
        )
    seed.observations(db, RID, days=1, per_hour=2)
    now = datetime.now(UTC)
    for n, (kind, ago) in enumerate((("medication.dose_taken", 3), ("medication.dose_missed", 1))):
        ts = now - timedelta(hours=ago)
        db.execute(
            "INSERT INTO observations (event_id, resident_id, home_id, device_id, room, kind, value_text, ts,"
            " received_at, seq) VALUES (%s, %s, %s, 'robot-fhir-1', 'kitchen', %s, '08:00', %s, %s, %s)",
            (f"dose-fhir-{n}", RID, HOME, kind, ts, ts, n),
        )
    db.execute(
        "INSERT INTO scores (resident_id, detector, detector_version, ts, score, threshold)"
        " VALUES (%s, 'rhythm', '0.26.1-1', %s, 0.91, 0.8)",
        (RID, now - timedelta(minutes=30)),
    )
    fall, _ = seed.alert(db, RID, kind="fall", notify=False)
    dose, _ = seed.alert(db, RID, kind="dose_missed", notify=False)
    silent, _ = seed.alert(db, RID, kind="gateway_silent", family="technical", notify=False)
    clinical, clinical_event = seed.alert(db, RID, kind="bathroom", family="clinical", notify=False)
    # A live-stream delivery as the stream records it: one audit row per subscriber and event.
    audit.record(
        db,
        None,
        action="SSE deliver",
        resource=f"alert_event/{clinical_event}",
        resident_id=RID,
        outcome=Outcome.ALLOWED,
    )
    # The alert service's outbox (a webhook sent) and its escalation clock for the fall.
    db.execute(
        "INSERT INTO notification_outbox (alert_id, channel, target, payload, dedup_key, sent_at)"
        " VALUES (%s, 'webhook', 'https://receiver.example/hook', '{}', %s, now())",
        (fall, f"fhir-test-{fall}"),
    )
    db.execute(
        "INSERT INTO escalation_deadlines (alert_id, step, due_at) VALUES (%s, 1, now() + interval '5 minutes')",
        (fall,),
    )
    db.execute(
        "INSERT INTO monitoring_consents (home_id, subject, subject_ref, basis, method, recorded_by)"
        " VALUES (%s, 'resident', %s, 'consent', 'written', %s)",
        (HOME, RID, NURSE),
    )
    return {"fall": fall, "dose": dose, "silent": silent, "clinical": clinical}


def _get(live: LiveServer, path: str, token: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{live.url}/fhir/R4{path}", headers=headers, params=params, timeout=10)


def _resource(r: httpx.Response, rtype: str) -> dict[str, Any]:
    """The body as a validated R4 resource of this type (parsed with the R4B model)."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR)
    data = r.json()
    assert data["resourceType"] == rtype
    get_fhir_model_class(rtype).model_validate(data)
    return data


def _outcome(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR)
    data = r.json()
    get_fhir_model_class("OperationOutcome").model_validate(data)
    assert data["issue"][0]["code"] == code


def _audit_rows(db: psycopg.Connection[Any], user: str, action: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT outcome, resident_id, resource, basis FROM audit_log WHERE user_id = %s AND action = %s ORDER BY id",
        (user, action),
    ).fetchall()


def test_metadata_needs_no_token(live: LiveServer, seeded: dict[str, Any]) -> None:
    data = _resource(_get(live, "/metadata", None), "CapabilityStatement")
    assert data["fhirVersion"] == "4.0.1"
    assert {"Patient", "Observation", "AuditEvent"} <= {r["type"] for r in data["rest"][0]["resource"]}


def test_no_token_is_401_operation_outcome(live: LiveServer, seeded: dict[str, Any]) -> None:
    r = _get(live, f"/Patient/{RID}", None)
    _outcome(r, 401, "login")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_patient_allowed_with_relation_denied_without_and_audited(
    live: LiveServer, mint: Any, db: psycopg.Connection[Any], seeded: dict[str, Any]
) -> None:
    nurse = mint(NURSE, seed.KOMMUN_A, "nurse", "hc-1")
    data = _resource(_get(live, f"/Patient/{RID}", nurse), "Patient")
    # Home-care nurses with a relation have the identity scope: name and personnummer are shown.
    stored = db.execute("SELECT personnummer FROM resident_identities WHERE resident_id = %s", (RID,)).fetchone()
    assert stored is not None
    assert data["identifier"][0]["value"] == stored[0].replace("-", "")
    assert data["name"][0]["family"] == "Person"
    rows = _audit_rows(db, NURSE, "FHIR read Patient")
    assert rows[-1][0] == "allowed" and rows[-1][1] == RID and rows[-1][3].startswith("relation:")

    stranger = mint(STRANGER, seed.KOMMUN_A, "nurse", "hc-1")
    _outcome(_get(live, f"/Patient/{RID}", stranger), 404, "not-found")
    _outcome(_get(live, "/Patient/r-does-not-exist", stranger), 404, "not-found")  # the same answer
    denied = _audit_rows(db, STRANGER, "FHIR read Patient")
    assert [r[0] for r in denied] == ["denied", "denied"]
    assert denied[0][1] == RID


def test_region_reads_its_clinical_data_and_needs_consent_for_the_rest(
    live: LiveServer, mint: Any, db: psycopg.Connection[Any], seeded: dict[str, Any]
) -> None:
    clinician = mint(CLINICIAN, seed.REGION_X, "clinician")
    # The region owns the clinical category: the anomaly score is there; the municipality's readings are not.
    bundle = _resource(_get(live, "/Observation", clinician, patient=RID, _count=500), "Bundle")
    assert {e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]} == {"rhythm"}
    outcomes = {(r[2], r[0]) for r in _audit_rows(db, CLINICIAN, "FHIR search Observation")}
    assert {("fhir/Observation/clinical", "allowed"), ("fhir/Observation/sensor_events", "denied")} <= outcomes
    # Medication and identity belong to the municipality: no consent, no access (403: the relation is known).
    _outcome(_get(live, "/MedicationAdministration", clinician, patient=RID), 403, "forbidden")
    _outcome(_get(live, f"/Patient/{RID}", clinician), 403, "forbidden")
    consent_id = seed.consent(db, RID, seed.REGION_X, None, ["sensor_events", "medication", "identity", "alerts"])
    try:
        bundle = _resource(_get(live, "/Observation", clinician, patient=RID, _count=500), "Bundle")
        codes = {e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]}
        assert {"rhythm", "8867-4", "motion"} <= codes
        last_two = _audit_rows(db, CLINICIAN, "FHIR search Observation")[-2:]  # one row per category checked
        assert all(r[0] == "allowed" for r in last_two)
        assert any(r[2] == "fhir/Observation/sensor_events" and "+consent:" in r[3] for r in last_two)
        doses = _resource(_get(live, "/MedicationAdministration", clinician, patient=RID), "Bundle")
        assert len(doses["entry"]) == 2
        patient = _resource(_get(live, f"/Patient/{RID}", clinician), "Patient")
        assert patient["identifier"][0]["system"].endswith("personnummer")
    finally:
        db.execute("UPDATE sharing_consents SET withdrawn_at = now() WHERE id = %s", (consent_id,))


def test_observation_search_pages_and_scopes(live: LiveServer, mint: Any, seeded: dict[str, Any]) -> None:
    nurse = mint(NURSE, seed.KOMMUN_A, "nurse", "hc-1")
    first = _resource(_get(live, "/Observation", nurse, patient=f"Patient/{RID}", _count=5), "Bundle")
    assert first["type"] == "searchset" and len(first["entry"]) == 5
    links = {lk["relation"]: lk["url"] for lk in first["link"]}
    second = _resource(httpx.get(links["next"], headers={"Authorization": f"Bearer {nurse}"}, timeout=10), "Bundle")
    ids_1 = [e["resource"]["id"] for e in first["entry"]]
    ids_2 = [e["resource"]["id"] for e in second["entry"]]
    assert len(ids_2) == 5 and not set(ids_1) & set(ids_2)
    times = [e["resource"]["effectiveDateTime"] for e in first["entry"] + second["entry"]]
    assert times == sorted(times, reverse=True)
    # Home care has no clinical scope: no anomaly scores, whatever the filter.
    every = _resource(_get(live, "/Observation", nurse, patient=RID, _count=500), "Bundle")
    assert all(e["resource"]["code"]["coding"][0]["code"] != "rhythm" for e in every["entry"])
    vitals = _resource(_get(live, "/Observation", nurse, patient=RID, category="vital-signs"), "Bundle")
    assert {e["resource"]["code"]["coding"][0]["code"] for e in vitals["entry"]} == {"8867-4"}
    since = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = _resource(_get(live, "/Observation", nurse, patient=RID, date=f"ge{since}", _count=500), "Bundle")
    assert 0 < len(recent["entry"]) < len(every["entry"])


def test_every_resource_type_reads(live: LiveServer, mint: Any, seeded: dict[str, Any]) -> None:
    nurse = mint(NURSE, seed.KOMMUN_A, "nurse", "hc-1")
    for rtype in (
        "Device",
        "Flag",
        "DetectedIssue",
        "MedicationAdministration",
        "CommunicationRequest",
        "Communication",
        "Task",
        "CareTeam",
        "Consent",
    ):
        bundle = _resource(_get(live, f"/{rtype}", nurse, patient=RID), "Bundle")
        assert bundle.get("entry"), rtype
        for entry in bundle["entry"]:
            res = entry["resource"]
            assert res["resourceType"] == rtype
            # Each entry can be read back by id, the same resource.
            again = _resource(_get(live, f"/{rtype}/{res['id']}", nurse), rtype)
            assert again["id"] == res["id"]
    devices = _resource(_get(live, "/Device", nurse, patient=RID), "Bundle")
    gateway = next(e["resource"] for e in devices["entry"] if e["resource"]["id"] == "gw-fhir-1")
    assert gateway["property"][0]["valueCode"][0]["coding"][0]["code"] == "offline"  # its silence alert is open
    metric = _resource(_get(live, "/DeviceMetric/gw-fhir-1-online", nurse), "DeviceMetric")
    assert metric["operationalStatus"] == "off"
    doses = _resource(_get(live, "/MedicationAdministration", nurse, patient=RID), "Bundle")
    assert sorted(e["resource"]["status"] for e in doses["entry"]) == ["completed", "not-done"]
    comms = _resource(_get(live, "/Communication", nurse, patient=RID), "Bundle")
    media = sorted(e["resource"]["medium"][0]["coding"][0]["code"] for e in comms["entry"])
    assert media == ["sse", "webhook"]
    assert "receiver.example" not in json.dumps(comms)  # the target is not shown, only the organisation
    task = _resource(_get(live, f"/Task/{seeded['fall']}", nurse), "Task")
    assert task["status"] == "requested" and "end" in task["restriction"]["period"]  # the escalation deadline
    issues = _resource(_get(live, "/DetectedIssue", nurse, patient=RID), "Bundle")
    assert [e["resource"]["code"]["coding"][0]["code"] for e in issues["entry"]] == ["dose_missed"]


def test_home_care_sees_a_clinical_alert_as_needs_a_visit(live: LiveServer, mint: Any, seeded: dict[str, Any]) -> None:
    nurse = mint(NURSE, seed.KOMMUN_A, "nurse", "hc-1")
    task = _resource(_get(live, f"/Task/{seeded['clinical']}", nurse), "Task")
    assert task["code"]["coding"][0]["code"] == "needs_visit"
    assert "requester" not in task
    request = _resource(_get(live, f"/CommunicationRequest/{seeded['fall']}", nurse), "CommunicationRequest")
    assert request["payload"][0]["contentString"] == "Ett testlarm."
    assert request["status"] == "active"


def test_audit_events_for_auditors_only(
    live: LiveServer, mint: Any, db: psycopg.Connection[Any], seeded: dict[str, Any]
) -> None:
    nurse = mint(NURSE, seed.KOMMUN_A, "nurse", "hc-1")
    _resource(_get(live, f"/Patient/{RID}", nurse), "Patient")
    _outcome(_get(live, "/AuditEvent", nurse, patient=RID), 403, "forbidden")
    auditor = mint(AUDITOR, seed.KOMMUN_A, "auditor")
    bundle = _resource(_get(live, "/AuditEvent", auditor, patient=RID, _count=50), "Bundle")
    actions = [e["resource"]["action"] for e in bundle["entry"]]
    assert "R" in actions
    one = bundle["entry"][0]["resource"]
    _resource(_get(live, f"/AuditEvent/{one['id']}", auditor), "AuditEvent")
    assert _audit_rows(db, AUDITOR, "FHIR search AuditEvent")  # reading the log is logged


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/Observation", {}, 400, "invalid"),  # a patient is required
        ("/Observation", {"patient": RID, "bogus": "1"}, 400, "invalid"),
        ("/Observation", {"patient": RID, "_count": "0"}, 400, "invalid"),
        ("/Observation", {"patient": RID, "date": "ge-yesterday"}, 400, "invalid"),
        ("/Patient", {"identifier": "http://electronichealth.se/identifier/personnummer|191212121212"}, 400, "invalid"),
        ("/Observation/ev-nope", {}, 404, "not-found"),
        ("/Observation/bad_id!", {}, 404, "not-found"),
        ("/Basic/1", {}, 404, "not-found"),
    ],
)
def test_errors_are_operation_outcomes(
    live: LiveServer, mint: Any, seeded: dict[str, Any], path: str, params: dict[str, str], status: int, code: str
) -> None:
    nurse = mint(NURSE, seed.KOMMUN_A, "nurse", "hc-1")
    r = _get(live, path, nurse, **params)
    assert r.status_code == status, r.text
    if path.startswith("/Basic"):
        return  # an unknown type is outside the FHIR router (the API's 404)
    _outcome(r, status, code)
