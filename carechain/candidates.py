"""Alert candidates and nurse feedback: what the stream worker proposes and learns from.

An alert is a proposal to a human (CARE-RULES.md, "human oversight"). Every
candidate explains itself: detector and version, evidence, severity, an
incident key for deduplication and a one-sentence reason a nurse understands.
Pure: travels as JSON on Kafka ``alerts`` (key = resident id) and ``feedback``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class Family(StrEnum):
    """Welfare/safety rules are kept apart from clinical risk models (AI Act)."""

    WELFARE = "welfare"  # fall, inactivity, door at night, medication, device offline
    CLINICAL = "clinical"  # learned: infection signs, decline, vitals anomaly, rhythm
    TECHNICAL = "technical"  # gateway/device silent, low battery, canary


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class CandidateState(StrEnum):
    FIRING = "firing"  # the condition holds
    CLEARED = "cleared"  # the condition ended (e.g. the resident moves again)


class Outcome(StrEnum):
    """A nurse's verdict on an alert, sent back to the stream worker."""

    TRUE_INCIDENT = "true_incident"
    FALSE_ALARM = "false_alarm"
    NO_ACTION_NEEDED = "no_action_needed"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a detector fired: enough to explain it and to audit it."""

    features: dict[str, float | int | str | None] = field(default_factory=dict)
    score: float | None = None
    threshold: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    event_ids: list[str] = field(default_factory=list)
    contributing: list[str] = field(default_factory=list)  # main features, in words
    data_quality: list[str] = field(default_factory=list)  # e.g. "sensor offline"


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """One detector's proposal (or clearing) for one incident of one resident."""

    resident_id: str
    home_id: str
    kind: str  # e.g. fall, inactivity, night_wandering, dose_missed, gateway_silent
    family: Family
    severity: Severity
    detector: str
    detector_version: str
    incident_key: str  # same incident -> same key; the alert service dedups on it
    state: CandidateState
    event_time: datetime  # when the condition began (event time)
    detected_at: datetime  # when the monitor decided (event or processing time)
    reason: str  # one sentence, English
    reason_sv: str  # one sentence, Swedish (carers work in Swedish)
    evidence: Evidence = field(default_factory=Evidence)
    v: int = SCHEMA_VERSION

    @property
    def candidate_id(self) -> str:
        """Unique per incident and state: a replayed candidate has the same id."""
        return f"{self.incident_key}#{self.state.value}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_time"] = self.event_time.isoformat()
        d["detected_at"] = self.detected_at.isoformat()
        ev = d["evidence"]
        for k in ("window_start", "window_end"):
            if ev[k] is not None:
                ev[k] = ev[k].isoformat()
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> AlertCandidate:
        d = json.loads(raw)
        if d.get("v") != SCHEMA_VERSION:
            raise ValueError(f"alert candidate v must be {SCHEMA_VERSION}")
        ev = dict(d.pop("evidence", {}))
        for k in ("window_start", "window_end"):
            if ev.get(k):
                ev[k] = datetime.fromisoformat(ev[k])
        return cls(
            **{
                **d,
                "family": Family(d["family"]),
                "severity": Severity(d["severity"]),
                "state": CandidateState(d["state"]),
                "event_time": datetime.fromisoformat(d["event_time"]),
                "detected_at": datetime.fromisoformat(d["detected_at"]),
                "evidence": Evidence(**ev),
            }
        )


@dataclass(frozen=True, slots=True)
class Feedback:
    """A nurse's outcome for an alert, published on Kafka ``feedback``."""

    alert_id: str
    resident_id: str
    incident_key: str
    kind: str
    detector: str
    outcome: Outcome
    at: datetime
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Feedback:
        d = json.loads(raw)
        return cls(**{**d, "outcome": Outcome(d["outcome"]), "at": datetime.fromisoformat(d["at"])})
