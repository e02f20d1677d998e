"""The alert lifecycle, pure: what a candidate or a nurse's action does to an alert.

proposed -> acknowledged -> accepted | dismissed (with a reason) -> resolved. Alerts are
proposals to a human (CARE-RULES.md): a CLEARED candidate may close a welfare or technical
alert by itself (the resident moves again, the gateway is back), never a clinical one.
No I/O here; every function takes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from carechain.candidates import AlertCandidate, CandidateState, Family


class Status(StrEnum):
    PROPOSED = "proposed"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"
    RESOLVED = "resolved"


OPEN_STATUSES: frozenset[Status] = frozenset({Status.PROPOSED, Status.ACKNOWLEDGED, Status.ACCEPTED})
CLOSED_STATUSES: frozenset[Status] = frozenset({Status.DISMISSED, Status.RESOLVED})


class NurseAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ACCEPT = "accept"
    DISMISS = "dismiss"
    RESOLVE = "resolve"
    COMMENT = "comment"


class InvalidTransition(ValueError):
    """The action is not possible in the alert's current state."""


#: status -> action -> new status. A nurse may resolve or dismiss straight from proposed
#: (that also counts as the acknowledgement); a dismissed alert may still be resolved with an outcome.
_TRANSITIONS: dict[Status, dict[NurseAction, Status]] = {
    Status.PROPOSED: {
        NurseAction.ACKNOWLEDGE: Status.ACKNOWLEDGED,
        NurseAction.ACCEPT: Status.ACCEPTED,
        NurseAction.DISMISS: Status.DISMISSED,
        NurseAction.RESOLVE: Status.RESOLVED,
    },
    Status.ACKNOWLEDGED: {
        NurseAction.ACCEPT: Status.ACCEPTED,
        NurseAction.DISMISS: Status.DISMISSED,
        NurseAction.RESOLVE: Status.RESOLVED,
    },
    Status.ACCEPTED: {NurseAction.RESOLVE: Status.RESOLVED},
    Status.DISMISSED: {NurseAction.RESOLVE: Status.RESOLVED},
    Status.RESOLVED: {},
}


def next_status(status: Status | str, action: NurseAction) -> Status:
    """The status after a nurse's action; comments leave it unchanged. Raises InvalidTransition."""
    current = Status(status)
    if action is NurseAction.COMMENT:
        return current
    new = _TRANSITIONS[current].get(action)
    if new is None:
        raise InvalidTransition(f"cannot {action.value} an alert that is {current.value}")
    return new


#: Kinds whose absence-of-activity meaning is void while the home's gateway is silent (inhibition).
ABSENCE_KINDS: frozenset[str] = frozenset({"inactivity", "not_up", "no_activity", "bathroom_absent", "rhythm"})
#: The technical alerts that inhibit ABSENCE_KINDS of the same home while open.
INHIBITING_KINDS: frozenset[str] = frozenset({"gateway_silent"})


@dataclass(frozen=True, slots=True)
class Policy:
    """Tunables of the lifecycle. Defaults are conservative; tests pass their own."""

    reopen_window: timedelta = timedelta(minutes=30)  # same key after resolve: reopen within, new alert after
    group_window: timedelta = timedelta(minutes=30)  # a related alert in the same home joins the group
    flap_changes: int = 4  # this many fire/clear changes ...
    flap_window: timedelta = timedelta(minutes=30)  # ... within this window: flapping
    # A fall or a call for help is never muted as flapping: each one is a person who needs help now
    # (four falls in half an hour are an emergency, not a noisy sensor).
    never_flapping: frozenset[str] = frozenset({"fall", "alarm"})
    # Minimum duration before the first notification, for kinds that come and go (hysteresis).
    min_duration: dict[str, timedelta] = field(
        default_factory=lambda: {
            "gateway_silent": timedelta(minutes=2),
            "device_silent": timedelta(minutes=5),
            "battery_low": timedelta(minutes=10),
        }
    )
    canary_prefix: str = "canary-"

    def min_duration_of(self, kind: str) -> timedelta:
        return self.min_duration.get(kind, timedelta(0))


