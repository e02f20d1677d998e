"""Escalation, pure: when the next notification of an alert is due, and to which tier.

A policy per severity (table ``escalation_policies`` / ``escalation_steps``): step n fires
``after`` the alert opened if it is still unacknowledged and notifies tier n's targets; after the last
step the last tier is reminded every ``repeat`` while nobody acknowledges; an alert acknowledged but not
resolved within ``retrigger`` is raised again. Deadlines are rows in the database (they survive restarts);
this module only computes them. Step 0 is the first notification held back by a minimum duration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from alerts.lifecycle import Status

RETRIGGER_BASE = 1000  # steps >= this are re-triggers of an acknowledged, unresolved alert
MAX_REPEATS = 48  # a reminder loop is bounded: after that the alert stays visible, no more pushes


@dataclass(frozen=True, slots=True)
class EscalationStep:
    step: int
    after: timedelta
    tier: int


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    severity: str
    steps: tuple[EscalationStep, ...]
    repeat: timedelta | None = None
    retrigger: timedelta | None = None

    def sorted_steps(self) -> tuple[EscalationStep, ...]:
        return tuple(sorted(self.steps, key=lambda s: s.step))


@dataclass(frozen=True, slots=True)
class Deadline:
    step: int
    due_at: datetime


class DueAction(StrEnum):
    NOTIFY = "notify"  # send to the tier's targets
    SKIP = "skip"  # the alert moved on (acknowledged, closed, suppressed): mark done, send nothing


@dataclass(frozen=True, slots=True)
class DueDecision:
    action: DueAction
    tier: int
    why: str
    next: Deadline | None  # the following deadline to schedule, if any


def first_deadline(policy: EscalationPolicy, opened_at: datetime) -> Deadline | None:
    """The first escalation deadline after the initial notification."""
    steps = policy.sorted_steps()
    if steps:
        return Deadline(steps[0].step, opened_at + steps[0].after)
    if policy.repeat:
        return Deadline(1, opened_at + policy.repeat)
    return None


def retrigger_deadline(policy: EscalationPolicy, acknowledged_at: datetime, count: int = 0) -> Deadline | None:
    """Raise an acknowledged alert again when it is not resolved in time."""
    if not policy.retrigger:
        return None
    return Deadline(RETRIGGER_BASE + count, acknowledged_at + policy.retrigger * (count + 1))


def tier_of_step(policy: EscalationPolicy, step: int) -> int:
    """Tier notified at ``step`` (a repeat beyond the last step reminds the last tier)."""
    steps = policy.sorted_steps()
    for s in steps:
        if s.step == step:
            return s.tier
    return steps[-1].tier if steps else 1


def _after_step(policy: EscalationPolicy, step: int, opened_at: datetime) -> Deadline | None:
    steps = policy.sorted_steps()
    later = [s for s in steps if s.step > step]
    if later:
        return Deadline(later[0].step, opened_at + later[0].after)
    if policy.repeat and step < (steps[-1].step if steps else 0) + MAX_REPEATS:
        last_after = steps[-1].after if steps else timedelta(0)
        n = step - (steps[-1].step if steps else 0) + 1
        return Deadline(step + 1, opened_at + last_after + policy.repeat * n)
    return None


def on_due(
    policy: EscalationPolicy,
    step: int,
    status: Status,
    suppressed: bool,
    condition_active: bool,
    opened_at: datetime,
    acknowledged_at: datetime | None,
    current_tier: int,
) -> DueDecision:
    """Decide a due deadline. Deadlines are never deleted when the alert moves on; they are judged here."""
    if suppressed:
        return DueDecision(DueAction.SKIP, current_tier, "suppressed", None)
    if step == 0:
        # The minimum duration has passed: notify unless the condition cleared meanwhile (hysteresis).
        if status is not Status.PROPOSED or not condition_active:
            return DueDecision(DueAction.SKIP, current_tier, "cleared or handled within the minimum duration", None)
        return DueDecision(DueAction.NOTIFY, 1, "minimum duration reached", first_deadline(policy, opened_at))
    if step >= RETRIGGER_BASE:
        if status in (Status.ACKNOWLEDGED, Status.ACCEPTED) and acknowledged_at is not None:
            count = step - RETRIGGER_BASE + 1
            nxt = retrigger_deadline(policy, acknowledged_at, count) if count < MAX_REPEATS else None
            return DueDecision(DueAction.NOTIFY, max(current_tier, 1), "acknowledged but not resolved in time", nxt)
        return DueDecision(DueAction.SKIP, current_tier, f"alert is {status.value}", None)
    if status is not Status.PROPOSED:
        return DueDecision(DueAction.SKIP, current_tier, f"alert is {status.value}", None)
    tier = tier_of_step(policy, step)
    return DueDecision(
        DueAction.NOTIFY, max(tier, current_tier), "not acknowledged in time", _after_step(policy, step, opened_at)
    )


def policy_for(
    severity: str, org_id: str | None, policies: Iterable[tuple[str | None, EscalationPolicy]]
) -> EscalationPolicy:
    """The organisation's own policy for the severity, else the default, else notify once."""
    default: EscalationPolicy | None = None
    for owner, p in policies:
        if p.severity != severity:
            continue
        if owner is not None and owner == org_id:
            return p
        if owner is None:
            default = p
    return default or EscalationPolicy(severity, ())
