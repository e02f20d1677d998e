"""Request and response models of the API (pydantic at the edge), with OpenAPI examples."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from api.access import EMERGENCY_REASON_CODES, Category

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
CategoryName = Literal["alerts", "sensor_events", "medication", "clinical", "identity", "notes"]
assert set(CategoryName.__args__) == {c.value for c in Category}  # type: ignore[attr-defined]


class Organisation(BaseModel):
    id: str = Field(examples=["kommun-uppsala"])
    name: str = Field(examples=["Uppsala kommun"])
    kind: Literal["kommun", "region"] = Field(examples=["kommun"])


class ResidentSummary(BaseModel):
    """Pseudonymous: no name, no personnummer."""

    id: str = Field(examples=["r-7f3a9c"])
    home_id: str | None = Field(default=None, examples=["h-0012"])
    kommun_org_id: str = Field(examples=["kommun-uppsala"])
    region_org_id: str = Field(examples=["region-uppsala"])
    open_alerts: int = Field(default=0, examples=[1])


class ResidentIdentity(BaseModel):
    """A resident with identity: only for users with a care relation (or emergency access)."""

    id: str = Field(examples=["r-7f3a9c"])
    home_id: str | None = Field(default=None, examples=["h-0012"])
    kommun_org_id: str = Field(examples=["kommun-uppsala"])
    region_org_id: str = Field(examples=["region-uppsala"])
    name: str | None = Field(default=None, examples=["Astrid Andersson"])
    personnummer: str | None = Field(default=None, examples=["19121212-1212"])
    basis: str | None = Field(default=None, description="what allowed this read", examples=["relation:12"])


class ResidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    home_id: str = Field(pattern=ID_PATTERN, examples=["h-0012"])
    name: str = Field(min_length=1, max_length=200, examples=["Astrid Andersson"])
    personnummer: str = Field(
        min_length=10, max_length=13, examples=["19121212-1212"], description="personnummer or samordningsnummer"
    )
    id: str | None = Field(default=None, pattern=ID_PATTERN, description="pseudonymous id; generated when absent")


class EmergencyUnits(BaseModel):
    resident_id: str = Field(examples=["r-7f3a9c"])
    units: list[dict[str, Any]] = Field(examples=[[{"org_id": "kommun-uppsala", "unit": None, "owner": True}]])
    reason_codes: dict[str, str] = Field(examples=[EMERGENCY_REASON_CODES])


class EmergencyOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=10, max_length=2000, examples=["Found unconscious at home; needs medication list"])
    reason_code: Literal["life_threatening", "unconscious", "urgent_care"] = Field(examples=["unconscious"])


class EmergencyAccessOut(BaseModel):
    id: int = Field(examples=[7])
    resident_id: str = Field(examples=["r-7f3a9c"])
    user_id: str = Field(examples=["nurse-1"])
    org_id: str = Field(examples=["region-uppsala"])
    reason_code: str = Field(examples=["unconscious"])
    opened_at: datetime
    expires_at: datetime
    review_status: str = Field(examples=["pending"])


class CareRelationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=128, examples=["nurse-1"])
    org_id: str = Field(pattern=ID_PATTERN, examples=["kommun-uppsala"])
    unit: str | None = Field(default=None, max_length=128, examples=["hemtjanst-norr"])
    resident_id: str = Field(pattern=ID_PATTERN, examples=["r-7f3a9c"])
    kind: Literal["care_team", "assigned_case", "on_call"] = Field(examples=["care_team"])
    valid_from: datetime | None = None
    valid_to: datetime | None = Field(default=None, examples=["2027-06-30T00:00:00+02:00"])


class CareRelationOut(BaseModel):
    id: int = Field(examples=[12])
    user_id: str
    org_id: str
    unit: str | None
    resident_id: str
    kind: str
    valid_from: datetime
    valid_to: datetime | None
    created_by: str
    created_at: datetime


class SharingConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reader_org_id: str = Field(pattern=ID_PATTERN, examples=["region-uppsala"])
    reader_unit: str | None = Field(default=None, max_length=128, examples=["vardcentral-gottsunda"])
    categories: list[CategoryName] = Field(min_length=1, examples=[["alerts", "clinical"]])
    mode: Literal["joint_documentation", "disclosure"] = Field(examples=["joint_documentation"])
    legal_basis: Literal["consent", "documented_basis", "law"] = Field(examples=["consent"])
    basis_note: str | None = Field(
        default=None, max_length=2000, description="required for documented_basis (resident cannot decide)"
    )
    valid_from: datetime | None = None
    valid_to: datetime = Field(examples=["2027-11-23T00:00:00+01:00"], description="consent is always time-limited")
    method: Literal["verbal", "written", "digital", "representative"] = Field(examples=["written"])


class SharingConsentOut(BaseModel):
    id: int
    resident_id: str
    owner_org_id: str
    reader_org_id: str
    reader_unit: str | None
    categories: list[str]
    mode: str
    legal_basis: str
    basis_note: str | None
    valid_from: datetime
    valid_to: datetime
    recorded_by: str
    method: str
    recorded_at: datetime
    withdrawn_at: datetime | None
    withdrawn_by: str | None


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: CategoryName | None = Field(default=None, examples=["clinical"])
    org_id: str | None = Field(default=None, pattern=ID_PATTERN, examples=[None])
    unit: str | None = Field(default=None, max_length=128, examples=[None])
    valid_to: datetime | None = None


class BlockOut(BaseModel):
    id: int
    resident_id: str
    category: str | None
    org_id: str | None
    unit: str | None
    valid_from: datetime
    valid_to: datetime | None
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None


class MonitoringConsentIn(BaseModel):
    """The consent (or, for a resident who cannot decide, the documented basis) of one person in the home."""

    model_config = ConfigDict(extra="forbid")
    subject: Literal["resident", "cohabitant"] = Field(examples=["resident"])
    subject_ref: str = Field(
        pattern=ID_PATTERN,
        description="the resident's id, or a pseudonymous reference of the person living with them",
        examples=["r-7f3a9c"],
    )
    basis: Literal["consent", "documented_basis"] = Field(default="consent", examples=["consent"])
    basis_note: str | None = Field(default=None, max_length=2000)
    method: Literal["written", "verbal_witnessed", "digital", "representative"] = Field(examples=["written"])
    valid_to: datetime | None = None


class MonitoringConsentOut(BaseModel):
    id: int
    home_id: str
    subject: str
    subject_ref: str
    basis: str
    basis_note: str | None
    method: str
    given_at: datetime
    valid_from: datetime
    valid_to: datetime | None
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    recorded_by: str


class MonitoringStatus(BaseModel):
    home_id: str = Field(examples=["h-0012"])
    active: bool = Field(description="monitoring runs only with every person's consent or documented basis")
    missing: list[str] = Field(examples=[["1 person(s) living with the resident"]])
    devices: int = 0
    devices_monitored: int = 0


class CarePlanBody(BaseModel):
    """The care plan as ``carechain.care_plan.CarePlan.to_dict()`` (unknown keys are refused)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "timezone": "Europe/Stockholm",
                    "day_start": "07:00",
                    "day_end": "22:00",
                    "night_start": "22:00",
                    "night_end": "06:00",
                    "inactivity_limit_min": 120,
                    "usual_wake": "08:00",
                    "wake_margin_min": 60,
                    "doses": [{"slot": "08:00", "grace_min": 30}, {"slot": "20:00", "grace_min": 30}],
                    "vitals": {"heart_rate": [45, 120], "spo2_min": 90, "temperature": [35.5, 38.0]},
                    "battery_low_pct": 15,
                    "gateway_silence_s": 45,
                    "device_silence_min": 180,
                    "paused_detectors": [],
                }
            ]
        },
    )
    timezone: str | None = None
    day_start: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    day_end: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    night_start: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    night_end: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    inactivity_limit_min: int | None = Field(default=None, ge=10, le=24 * 60)
    usual_wake: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    wake_margin_min: int | None = Field(default=None, ge=0, le=600)
    doses: list[dict[str, Any]] | None = None
    vitals: dict[str, Any] | None = None
    battery_low_pct: float | None = Field(default=None, ge=0, le=100)
    gateway_silence_s: int | None = Field(default=None, ge=15, le=3600)
    device_silence_min: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    paused_detectors: list[str] | None = None