@dataclass(slots=True)
class AlertRecord:
    """What the core needs to know of a stored alert."""

    id: int
    incident_key: str
    incident_seq: int
    group_id: str
    resident_id: str
    home_id: str | None
    kind: str
    family: str
    severity: str
    status: Status
    opened_at: datetime
    resolved_at: datetime | None = None
    last_candidate_at: datetime | None = None
    condition_active: bool = True
    acknowledged_at: datetime | None = None
    suppressed: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class Decision(StrEnum):
    """What to do with one candidate, given the newest alert of its incident key."""

    CREATE = "create"  # no alert yet for this key
    DUPLICATE = "duplicate"  # a replay or a burst: nothing changes
    REFRESH = "refresh"  # still firing on an open alert: note it, no new notification
    REOPEN = "reopen"  # fired again soon after it was resolved: same alert, open again
    NEW_EPISODE = "new_episode"  # fired again long after: a new alert (incident_seq + 1)
    AUTO_RESOLVE = "auto_resolve"  # cleared: resolve by itself (welfare, technical)
    CLEAR_ONLY = "clear_only"  # cleared: record it, leave the decision to a human (clinical, or acted on)
    IGNORE = "ignore"  # a clearing for an alert already closed or unknown


def is_canary(candidate: AlertCandidate, policy: Policy) -> bool:
    """The synthetic pipeline-heartbeat resident: recorded and timed, never sent to a nurse."""
    return candidate.resident_id.startswith(policy.canary_prefix)


def decide(candidate: AlertCandidate, current: AlertRecord | None, now: datetime, policy: Policy) -> Decision:
    """Dedup, reopen and clear rules for one candidate."""
    stale = (
        current is not None
        and current.last_candidate_at is not None
        and candidate.detected_at <= current.last_candidate_at
    )
    if candidate.state is CandidateState.FIRING:
        if current is None:
            return Decision.CREATE
        if stale:
            return Decision.DUPLICATE  # replay of what we already applied (Kafka redelivery, a burst)
        if current.is_open:
            return Decision.DUPLICATE if current.condition_active else Decision.REFRESH
        closed_at = current.resolved_at or current.opened_at
        if now - closed_at <= policy.reopen_window:
            return Decision.REOPEN
        return Decision.NEW_EPISODE
    # CLEARED
    if current is None or stale or not current.condition_active:
        return Decision.IGNORE
    if not current.is_open:
        return Decision.CLEAR_ONLY
    if current.family == Family.CLINICAL.value:
        return Decision.CLEAR_ONLY  # never an automatic clinical decision
    if current.status is Status.ACCEPTED:
        return Decision.CLEAR_ONLY  # a nurse has taken it on: she resolves it with an outcome
    return Decision.AUTO_RESOLVE


def related_group(
    candidate: AlertCandidate, recent_in_home: list[AlertRecord], now: datetime, policy: Policy
) -> AlertRecord | None:
    """The alert whose group a new alert joins: the newest alert of the same home opened within the group
    window that is still open (or closed within the window) — e.g. the fall before an inactivity."""
    best: AlertRecord | None = None
    for a in recent_in_home:
        if a.home_id != candidate.home_id or a.incident_key == candidate.incident_key:
            continue
        if now - a.opened_at > policy.group_window:
            continue
        if not a.is_open and (a.resolved_at is None or now - a.resolved_at > policy.group_window):
            continue
        if best is None or a.opened_at > best.opened_at:
            best = a
    return best


def inhibiting_alert(candidate: AlertCandidate, open_in_home: list[AlertRecord]) -> AlertRecord | None:
    """An open gateway-silent alert of the home mutes its absence alerts: the silence is the gateway's."""
    if candidate.kind not in ABSENCE_KINDS:
        return None
    for a in open_in_home:
        if a.kind in INHIBITING_KINDS and a.is_open and a.home_id == candidate.home_id:
            return a
    return None


@dataclass(frozen=True, slots=True)
class FlapState:
    """Recent fire/clear changes of one resident and kind."""

    changes: tuple[datetime, ...] = ()
    flapping: bool = False


def record_change(state: FlapState, at: datetime, policy: Policy) -> tuple[FlapState, bool]:
    """Add one state change. Returns the new state and whether it *became* flapping now (notify once).
    Flapping ends when the window holds fewer than half the threshold of changes."""
    recent = (*(t for t in state.changes if at - t <= policy.flap_window), at)
    if state.flapping:
        still = len(recent) > policy.flap_changes // 2
        return FlapState(recent, still), False
    now_flapping = len(recent) >= policy.flap_changes
    return FlapState(recent, now_flapping), now_flapping
