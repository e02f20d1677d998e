"""FHIR R4 mapping: CareChain's domain records -> validated FHIR resources (pure).

CareChain is the FHIR server regional record systems read from (CARE-RULES.md,
"FHIR R4 mapping"). This module only maps: the route (``api/routes/fhir.py``)
authorises, audits and loads the records; here each record becomes a resource
built with the ``fhir.resources`` model, and building it *is* the validation —
a record that cannot be expressed raises :class:`MappingError` instead of
producing an invalid resource.

``fhir.resources`` 8.x defaults to R5 at the top level; the ``R4B`` subpackage
is the R4 line (FHIR 4.3). Every resource used here (Patient, Device,
DeviceMetric, Observation, Flag, DetectedIssue, MedicationAdministration,
CommunicationRequest, Communication, Task, CareTeam, Consent, AuditEvent,
Bundle, OperationOutcome, CapabilityStatement) has the same structure in R4
4.0.1 and R4B, so the JSON is R4 JSON; the CapabilityStatement says 4.0.1.

Privacy is decided before this module is called: ``patient(..., show_identity=False)``
never emits a name or personal identity number, and the records passed in are
already filtered to what the caller may see.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careteam import CareTeam
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.communicationrequest import CommunicationRequest
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.devicemetric import DeviceMetric
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

FHIR_VERSION = "4.0.1"
BASE = "https://carechain.local/fhir"
#: Identifier system of the pseudonymous resident id (what the stream knows).
SID_RESIDENT = f"{BASE}/sid/resident"
SID_DEVICE = f"{BASE}/sid/device"
SID_USER = f"{BASE}/sid/user"
SID_ORG = f"{BASE}/sid/organisation"
SID_ALERT = f"{BASE}/sid/alert"
SID_DETECTOR = f"{BASE}/sid/detector"
#: Swedish identity numbers (HL7 Sweden base profiles).
SID_PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
SID_SAMORDNINGSNUMMER = "http://electronichealth.se/identifier/samordningsnummer"
PROFILE_SE_PATIENT = "http://hl7.se/fhir/ig/base/StructureDefinition/SEBasePatient"

CS_KIND = f"{BASE}/CodeSystem/reading-kind"
CS_FEATURE = f"{BASE}/CodeSystem/daily-feature"
CS_SCORE = f"{BASE}/CodeSystem/anomaly-score"
CS_DEVICE_TYPE = f"{BASE}/CodeSystem/device-type"
CS_DEVICE_PROPERTY = f"{BASE}/CodeSystem/device-property"
CS_WARNING = f"{BASE}/CodeSystem/warning"
CS_ALERT_KIND = f"{BASE}/CodeSystem/alert-kind"
CS_ALERT_FAMILY = f"{BASE}/CodeSystem/alert-family"
CS_OUTCOME = f"{BASE}/CodeSystem/alert-outcome"
CS_CHANNEL = f"{BASE}/CodeSystem/notification-channel"
CS_DOSE = f"{BASE}/CodeSystem/dose-slot"
CS_CARE_ROLE = f"{BASE}/CodeSystem/care-role"
CS_CONSENT_KIND = f"{BASE}/CodeSystem/consent-kind"
CS_DATA_CATEGORY = f"{BASE}/CodeSystem/data-category"
CS_AUDIT_SUBTYPE = f"{BASE}/CodeSystem/audit-subtype"
CS_PURPOSE = f"{BASE}/CodeSystem/purpose"
CS_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CS_FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
CS_CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CS_CONSENT_CATEGORY = "http://loinc.org"
CS_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CS_AUDIT_TYPE = "http://dicom.nema.org/resources/ontology/DCM"
CS_RESTFUL = "http://hl7.org/fhir/restful-interaction"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

_FHIR_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")


class MappingError(ValueError):
    """A domain record cannot be expressed as a valid FHIR resource."""


# ---------------------------------------------------------------------------
# Ids: FHIR ids allow [A-Za-z0-9-.]{1,64}; CareChain ids may also hold '_' and ':'.


def fhir_id(domain_id: str | int) -> str:
    """A FHIR logical id for a domain id, reversible with :func:`domain_id`.

    Ids that are already valid FHIR ids (and do not start with ``b32-``) pass
    unchanged, so the common case reads naturally; others are base32-encoded.
    """
    s = str(domain_id)
    if _FHIR_ID.match(s) and not s.startswith("b32-"):
        return s
    enc = "b32-" + base64.b32encode(s.encode()).decode().rstrip("=").lower()
    if len(enc) > 64:
        raise MappingError(f"id too long to express in FHIR ({len(s)} characters)")
    return enc


def domain_id(fhir_logical_id: str) -> str:
    """The domain id behind a FHIR logical id (inverse of :func:`fhir_id`)."""
    if not fhir_logical_id.startswith("b32-"):
        return fhir_logical_id
    raw = fhir_logical_id[4:].upper()
    raw += "=" * (-len(raw) % 8)
    try:
        return base64.b32decode(raw).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise MappingError("malformed id") from exc


def is_valid_fhir_id(value: str) -> bool:
    """Whether ``value`` is syntactically a FHIR logical id."""
    return bool(_FHIR_ID.match(value))


# ---------------------------------------------------------------------------
# Domain records (what the storage layer hands over). Plain dataclasses, no I/O.


@dataclass(frozen=True, slots=True)
class ResidentRecord:
    resident_id: str  # pseudonym
    org_id: str | None = None  # organisation responsible (municipality)
    active: bool = True
    # Identity: only set by the caller when the user may see it.
    given_name: str | None = None
    family_name: str | None = None
    personnummer: str | None = None
    birth_date: date | None = None
    gender: str | None = None  # male | female | other | unknown
    monitoring_active: bool | None = None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    device_kind: str  # gateway | robot | motion | door | bed | fall | pulse_oximeter | ...
    resident_id: str | None = None
    gateway_id: str | None = None  # parent gateway (None for a gateway)
    home_id: str | None = None
    room: str | None = None
    online: bool | None = None  # None: unknown
    last_seen: datetime | None = None
    battery_pct: float | None = None
    active: bool = True
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ObservationRecord:
    """A reading, a daily feature or an anomaly score (``category``)."""

    observation_id: str
    resident_id: str
    category: str  # reading | feature | score
    code: str  # reading kind, feature name or detector name
    ts: datetime
    value: bool | float | int | str | None
    unit: str | None = None
    device_id: str | None = None
    period_end: datetime | None = None  # features: the day's end
    detector_version: str | None = None  # scores: the model's version
    threshold: float | None = None  # scores: the alert threshold


@dataclass(frozen=True, slots=True)
class WarningRecord:
    """A lasting warning shown as a Flag ("fall risk", "monitoring degraded")."""

    warning_id: str
    resident_id: str
    kind: str  # fall_risk | monitoring_degraded | ...
    active: bool
    start: datetime
    end: datetime | None = None
    text: str | None = None
    text_sv: str | None = None
    clinical: bool = False  # clinical risk (region) vs welfare/technical


@dataclass(frozen=True, slots=True)
class AlertRecord:
    alert_id: str
    resident_id: str
    kind: str
    family: str  # welfare | clinical | technical
    severity: str  # critical | high | medium | low
    status: str  # open | acknowledged | accepted | dismissed | resolved
    detector: str
    detector_version: str
    reason: str
    reason_sv: str
    created_at: datetime
    event_time: datetime | None = None
    org_id: str | None = None  # responsible organisation
    owner_user: str | None = None  # who acknowledged / owns the intervention
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    ack_deadline: datetime | None = None
    outcome: str | None = None  # true_incident | false_alarm | no_action_needed
    dismiss_reason: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DoseRecord:
    dose_id: str
    resident_id: str
    slot: str  # "08:00"
    status: str  # taken | missed | dispensed | due
    ts: datetime
    robot_device_id: str | None = None
    medication: str | None = None  # text, e.g. "morning dose"


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One delivery attempt of an alert notification (outbox row)."""

    notification_id: str
    alert_id: str
    resident_id: str
    channel: str  # sse | webhook | email
    recipient_org: str | None
    status: str  # pending | sent | delivered | failed
    created_at: datetime
    sent_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CareRelationRecord:
    relation_id: str
    resident_id: str
    user_id: str
    org_id: str
    role: str  # nurse | clinician | ...
    start: datetime
    end: datetime | None = None
    unit: str | None = None
    kind: str | None = None  # care_team | assigned | on_call


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    consent_id: str
    resident_id: str
    kind: str  # sensor | sharing | block
    active: bool
    recorded_at: datetime
    start: datetime | None = None
    end: datetime | None = None
    org_id: str | None = None  # the reading unit/organisation the consent is for
    recorded_by: str | None = None
    method: str | None = None  # written | verbal | representative | ...
    categories: Sequence[str] = field(default_factory=tuple)  # data categories covered/blocked
    basis: str | None = None  # documented basis when the resident cannot decide