class CarePlanOut(BaseModel):
    resident_id: str = Field(examples=["r-7f3a9c"])
    plan: dict[str, Any]
    version: int | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None


class Alert(BaseModel):
    """An alert as the caller may see it (clinical-family alerts are a neutral "needs a visit" without
    CLINICAL scope)."""

    model_config = ConfigDict(extra="allow")
    id: int | str = Field(examples=[1042])
    resident_id: str = Field(examples=["r-7f3a9c"])
    kind: str = Field(examples=["fall"])
    family: str = Field(examples=["welfare"])
    severity: str | None = Field(default=None, examples=["critical"])
    status: str | None = Field(default=None, examples=["proposed"])
    reason: str | None = Field(default=None, examples=["A fall was detected in the bedroom."])
    reason_sv: str | None = Field(default=None, examples=["Ett fall upptäcktes i sovrummet."])
    summary_only: bool = False


class DismissIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, examples=["Resident was at the day centre"])


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["true_incident", "false_alarm", "no_action_needed"] = Field(examples=["true_incident"])
    comment: str | None = Field(default=None, max_length=4000, examples=["Helped her up; no injury"])


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000, examples=["Called her daughter"])


class ActionResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    alert_id: int | str = Field(examples=[1042])
    status: str | None = Field(default=None, examples=["acknowledged"])


