"""Silences, pure: a resident in hospital, a gateway under maintenance, a paused detector.

A silence needs a reason and an expiry (CARE-RULES.md: nothing muted forever, nothing muted without
a why). A silenced alert is still recorded, with the silence that muted it; it is not notified.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from alerts.lifecycle import ABSENCE_KINDS
from carechain.candidates import AlertCandidate, Family


class Scope(StrEnum):
    RESIDENT = "resident"
    HOME = "home"
    GATEWAY = "gateway"
    DETECTOR = "detector"


class SilenceError(ValueError):
    """A silence without a reason, without an expiry, or ending before it starts."""


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    scope: Scope
    target: str
    reason: str
    starts_at: datetime
    expires_at: datetime
    created_by: str

    def __post_init__(self) -> None:
        if not self.reason or not self.reason.strip():
            raise SilenceError("a silence needs a reason")
        if self.expires_at is None:
            raise SilenceError("a silence needs an expiry")
        if self.expires_at <= self.starts_at:
            raise SilenceError("a silence must expire after it starts")

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.expires_at


class Subject(Protocol):
    """What a silence is matched against: a candidate, or an alert already stored."""

    @property
    def resident_id(self) -> str: ...
    @property
    def home_id(self) -> str | None: ...
    @property
    def detector(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def family(self) -> str: ...


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """A stored alert as a silence subject (the escalation scan re-checks silences made after it opened)."""

    resident_id: str
    home_id: str | None
    detector: str | None
    kind: str
    family: str


def matching_silence(
    candidate: AlertCandidate | Subject, silences: Iterable[Silence], gateways_of_home: Iterable[str], now: datetime
) -> Silence | None:
    """The first active silence that covers this candidate. A gateway silence covers its home's technical
    alerts and absence alerts (no readings during maintenance), not a fall the gateway still reported."""
    gateways = set(gateways_of_home)
    for s in silences:
        if not s.active(now):
            continue
        if s.scope is Scope.RESIDENT and s.target == candidate.resident_id:
            return s
        if s.scope is Scope.HOME and s.target == candidate.home_id:
            return s
        if s.scope is Scope.DETECTOR and s.target == candidate.detector:
            return s
        if (
            s.scope is Scope.GATEWAY
            and s.target in gateways
            and (candidate.family == Family.TECHNICAL.value or candidate.kind in ABSENCE_KINDS)
        ):
            return s
    return None