@dataclass(frozen=True, slots=True)
class AuditRecord:
    audit_id: str
    at: datetime
    action: str  # read | search | create | update | delete | stream | ...
    resource: str
    outcome: str  # allowed | denied | error
    user_id: str | None = None
    org_id: str | None = None
    role: str | None = None
    resident_id: str | None = None
    purpose: str | None = None  # treatment | emergency | quality | administration
    emergency: bool = False
    reason: str | None = None
    client: str | None = None
    request_id: str | None = None
    basis: str | None = None  # the relation or consent that allowed it


# ---------------------------------------------------------------------------
# Small builders


def _build(model: type[Resource], data: dict[str, Any]) -> Any:
    """Construct (and so validate) a resource; invalid data is a MappingError."""
    try:
        return model(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise MappingError(f"{model.__name__}: {where}: {first.get('msg')}") from exc


def _check_code(name: str, value: str, allowed: Iterable[str]) -> str:
    """Required bindings the model library does not check (status codes)."""
    allowed_set = frozenset(allowed)
    if value not in allowed_set:
        raise MappingError(f"{name} {value!r} not in {sorted(allowed_set)}")
    return value


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise MappingError("naive datetime: every time must carry its offset")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def _concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {"coding": [_coding(system, code, display)]}
    if text:
        cc["text"] = text
    return cc


def patient_ref(resident_id: str) -> dict[str, Any]:
    """Reference to a resident's Patient resource (pseudonymous)."""
    return {"reference": f"Patient/{fhir_id(resident_id)}"}


def device_ref(device_id: str) -> dict[str, Any]:
    return {"reference": f"Device/{fhir_id(device_id)}"}


def _org_ref(org_id: str) -> dict[str, Any]:
    return {"identifier": {"system": SID_ORG, "value": org_id}, "display": org_id}


def _user_ref(user_id: str) -> dict[str, Any]:
    return {"type": "Practitioner", "identifier": {"system": SID_USER, "value": user_id}}


def _detector_ref(detector: str, version: str | None) -> dict[str, Any] | None:
    if not detector:
        return None  # a summarised alert names no detector
    label = f"{detector} {version}" if version else detector
    return {"type": "Device", "identifier": {"system": SID_DETECTOR, "value": detector}, "display": label}


def _period(start: datetime | None, end: datetime | None) -> dict[str, Any] | None:
    p = {k: v for k, v in (("start", _ts(start)), ("end", _ts(end))) if v is not None}
    return p or None


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """Drop empty values: FHIR forbids empty elements."""
    return {k: v for k, v in d.items() if v is not None and v != [] and v != {}}


# ---------------------------------------------------------------------------
# Patient


def patient(r: ResidentRecord, *, show_identity: bool) -> Patient:
    """A resident as a pseudonymous Patient; name and identity number only with ``show_identity``.

    The Swedish base profile is declared: its identifier slicing is open, so a
    Patient identified only by the CareChain pseudonym still conforms.
    """
    identifiers: list[dict[str, Any]] = [{"use": "secondary", "system": SID_RESIDENT, "value": r.resident_id}]
    data: dict[str, Any] = {
        "id": fhir_id(r.resident_id),
        "meta": {"profile": [PROFILE_SE_PATIENT]},
        "active": r.active,
    }
    if show_identity:
        if r.personnummer:
            digits = r.personnummer.replace("-", "").replace("+", "")
            # A day number above 60 marks a samordningsnummer (coordination number).
            day = int(digits[-6:-4]) if len(digits) >= 6 and digits[-6:-4].isdigit() else 0
            system = SID_SAMORDNINGSNUMMER if day > 60 else SID_PERSONNUMMER
            identifiers.insert(0, {"use": "official", "system": system, "value": digits})
        if r.given_name or r.family_name:
            name: dict[str, Any] = {"use": "official"}
            if r.family_name:
                name["family"] = r.family_name
            if r.given_name:
                name["given"] = [r.given_name]
            data["name"] = [name]
        if r.birth_date:
            data["birthDate"] = r.birth_date.isoformat()
        if r.gender:
            data["gender"] = _check_code("gender", r.gender, ("male", "female", "other", "unknown"))
    else:
        data["meta"]["security"] = [
            _coding("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "PSEUDED", "pseudonymized")
        ]
    data["identifier"] = identifiers
    if r.org_id:
        data["managingOrganization"] = _org_ref(r.org_id)
    return _build(Patient, data)


# ---------------------------------------------------------------------------
# Device and DeviceMetric

_DEVICE_LABELS = {
    "gateway": "Home gateway",
    "robot": "Medication robot",
    "motion": "Motion sensor",
    "door": "Door sensor",
    "bed": "Bed sensor",
    "fall": "Fall detector",
    "alarm_button": "Alarm button",
    "pulse_oximeter": "Pulse oximeter",
    "thermometer": "Thermometer",
}


def device(d: DeviceRecord) -> Device:
    """A gateway, sensor or robot; its online status as a device property."""
    label = _DEVICE_LABELS.get(d.device_kind, d.device_kind)
    props: list[dict[str, Any]] = []
    if d.online is not None:
        props.append(
            {
                "type": _concept(CS_DEVICE_PROPERTY, "online-status", "Online status"),
                "valueCode": [_concept(CS_DEVICE_PROPERTY, "online" if d.online else "offline")],
            }
        )
    if d.battery_pct is not None:
        props.append(
            {
                "type": _concept(CS_DEVICE_PROPERTY, "battery", "Battery level"),
                "valueQuantity": [{"value": d.battery_pct, "unit": "%", "system": UCUM, "code": "%"}],
            }
        )
    data = _clean(
        {
            "id": fhir_id(d.device_id),
            "identifier": [{"system": SID_DEVICE, "value": d.device_id}],
            "status": "active" if d.active else "inactive",
            "type": _concept(CS_DEVICE_TYPE, d.device_kind, label),
            "deviceName": [{"name": d.device_id, "type": "user-friendly-name"}],
            "modelNumber": d.model,
            "patient": patient_ref(d.resident_id) if d.resident_id else None,
            "parent": device_ref(d.gateway_id) if d.gateway_id and d.gateway_id != d.device_id else None,
            "property": props,
            "note": [{"text": f"room: {d.room}"}] if d.room else None,
        }
    )
    return _build(Device, data)


def _child_id(parent_id: str, suffix: str) -> str:
    base = fhir_id(parent_id)
    if len(base) + len(suffix) + 1 <= 64:
        return f"{base}-{suffix}"
    return fhir_id(f"{parent_id}#{suffix}")


def device_metrics(d: DeviceRecord) -> list[DeviceMetric]:
    """The device's connectivity (operationalStatus on/off) and battery as DeviceMetric resources."""
    online: dict[str, Any] = {
        "id": _child_id(d.device_id, "online"),
        "type": _concept(CS_DEVICE_PROPERTY, "online-status", "Online status"),
        "source": device_ref(d.device_id),
        "category": "unspecified",
    }
    if d.online is not None:
        online["operationalStatus"] = "on" if d.online else "off"
    out = [_build(DeviceMetric, online)]
    if d.battery_pct is not None:
        battery = {
            "id": _child_id(d.device_id, "battery"),
            "type": _concept(CS_DEVICE_PROPERTY, "battery", "Battery level"),
            "unit": _concept(UCUM, "%"),
            "source": device_ref(d.device_id),
            "operationalStatus": "on",
            "category": "measurement",
        }
        out.append(_build(DeviceMetric, battery))
    return out


# ---------------------------------------------------------------------------
# Observation

#: Vital signs get LOINC codes and the vital-signs category (region systems know these).
_VITALS: dict[str, tuple[str, str, str]] = {
    "heart_rate": ("8867-4", "Heart rate", "/min"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "temperature": ("8310-5", "Body temperature", "Cel"),
}
_UCUM_OF = {"bpm": "/min", "%": "%", "Cel": "Cel", "/min": "/min", "h": "h", "min": "min", "1": "1"}


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q["unit"] = unit
        ucum = _UCUM_OF.get(unit)
        if ucum:
            q["system"] = UCUM
            q["code"] = ucum
    return q


def observation(o: ObservationRecord) -> Observation:
    """A reading, a daily feature or an anomaly score (with the model as its device)."""
    data: dict[str, Any] = {
        "id": fhir_id(o.observation_id),
        "status": "final",
        "subject": patient_ref(o.resident_id),
        "issued": _ts(o.ts),
    }
    if o.category == "reading":
        if o.code in _VITALS:
            loinc, display, ucum = _VITALS[o.code]
            data["category"] = [_concept(CS_OBS_CATEGORY, "vital-signs", "Vital Signs")]
            data["code"] = {"coding": [_coding(LOINC, loinc, display), _coding(CS_KIND, o.code)], "text": display}
            if isinstance(o.value, bool) or not isinstance(o.value, int | float):
                raise MappingError(f"{o.code} reading needs a number")
            data["valueQuantity"] = {"value": o.value, "unit": ucum, "system": UCUM, "code": ucum}
        else:
            data["category"] = [_concept(CS_OBS_CATEGORY, "activity", "Activity")]
            data["code"] = _concept(CS_KIND, o.code, text=o.code)
            data.update(_value(o.value, o.unit))
        data["effectiveDateTime"] = _ts(o.ts)
        if o.device_id:
            data["device"] = device_ref(o.device_id)
    elif o.category == "feature":
        data["category"] = [_concept(CS_OBS_CATEGORY, "activity", "Activity")]
        data["code"] = _concept(CS_FEATURE, o.code, text=o.code.replace("_", " "))
        data.update(_value(o.value, o.unit))
        if o.period_end:
            data["effectivePeriod"] = _period(o.ts, o.period_end)
        else:
            data["effectiveDateTime"] = _ts(o.ts)
    elif o.category == "score":
        data["category"] = [_concept(CS_OBS_CATEGORY, "survey", "Survey")]
        data["code"] = _concept(CS_SCORE, o.code, text=f"anomaly score ({o.code})")
        if isinstance(o.value, bool) or not isinstance(o.value, int | float):
            raise MappingError("an anomaly score needs a number")
        data["valueQuantity"] = {"value": o.value, "system": UCUM, "code": "1", "unit": "score"}
        data["effectiveDateTime"] = _ts(o.ts)
        # The model is the provenance: the Observation's device is the detector, with its version.
        data["device"] = _detector_ref(o.code, o.detector_version)
        data["method"] = _concept(SID_DETECTOR, o.code, text=f"{o.code} {o.detector_version or ''}".strip())
        if o.threshold is not None:
            data["referenceRange"] = [{"high": {"value": o.threshold}, "text": "alert threshold"}]
            high = o.value > o.threshold
            data["interpretation"] = [
                _concept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H" if high else "N")
            ]
    else:
        raise MappingError(f"unknown observation category {o.category!r}")
    return _build(Observation, _clean(data))


def _value(value: bool | float | int | str | None, unit: str | None) -> dict[str, Any]:
    if value is None:
        return {"dataAbsentReason": _concept("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown")}
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int | float):
        return {"valueQuantity": _quantity(value, unit)}
    return {"valueString": str(value)}


# ---------------------------------------------------------------------------
# Flag (lasting warnings) and DetectedIssue (medication problems only)

_WARNING_TEXT = {
    "fall_risk": ("Fall risk", "Fallrisk"),
    "monitoring_degraded": ("Monitoring degraded", "Övervakningen är försämrad"),
    "decline": ("Slow decline", "Långsam försämring"),
}


def flag(w: WarningRecord) -> Flag:
    """A lasting warning: fall risk (clinical), monitoring degraded (technical), ..."""
    en, sv = _WARNING_TEXT.get(w.kind, (w.kind.replace("_", " "), w.kind.replace("_", " ")))
    category = "clinical" if w.clinical else "safety"
    data = _clean(
        {
            "id": fhir_id(w.warning_id),
            "status": "active" if w.active else "inactive",
            "category": [_concept(CS_FLAG_CATEGORY, category)],
            "code": _concept(CS_WARNING, w.kind, en, text=w.text_sv or sv),
            "subject": patient_ref(w.resident_id),
            "period": _period(w.start, w.end),
        }
    )
    return _build(Flag, data)


MEDICATION_ALERT_KINDS = frozenset({"dose_missed", "dose_overdue", "robot_fault", "refill_needed", "medication_fault"})
_ISSUE_SEVERITY = {"critical": "high", "high": "high", "medium": "moderate", "low": "low"}


def detected_issue(a: AlertRecord) -> DetectedIssue:
    """A medication problem (missed dose, robot fault, refill needed) as a DetectedIssue."""
    if a.kind not in MEDICATION_ALERT_KINDS:
        raise MappingError(f"DetectedIssue is for medication problems only, not {a.kind!r}")
    status = "final" if a.status in ("resolved", "dismissed") else "preliminary"
    data = _clean(
        {
            "id": fhir_id(a.alert_id),
            "identifier": [{"system": SID_ALERT, "value": a.alert_id}],
            "status": status,
            "code": _concept(CS_ALERT_KIND, a.kind, text=a.reason_sv),
            "severity": _ISSUE_SEVERITY.get(a.severity, "moderate"),
            "patient": patient_ref(a.resident_id),
            "identifiedDateTime": _ts(a.event_time or a.created_at),
            "author": _detector_ref(a.detector, a.detector_version),
            "detail": a.reason,
        }
    )
    return _build(DetectedIssue, data)


# ---------------------------------------------------------------------------
# MedicationAdministration

_DOSE_STATUS = {"taken": "completed", "missed": "not-done", "dispensed": "in-progress", "due": "in-progress"}


def medication_administration(d: DoseRecord) -> MedicationAdministration:
    """A dose taken (completed) or not taken (not-done), the robot as performer and device."""
    status = _DOSE_STATUS.get(d.status)
    if status is None:
        raise MappingError(f"unknown dose status {d.status!r}")
    data: dict[str, Any] = {
        "id": fhir_id(d.dose_id),
        "status": status,
        "medicationCodeableConcept": _concept(CS_DOSE, d.slot, text=d.medication or f"dose {d.slot}"),
        "subject": patient_ref(d.resident_id),
        "effectiveDateTime": _ts(d.ts),
    }
    if d.status == "missed":
        data["statusReason"] = [_concept(f"{BASE}/CodeSystem/dose-not-done", "not-taken", text="dose not taken")]
    if d.robot_device_id:
        data["performer"] = [{"actor": device_ref(d.robot_device_id)}]
        data["device"] = [device_ref(d.robot_device_id)]
    return _build(MedicationAdministration, data)


# ---------------------------------------------------------------------------
# Alerts: CommunicationRequest (the notification), Communication (its delivery), Task (intervention)

_PRIORITY = {"critical": "stat", "high": "urgent", "medium": "asap", "low": "routine"}


def communication_request(a: AlertRecord) -> CommunicationRequest:
    """An alert as a request to notify the responsible organisation, explained in one sentence."""
    status = "active" if a.status in ("open", "acknowledged", "accepted") else "completed"
    data = _clean(
        {
            "id": fhir_id(a.alert_id),
            "identifier": [{"system": SID_ALERT, "value": a.alert_id}],
            "status": status,
            "category": [
                _concept(CS_ALERT_FAMILY, a.family),
                _concept(CS_ALERT_KIND, a.kind),
            ],
            "priority": _PRIORITY.get(a.severity, "routine"),
            "subject": patient_ref(a.resident_id),
            "payload": [{"contentString": a.reason_sv}, {"contentString": a.reason}],
            "occurrenceDateTime": _ts(a.event_time),
            "authoredOn": _ts(a.created_at),
            "requester": _detector_ref(a.detector, a.detector_version),
            "recipient": [_org_ref(a.org_id)] if a.org_id else None,
            "reasonCode": [_concept(CS_ALERT_KIND, a.kind, text=a.reason)],
        }
    )
    return _build(CommunicationRequest, data)


_COMM_STATUS = {
    "pending": "preparation",
    "sending": "in-progress",
    "sent": "completed",
    "delivered": "completed",
    "failed": "stopped",
}


def communication(n: NotificationRecord) -> Communication:
    """One delivery of an alert notification (SSE, webhook, e-mail)."""
    status = _COMM_STATUS.get(n.status)
    if status is None:
        raise MappingError(f"unknown notification status {n.status!r}")
    data = _clean(
        {
            "id": fhir_id(n.notification_id),
            "basedOn": [{"reference": f"CommunicationRequest/{fhir_id(n.alert_id)}"}],
            "status": status,
            "statusReason": _concept(f"{BASE}/CodeSystem/delivery-error", "failed", text=n.error)
            if n.status == "failed"
            else None,
            "medium": [_concept(CS_CHANNEL, n.channel)],
            "subject": patient_ref(n.resident_id),
            "sent": _ts(n.sent_at),
            "recipient": [_org_ref(n.recipient_org)] if n.recipient_org else None,
        }
    )
    return _build(Communication, data)


#: Alert lifecycle (CARE-RULES: proposed -> acknowledged -> accepted|dismissed -> resolved) -> Task.status.
TASK_STATUS = {
    "open": "requested",
    "acknowledged": "received",
    "accepted": "in-progress",
    "dismissed": "rejected",
    "resolved": "completed",
}


def task(a: AlertRecord) -> Task:
    """The nurse's intervention for an alert: owner, status, deadline (to acknowledge), outcome."""
    status = TASK_STATUS.get(a.status)
    if status is None:
        raise MappingError(f"unknown alert status {a.status!r}")
    output = []
    if a.outcome:
        output.append({"type": {"text": "outcome"}, "valueCodeableConcept": _concept(CS_OUTCOME, a.outcome)})
    data = _clean(
        {
            "id": fhir_id(a.alert_id),
            "identifier": [{"system": SID_ALERT, "value": a.alert_id}],
            "basedOn": [{"reference": f"CommunicationRequest/{fhir_id(a.alert_id)}"}],
            "status": status,
            "statusReason": {"text": a.dismiss_reason} if a.dismiss_reason else None,
            "businessStatus": {"text": a.status},
            "intent": "order",
            "priority": _PRIORITY.get(a.severity, "routine"),
            "code": _concept(CS_ALERT_KIND, a.kind),
            "description": a.reason_sv,
            "for": patient_ref(a.resident_id),
            "authoredOn": _ts(a.created_at),
            "lastModified": _ts(a.updated_at or a.resolved_at or a.acknowledged_at or a.created_at),
            "requester": _detector_ref(a.detector, a.detector_version),
            "owner": _user_ref(a.owner_user) if a.owner_user else (_org_ref(a.org_id) if a.org_id else None),
            "restriction": {"period": {"end": _ts(a.ack_deadline)}} if a.ack_deadline else None,
            "executionPeriod": _period(a.acknowledged_at, a.resolved_at),
            "output": output,
        }
    )
    return _build(Task, data)


# ---------------------------------------------------------------------------
# CareTeam (care relations), Consent, AuditEvent


def care_team(r: CareRelationRecord, now: datetime) -> CareTeam:
    """One care relation as a CareTeam of one participant, active only within its period."""
    active = r.start <= now and (r.end is None or now < r.end)
    data = _clean(
        {
            "id": fhir_id(r.relation_id),
            "status": "active" if active else "inactive",
            "category": [_concept(CS_CARE_ROLE, r.kind or "care_team")],
            "subject": patient_ref(r.resident_id),
            "period": _period(r.start, r.end),
            "participant": [
                _clean(
                    {
                        "role": [_concept(CS_CARE_ROLE, r.role)],
                        "member": _user_ref(r.user_id),
                        "onBehalfOf": _org_ref(r.org_id),
                        "period": _period(r.start, r.end),
                    }
                )
            ],
            "managingOrganization": [_org_ref(r.org_id)],
            "note": [{"text": f"unit: {r.unit}"}] if r.unit else None,
        }
    )
    return _build(CareTeam, data)


_CONSENT_SCOPE = {"sensor": "treatment", "sharing": "patient-privacy", "block": "patient-privacy"}


def consent(c: ConsentRecord, now: datetime) -> Consent:
    """Sensor consent (treatment), sharing consent (permit) and blocks (deny) as Consent."""
    scope = _CONSENT_SCOPE.get(c.kind)
    if scope is None:
        raise MappingError(f"unknown consent kind {c.kind!r}")
    expired = c.end is not None and c.end <= now
    status = "active" if c.active and not expired else "inactive"
    provision: dict[str, Any] = {
        "type": "deny" if c.kind == "block" else "permit",
        "period": _period(c.start, c.end),
        "actor": [
            {
                "role": _concept(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient"
                ),
                "reference": _org_ref(c.org_id),
            }
        ]
        if c.org_id
        else None,
        "class": [_coding(CS_DATA_CATEGORY, cat) for cat in c.categories] or None,
    }
    data = _clean(
        {
            "id": fhir_id(c.consent_id),
            "status": status,
            "scope": _concept(CS_CONSENT_SCOPE, scope),
            "category": [_concept(CS_CONSENT_KIND, c.kind), _concept(CS_CONSENT_CATEGORY, "59284-0", "Consent")],
            "patient": patient_ref(c.resident_id),
            "dateTime": _ts(c.recorded_at),
            "performer": [_user_ref(c.recorded_by)] if c.recorded_by else None,
            "organization": [_org_ref(c.org_id)] if c.org_id else None,
            # A documented basis stands in for consent when the resident cannot decide (CARE-RULES).
            "policyRule": _concept(f"{BASE}/CodeSystem/consent-basis", c.basis or c.method or "informed-consent"),
            "provision": _clean(provision),
        }
    )
    return _build(Consent, data)


_AUDIT_ACTION = {"read": "R", "search": "E", "stream": "R", "create": "C", "update": "U", "delete": "D"}
_AUDIT_OUTCOME = {"allowed": "0", "denied": "4", "error": "8"}
_PURPOSE = {
    "treatment": ("TREAT", "treatment"),
    "emergency": ("ETREAT", "emergency treatment"),
    "quality": ("HQUALIMP", "health quality improvement"),
    "administration": ("HOPERAT", "healthcare operations"),
}


def audit_event(e: AuditRecord) -> AuditEvent:
    """An access-log row as AuditEvent; an emergency override is its own subtype."""
    subtypes = [_coding(CS_AUDIT_SUBTYPE, e.action)]
    if e.action in ("read", "search"):
        subtypes.append(_coding(CS_RESTFUL, "read" if e.action == "read" else "search-type"))
    if e.emergency:
        subtypes.append(_coding(CS_AUDIT_SUBTYPE, "emergency-override", "Emergency access override"))
    purpose = []
    if e.purpose:
        code, display = _PURPOSE.get(e.purpose, (e.purpose, e.purpose))
        system = CS_ACT_REASON if e.purpose in _PURPOSE else CS_PURPOSE
        purpose.append(_concept(system, code, display))
    agent = _clean(
        {
            "type": _concept(CS_CARE_ROLE, e.role) if e.role else None,
            "who": _user_ref(e.user_id) if e.user_id else {"display": e.client or "unknown"},
            "altId": e.client,
            "requestor": True,
            "purposeOfUse": purpose,
        }
    )
    entities: list[dict[str, Any]] = []
    if e.resident_id:
        entities.append(
            {
                "what": patient_ref(e.resident_id),
                "type": _coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person"),
            }
        )
    entities.append(
        _clean(
            {
                "what": {"display": e.resource},
                "description": e.basis,
                "detail": [{"type": "request-id", "valueString": e.request_id}] if e.request_id else None,
            }
        )
    )
    data = _clean(
        {
            "id": fhir_id(e.audit_id),
            "type": _coding(CS_AUDIT_TYPE, "110110", "Patient Record"),
            "subtype": subtypes,
            "action": _AUDIT_ACTION.get(e.action, "E"),
            "recorded": _ts(e.at),
            "outcome": _AUDIT_OUTCOME.get(e.outcome, "8"),
            "outcomeDesc": e.reason or e.outcome,
            "purposeOfEvent": purpose,
            "agent": [agent],
            "source": {"observer": {"display": "carechain-api"}, "site": e.org_id},
            "entity": entities,
        }
    )
    return _build(AuditEvent, data)


# ---------------------------------------------------------------------------
# Bundle, OperationOutcome, CapabilityStatement

_ISSUE_CODES = frozenset(
    {
        "invalid",
        "structure",
        "required",
        "value",
        "security",
        "login",
        "forbidden",
        "not-found",
        "not-supported",
        "processing",
        "exception",
        "too-costly",
        "throttled",
        "unknown",
        "deleted",
        "incomplete",
    }
)


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> OperationOutcome:
    """An error as FHIR expects it; ``code`` from the issue-type value set (e.g. not-found, forbidden)."""
    _check_code("issue code", code, _ISSUE_CODES)
    _check_code("severity", severity, ("fatal", "error", "warning", "information"))
    return _build(OperationOutcome, {"issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]})


def searchset(
    resources: Sequence[Resource],
    *,
    base_url: str,
    self_url: str,
    next_url: str | None = None,
    prev_url: str | None = None,
    total: int | None = None,
) -> Bundle:
    """A searchset Bundle with self/next/previous paging links."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    if prev_url:
        links.append({"relation": "previous", "url": prev_url})
    entries = [
        {
            "fullUrl": f"{base_url.rstrip('/')}/{r.get_resource_type()}/{r.id}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    data: dict[str, Any] = {"type": "searchset", "link": links, "timestamp": _ts(datetime.now(UTC))}
    if entries:
        data["entry"] = entries
    if total is not None:
        data["total"] = total
    return _build(Bundle, data)


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """What the server supports for one resource type."""

    resource: str
    params: Mapping[str, str]  # name -> FHIR search param type (reference, date, token, number)
    doc: str


#: Resource types served and their search parameters; the route and the CapabilityStatement share it.
SEARCHES: tuple[SearchSpec, ...] = (
    SearchSpec("Patient", {"_id": "token", "identifier": "token"}, "Residents (pseudonymous)."),
    SearchSpec("Device", {"patient": "reference"}, "Gateways, sensors, robots with online status."),
    SearchSpec("DeviceMetric", {"source": "reference"}, "Connectivity and battery of a device."),
    SearchSpec(
        "Observation",
        {"patient": "reference", "date": "date", "category": "token", "code": "token", "_count": "number"},
        "Readings, daily features, anomaly scores.",
    ),
    SearchSpec("Flag", {"patient": "reference", "status": "token"}, "Lasting warnings."),
    SearchSpec("DetectedIssue", {"patient": "reference", "date": "date"}, "Medication problems."),
    SearchSpec("MedicationAdministration", {"patient": "reference", "date": "date"}, "Doses taken or not done."),
    SearchSpec("CommunicationRequest", {"patient": "reference", "date": "date"}, "Alert notifications."),
    SearchSpec("Communication", {"patient": "reference"}, "Deliveries of alert notifications."),
    SearchSpec("Task", {"patient": "reference", "status": "token"}, "The nurse's intervention per alert."),
    SearchSpec("CareTeam", {"patient": "reference"}, "Care relations."),
    SearchSpec("Consent", {"patient": "reference"}, "Sensor consent, sharing consent and blocks."),
    SearchSpec("AuditEvent", {"patient": "reference", "date": "date"}, "The access log (auditors)."),
)


def capability_statement(base_url: str, software_version: str, now: datetime) -> CapabilityStatement:
    """What this server offers: read and search per resource type, JSON only, bearer tokens."""
    resources = [
        {
            "type": s.resource,
            "documentation": s.doc,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": n, "type": t} for n, t in s.params.items() if n != "_count"],
        }
        for s in SEARCHES
    ]
    data = {
        "status": "active",
        "date": _ts(now),
        "publisher": "CareChain",
        "kind": "instance",
        "software": {"name": "CareChain", "version": software_version},
        "implementation": {"description": "CareChain FHIR R4 read API", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Every call needs a bearer token; every access rule applies; every read is audited.",
                "security": {
                    "cors": False,
                    "service": [
                        _concept("http://terminology.hl7.org/CodeSystem/restful-security-service", "OAuth", "OAuth")
                    ],
                    "description": "OIDC/JWT bearer tokens; care relation, consent and blocks enforced per resident.",
                },
                "resource": resources,
            }
        ],
    }
    return _build(CapabilityStatement, data)


def to_json(resource: Resource) -> str:
    """Serialise a resource as compact FHIR JSON (no empty elements)."""
    return str(resource.model_dump_json(exclude_none=True))