class Observation(BaseModel):
    model_config = ConfigDict(extra="allow")
    ts: datetime
    kind: str = Field(examples=["heart_rate"])
    value: Any = Field(examples=[72])


class Bucket(BaseModel):
    model_config = ConfigDict(extra="allow")
    bucket: datetime
    kind: str | None = Field(default=None, examples=["heart_rate"])


class AuditRow(BaseModel):
    id: int
    at: datetime
    at_local: str
    user_id: str | None
    org_id: str | None
    unit: str | None
    role: str | None
    client: str | None
    on_behalf_of: str | None
    action: str = Field(examples=["GET /v1/residents/{resident_id}"])
    resource: str = Field(examples=["resident/identity"])
    resident_id: str | None
    purpose: str = Field(examples=["treatment"])
    outcome: str = Field(examples=["allowed"])
    basis: str | None = Field(examples=["relation:12"])
    emergency: bool
    request_id: str | None
    prev_hash: str
    hash: str


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    picked_by: str = Field(pattern=r"^(random|rule:[a-z_]+)$", examples=["rule:emergency"])
    audit_ids: list[int] = Field(min_length=1, max_length=1000, examples=[[101, 102]])
    verdict: Literal["ok", "unjustified", "needs_follow_up"] = Field(examples=["ok"])
    note: str | None = Field(default=None, max_length=4000)


class ReviewOut(BaseModel):
    id: int
    reviewer: str
    picked_by: str
    audit_ids: list[int]
    verdict: str
    note: str | None
    at: datetime


class WhoLooked(BaseModel):
    at: datetime
    at_local: str
    org_id: str | None
    org_name: str | None
    unit: str | None
    purpose: str
    emergency: bool


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool = Field(examples=[True])
    reason: str = Field(min_length=3, max_length=2000, examples=["Under review after false alarms"])


class PauseOut(BaseModel):
    detector: str
    resident_id: str | None
    paused: bool
    reason: str
    changed_by: str
    changed_at: datetime


class RegisterEntry(BaseModel):
    name: str = Field(examples=["fall"])
    family: str = Field(examples=["welfare"])
    version: str = Field(examples=["1.0.0"])
    purpose: str
    kind: str = Field(examples=["rule"])
    warm_up: str | None = None
    feedback: str | None = None
    inputs: list[str] = []
    paused_globally: bool = False
    paused_residents: int = 0
    evaluation: dict[str, Any] | None = None
    per_site: list[dict[str, Any]] = Field(
        default=[],
        examples=[[{"org_id": "kommun-uppsala", "alerts_per_resident_week": 0.25, "dismiss_rate": 0.4}]],
    )


_ANY = TypeAdapter(Any)


def json_response(value: Any, status_code: int = 200) -> Response:
    """Serialise once (pydantic-core) and return it; FastAPI then skips validating the value again against
    the route's ``response_model`` (which still documents the shape in OpenAPI)."""
    body = value.model_dump_json() if isinstance(value, BaseModel) else _ANY.dump_json(value)
    return Response(body, status_code=status_code, media_type="application/json")
