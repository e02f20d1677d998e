"""Unit tests of the pure FHIR R4 mapping (api/fhir.py): no I/O.

Each resource is built with the fhir.resources R4B model inside the mapping;
here we check what it says, round-trip it through JSON and re-parse it with the
model (the validation), and check privacy: no identity without permission.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given
from hypothesis import strategies as st

from api import fhir

T0 = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)


def roundtrip(resource: Any) -> dict[str, Any]:
    """Serialise, parse back with the R4B model of the same type, and return the JSON dict."""
    text = fhir.to_json(resource)
    data = json.loads(text)
    model = get_fhir_model_class(data["resourceType"])
    model.model_validate(data)  # raises when the JSON is not a valid resource
    return data


def alert(**kw: Any) -> fhir.AlertRecord:
    base: dict[str, Any] = {
        "alert_id": "a-1",
        "resident_id": "r-0001",
        "kind": "fall",
        "family": "welfare",
        "severity": "critical",
        "status": "open",
        "detector": "fall_rule",
        "detector_version": "1.0",
        "reason": "A fall was detected in the bathroom at 07:30.",
        "reason_sv": "Ett fall upptäcktes i badrummet kl. 07:30.",
        "created_at": T0,
        "event_time": T0 - timedelta(seconds=2),
        "org_id": "kommun-a",
        "ack_deadline": T0 + timedelta(minutes=5),
    }
    base.update(kw)
    return fhir.AlertRecord(**base)


# --- ids -------------------------------------------------------------------


@given(st.text(alphabet="abcXYZ019_:.-", min_size=1, max_size=30))
def test_fhir_id_roundtrip(raw: str) -> None:
    fid = fhir.fhir_id(raw)
    assert fhir.is_valid_fhir_id(fid)
    assert fhir.domain_id(fid) == raw


def test_fhir_id_keeps_plain_ids() -> None:
    assert fhir.fhir_id("r-0001") == "r-0001"
    assert fhir.fhir_id(42) == "42"
    assert fhir.fhir_id("gw_1").startswith("b32-")


def test_too_long_id_is_a_mapping_error() -> None:
    with pytest.raises(fhir.MappingError):
        fhir.fhir_id("x_" * 40)


# --- Patient ---------------------------------------------------------------


RESIDENT = fhir.ResidentRecord(
    resident_id="r-0001",
    org_id="kommun-a",
    given_name="Karin",
    family_name="Andersson",
    personnummer="19400101-2384",
    birth_date=date(1940, 1, 1),
    gender="female",
)


def test_patient_pseudonymous_has_no_identity() -> None:
    data = roundtrip(fhir.patient(RESIDENT, show_identity=False))
    text = json.dumps(data)
    assert data["id"] == "r-0001"
    assert data["identifier"] == [{"use": "secondary", "system": fhir.SID_RESIDENT, "value": "r-0001"}]
    assert fhir.PROFILE_SE_PATIENT in data["meta"]["profile"]
    assert data["meta"]["security"][0]["code"] == "PSEUDED"
    for secret in ("Karin", "Andersson", "194001012384", "1940-01-01", "female"):
        assert secret not in text
    assert "name" not in data


def test_patient_with_identity_has_personnummer_and_name() -> None:
    data = roundtrip(fhir.patient(RESIDENT, show_identity=True))
    assert data["identifier"][0] == {"use": "official", "system": fhir.SID_PERSONNUMMER, "value": "194001012384"}
    assert data["name"][0]["family"] == "Andersson"
    assert data["birthDate"] == "1940-01-01"
    assert data["gender"] == "female"
    assert "security" not in data["meta"]


def test_patient_samordningsnummer_system() -> None:
    r = fhir.ResidentRecord(resident_id="r-2", personnummer="19400161-2380")
    data = roundtrip(fhir.patient(r, show_identity=True))
    assert data["identifier"][0]["system"] == fhir.SID_SAMORDNINGSNUMMER


# --- Device / DeviceMetric -------------------------------------------------


def test_device_gateway_and_sensor_with_online_status() -> None:
    gw = fhir.DeviceRecord(device_id="gw-1", device_kind="gateway", resident_id="r-0001", online=False)
    data = roundtrip(fhir.device(gw))
    assert data["type"]["coding"][0]["code"] == "gateway"
    prop = data["property"][0]
    assert prop["type"]["coding"][0]["code"] == "online-status"
    assert prop["valueCode"][0]["coding"][0]["code"] == "offline"
    assert "parent" not in data

    sensor = fhir.DeviceRecord(
        device_id="d-1", device_kind="motion", resident_id="r-0001", gateway_id="gw-1", room="kitchen", battery_pct=80
    )
    data = roundtrip(fhir.device(sensor))
    assert data["parent"] == {"reference": "Device/gw-1"}
    assert data["patient"] == {"reference": "Patient/r-0001"}
    assert any(p["type"]["coding"][0]["code"] == "battery" for p in data["property"])


def test_device_metrics_operational_status() -> None:
    robot = fhir.DeviceRecord(device_id="robot-1", device_kind="robot", online=True, battery_pct=55.0)
    metrics = [roundtrip(m) for m in fhir.device_metrics(robot)]
    assert metrics[0]["operationalStatus"] == "on"
    assert metrics[0]["source"] == {"reference": "Device/robot-1"}
    assert metrics[1]["category"] == "measurement"
    unknown = fhir.device_metrics(fhir.DeviceRecord(device_id="d-2", device_kind="door"))
    assert len(unknown) == 1
    assert unknown[0].operationalStatus is None


# --- Observation -----------------------------------------------------------


def test_observation_vital_sign_uses_loinc_and_ucum() -> None:
    o = fhir.ObservationRecord("o-1", "r-0001", "reading", "heart_rate", T0, 72.0, "bpm", device_id="d-hr")
    data = roundtrip(fhir.observation(o))
    assert data["code"]["coding"][0] == {"system": fhir.LOINC, "code": "8867-4", "display": "Heart rate"}
    assert data["category"][0]["coding"][0]["code"] == "vital-signs"
    assert data["valueQuantity"] == {"value": 72.0, "unit": "/min", "system": fhir.UCUM, "code": "/min"}
    assert data["effectiveDateTime"] == "2026-11-23T07:30:00Z"
    assert data["device"] == {"reference": "Device/d-hr"}


@pytest.mark.parametrize(
    ("value", "key"),
    [(True, "valueBoolean"), ("open", "valueString"), (3, "valueQuantity"), (None, "dataAbsentReason")],
)
def test_observation_sensor_reading_values(value: Any, key: str) -> None:
    o = fhir.ObservationRecord("o-2", "r-0001", "reading", "door", T0, value)
    data = roundtrip(fhir.observation(o))
    assert key in data
    assert data["code"]["coding"][0]["system"] == fhir.CS_KIND


def test_observation_daily_feature_has_period() -> None:
    o = fhir.ObservationRecord(
        "f-1", "r-0001", "feature", "bathroom_visits_night", T0, 4, "1", period_end=T0 + timedelta(days=1)
    )
    data = roundtrip(fhir.observation(o))
    assert data["effectivePeriod"]["end"] == "2026-11-24T07:30:00Z"
    assert data["valueQuantity"]["value"] == 4


def test_observation_anomaly_score_has_model_as_device() -> None:
    o = fhir.ObservationRecord(
        "s-1", "r-0001", "score", "rhythm_hst", T0, 0.93, detector_version="0.26.1-3", threshold=0.8
    )
    data = roundtrip(fhir.observation(o))
    assert data["device"]["identifier"] == {"system": fhir.SID_DETECTOR, "value": "rhythm_hst"}
    assert data["device"]["display"] == "rhythm_hst 0.26.1-3"
    assert data["referenceRange"][0]["high"]["value"] == 0.8
    assert data["interpretation"][0]["coding"][0]["code"] == "H"


def test_observation_rejects_bad_input() -> None:
    with pytest.raises(fhir.MappingError):
        fhir.observation(fhir.ObservationRecord("o", "r", "reading", "spo2", T0, "high"))
    with pytest.raises(fhir.MappingError):
        fhir.observation(fhir.ObservationRecord("o", "r", "mystery", "x", T0, 1))
    with pytest.raises(fhir.MappingError, match="naive"):
        fhir.observation(fhir.ObservationRecord("o", "r", "reading", "motion", datetime(2026, 1, 1), True))


# --- Flag / DetectedIssue --------------------------------------------------


def test_flag_lasting_warning() -> None:
    w = fhir.WarningRecord("w-1", "r-0001", "monitoring_degraded", active=True, start=T0)
    data = roundtrip(fhir.flag(w))
    assert data["status"] == "active"
    assert data["code"]["coding"][0]["code"] == "monitoring_degraded"
    assert data["code"]["text"] == "Övervakningen är försämrad"
    assert data["category"][0]["coding"][0]["code"] == "safety"
    ended = roundtrip(fhir.flag(fhir.WarningRecord("w-2", "r-0001", "fall_risk", False, T0, T0, clinical=True)))
    assert ended["status"] == "inactive"
    assert ended["category"][0]["coding"][0]["code"] == "clinical"


def test_detected_issue_only_for_medication_problems() -> None:
    a = alert(
        kind="dose_missed", severity="high", reason="The 08:00 dose was not taken.", reason_sv="Dosen 08:00 togs inte."
    )
    data = roundtrip(fhir.detected_issue(a))
    assert data["status"] == "preliminary"
    assert data["severity"] == "high"
    assert data["detail"] == "The 08:00 dose was not taken."
    with pytest.raises(fhir.MappingError, match="medication"):
        fhir.detected_issue(alert(kind="fall"))


# --- MedicationAdministration ----------------------------------------------


def test_medication_administration_taken_and_not_done() -> None:
    taken = fhir.DoseRecord("dose-1", "r-0001", "08:00", "taken", T0, robot_device_id="robot-1")
    data = roundtrip(fhir.medication_administration(taken))
    assert data["status"] == "completed"
    assert data["performer"][0]["actor"] == {"reference": "Device/robot-1"}
    assert data["device"] == [{"reference": "Device/robot-1"}]
    missed = roundtrip(fhir.medication_administration(fhir.DoseRecord("dose-2", "r-0001", "20:00", "missed", T0)))
    assert missed["status"] == "not-done"
    assert missed["statusReason"][0]["text"] == "dose not taken"
    with pytest.raises(fhir.MappingError):
        fhir.medication_administration(fhir.DoseRecord("dose-3", "r-0001", "20:00", "eaten", T0))


# --- CommunicationRequest / Communication / Task ---------------------------


def test_communication_request_explains_alert() -> None:
    data = roundtrip(fhir.communication_request(alert()))
    assert data["status"] == "active"
    assert data["priority"] == "stat"
    assert data["payload"][0]["contentString"].startswith("Ett fall")
    assert data["recipient"][0]["identifier"]["value"] == "kommun-a"
    assert data["requester"]["display"] == "fall_rule 1.0"
    assert roundtrip(fhir.communication_request(alert(status="resolved")))["status"] == "completed"


def test_communication_delivery() -> None:
    n = fhir.NotificationRecord("n-1", "a-1", "r-0001", "webhook", "kommun-a", "sent", T0, sent_at=T0)
    data = roundtrip(fhir.communication(n))
    assert data["status"] == "completed"
    assert data["basedOn"] == [{"reference": "CommunicationRequest/a-1"}]
    assert data["medium"][0]["coding"][0]["code"] == "webhook"
    failed = roundtrip(
        fhir.communication(
            fhir.NotificationRecord("n-2", "a-1", "r-0001", "email", None, "failed", T0, error="smtp 550")
        )
    )
    assert failed["status"] == "stopped"
    assert failed["statusReason"]["text"] == "smtp 550"


@pytest.mark.parametrize(("status", "expected"), list(fhir.TASK_STATUS.items()))
def test_task_lifecycle(status: str, expected: str) -> None:
    data = roundtrip(fhir.task(alert(status=status)))
    assert data["status"] == expected
    assert data["intent"] == "order"
    assert data["for"] == {"reference": "Patient/r-0001"}
    assert data["restriction"]["period"]["end"] == "2026-11-23T07:35:00Z"


def test_task_owner_and_outcome() -> None:
    a = alert(
        status="resolved",
        owner_user="nurse-7",
        acknowledged_at=T0 + timedelta(minutes=1),
        resolved_at=T0 + timedelta(minutes=20),
        outcome="false_alarm",
    )
    data = roundtrip(fhir.task(a))
    assert data["owner"]["identifier"] == {"system": fhir.SID_USER, "value": "nurse-7"}
    assert data["output"][0]["valueCodeableConcept"]["coding"][0]["code"] == "false_alarm"
    assert data["executionPeriod"] == {"start": "2026-11-23T07:31:00Z", "end": "2026-11-23T07:50:00Z"}


# --- CareTeam / Consent / AuditEvent ---------------------------------------


def test_care_team_active_only_in_period() -> None:
    rel = fhir.CareRelationRecord("rel-1", "r-0001", "nurse-7", "kommun-a", "nurse", T0 - timedelta(days=3), T0)
    assert roundtrip(fhir.care_team(rel, T0 - timedelta(days=1)))["status"] == "active"
    data = roundtrip(fhir.care_team(rel, T0 + timedelta(seconds=1)))
    assert data["status"] == "inactive"
    assert data["participant"][0]["member"]["identifier"]["value"] == "nurse-7"
    assert data["participant"][0]["onBehalfOf"]["identifier"]["value"] == "kommun-a"


def test_consent_kinds() -> None:
    sensor = fhir.ConsentRecord("c-1", "r-0001", "sensor", True, T0, start=T0, recorded_by="nurse-7", method="written")
    data = roundtrip(fhir.consent(sensor, T0))
    assert data["status"] == "active"
    assert data["scope"]["coding"][0]["code"] == "treatment"
    assert data["provision"]["type"] == "permit"
    sharing = fhir.ConsentRecord("c-2", "r-0001", "sharing", True, T0, end=T0 + timedelta(days=365), org_id="region-x")
    data = roundtrip(fhir.consent(sharing, T0))
    assert data["scope"]["coding"][0]["code"] == "patient-privacy"
    assert data["provision"]["actor"][0]["reference"]["identifier"]["value"] == "region-x"
    block = fhir.ConsentRecord("c-3", "r-0001", "block", True, T0, org_id="region-x", categories=("clinical",))
    data = roundtrip(fhir.consent(block, T0))
    assert data["provision"]["type"] == "deny"
    assert data["provision"]["class"] == [{"system": fhir.CS_DATA_CATEGORY, "code": "clinical"}]
    expired = fhir.ConsentRecord("c-4", "r-0001", "sharing", True, T0, end=T0)
    assert roundtrip(fhir.consent(expired, T0 + timedelta(days=1)))["status"] == "inactive"


def test_audit_event_read_and_emergency_subtype() -> None:
    read = fhir.AuditRecord(
        "au-1",
        T0,
        "read",
        "Observation",
        "allowed",
        "nurse-7",
        "kommun-a",
        "nurse",
        "r-0001",
        "treatment",
        request_id="req-1",
        basis="relation rel-1",
    )
    data = roundtrip(fhir.audit_event(read))
    assert data["action"] == "R"
    assert data["outcome"] == "0"
    assert data["entity"][0]["what"] == {"reference": "Patient/r-0001"}
    assert {"system": fhir.CS_RESTFUL, "code": "read"} in data["subtype"]
    assert not any(s["code"] == "emergency-override" for s in data["subtype"])
    em = fhir.AuditRecord(
        "au-2",
        T0,
        "read",
        "Patient",
        "allowed",
        "doc-1",
        "region-x",
        "clinician",
        "r-0001",
        "emergency",
        emergency=True,
        reason="unconscious, no relation",
    )
    data = roundtrip(fhir.audit_event(em))
    assert any(s["code"] == "emergency-override" for s in data["subtype"])
    assert data["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    denied = fhir.AuditRecord("au-3", T0, "search", "Observation", "denied", "n-9", "kommun-b", "nurse", "r-0001")
    assert roundtrip(fhir.audit_event(denied))["outcome"] == "4"


# --- Bundle, OperationOutcome, CapabilityStatement ---------------------------


def test_searchset_bundle_with_paging_links() -> None:
    obs = [
        fhir.observation(fhir.ObservationRecord(f"o-{i}", "r-0001", "reading", "motion", T0, True)) for i in range(2)
    ]
    data = roundtrip(
        fhir.searchset(
            obs,
            base_url="http://x/fhir/R4",
            self_url="http://x/fhir/R4/Observation?patient=r-0001",
            next_url="http://x/fhir/R4/Observation?patient=r-0001&_page=abc",
        )
    )
    assert data["type"] == "searchset"
    assert [lk["relation"] for lk in data["link"]] == ["self", "next"]
    assert data["entry"][1]["fullUrl"] == "http://x/fhir/R4/Observation/o-1"
    assert data["entry"][0]["search"]["mode"] == "match"
    empty = roundtrip(fhir.searchset([], base_url="http://x", self_url="http://x/Flag", total=0))
    assert "entry" not in empty
    assert empty["total"] == 0


def test_operation_outcome() -> None:
    data = roundtrip(fhir.operation_outcome("not-found", "Patient/x is not known"))
    assert data["issue"][0] == {"severity": "error", "code": "not-found", "diagnostics": "Patient/x is not known"}
    with pytest.raises(fhir.MappingError):
        fhir.operation_outcome("nope", "bad code")


def test_capability_statement_lists_every_type() -> None:
    data = roundtrip(fhir.capability_statement("http://x/fhir/R4", "0.1.0", T0))
    assert data["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in data["rest"][0]["resource"]}
    assert types == {s.resource for s in fhir.SEARCHES}
    obs = next(r for r in data["rest"][0]["resource"] if r["type"] == "Observation")
    assert {"name": "patient", "type": "reference"} in obs["searchParam"]
