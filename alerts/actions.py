"""A nurse's actions on an alert: acknowledge, accept, dismiss (with a reason), resolve (with an outcome),
comment. The API calls these with its psycopg connection (docs/contracts.md).

Each action is ONE transaction: the alert row (locked), an ``alert_events`` row with
``pg_notify('carechain_alert_events', id)`` for the live stream, and, for an outcome or a dismissal, an
outbox row on channel ``feedback`` that the alert service publishes to Kafka ``feedback`` (so the API
needs no Kafka client). Returns the updated alert as a dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from alerts import store
from alerts.escalation import policy_for, retrigger_deadline
from alerts.lifecycle import InvalidTransition, NurseAction, Status, next_status
from carechain.candidates import Feedback, Outcome

__all__ = [
    "Actor",
    "AlertNotFound",
    "InvalidTransition",
    "accept",
    "acknowledge",
    "comment",
    "dismiss",
    "resolve",
]


class AlertNotFound(LookupError):
    """No alert with that id."""


@dataclass(frozen=True)
class Actor:
    user_id: str
    org_id: str
    role: str


def _now() -> datetime:
    return datetime.now(UTC)


def _act(
    conn: psycopg.Connection[Any],
    alert_id: int | str,
    actor: Actor,
    action: NurseAction,
    fields: dict[str, Any],
    detail: dict[str, Any],
    outcome: Outcome | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or _now()
    try:
        aid = int(alert_id)
    except (TypeError, ValueError):
        raise AlertNotFound(str(alert_id)) from None
    with conn.transaction():
        store.lock_event_order(conn)
        row = store.alert_row(conn, aid, lock=True)
        if row is None:
            raise AlertNotFound(str(alert_id))
        new = next_status(row["status"], action)
        changes: dict[str, Any] = dict(fields)
        if new.value != row["status"]:
            changes["status"] = new.value
        # Resolving or dismissing straight from proposed also counts as the acknowledgement (response times).
        if action is not NurseAction.COMMENT and row["acknowledged_at"] is None:
            changes.setdefault("acknowledged_at", now)
            changes.setdefault("acknowledged_by", actor.user_id)
        if changes:
            store.update_alert(conn, aid, changes, now)
        event_type = "commented" if action is NurseAction.COMMENT else new.value
        if action is NurseAction.ACCEPT:
            event_type = "accepted"
        store.add_event(conn, aid, event_type, now, actor.user_id, actor.org_id, actor.role, detail)
        if action is NurseAction.ACKNOWLEDGE or (action is NurseAction.ACCEPT and row["acknowledged_at"] is None):
            policies = store.escalation_policies(conn)
            dl = retrigger_deadline(policy_for(row["severity"], row["responsible_org_id"], policies), now)
            if dl is not None:
                store.schedule_deadline(conn, aid, dl.step, dl.due_at)
        if outcome is not None and not row["canary"]:
            fb = Feedback(
                alert_id=str(aid),
                resident_id=row["resident_id"],
                incident_key=row["incident_key"],
                kind=row["kind"],
                detector=row["detector"] or "",
                outcome=outcome,
                at=now,
            )
            key = f"feedback:a{aid}:r{row['reopen_count']}:{action.value}"
            payload = {"feedback": _feedback_dict(fb), "dedup_key": key}
            store.enqueue(conn, aid, "feedback", "kafka", payload, key, now)
        updated = store.alert_row(conn, aid)
    assert updated is not None
    return updated


def _feedback_dict(fb: Feedback) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(fb.to_json())
    return d


def acknowledge(conn: psycopg.Connection[Any], alert_id: int | str, actor: Actor) -> dict[str, Any]:
    """I am on it: stops the escalation; re-triggers if not resolved in time."""
    now = _now()
    return _act(
        conn,
        alert_id,
        actor,
        NurseAction.ACKNOWLEDGE,
        {"acknowledged_at": now, "acknowledged_by": actor.user_id},
        {},
        now=now,
    )


def accept(conn: psycopg.Connection[Any], alert_id: int | str, actor: Actor) -> dict[str, Any]:
    """The alert is right; the nurse takes it on."""
    now = _now()
    return _act(
        conn, alert_id, actor, NurseAction.ACCEPT, {"accepted_at": now, "accepted_by": actor.user_id}, {}, now=now
    )


def dismiss(conn: psycopg.Connection[Any], alert_id: int | str, actor: Actor, reason: str) -> dict[str, Any]:
    """Not a real alert, with the reason why (it teaches the resident's model: a false alarm)."""
    if not reason or not reason.strip():
        raise InvalidTransition("a dismissal needs a reason")
    now = _now()
    return _act(
        conn,
        alert_id,
        actor,
        NurseAction.DISMISS,
        {"dismissed_at": now, "dismissed_by": actor.user_id, "dismiss_reason": reason},
        {"reason": reason},
        outcome=Outcome.FALSE_ALARM,
        now=now,
    )


def resolve(
    conn: psycopg.Connection[Any],
    alert_id: int | str,
    actor: Actor,
    outcome: Outcome,
    comment: str | None = None,
) -> dict[str, Any]:
    """Closed, with the outcome (true incident, false alarm, no action needed), fed back to the worker."""
    out = Outcome(outcome)
    now = _now()
    detail: dict[str, Any] = {"outcome": out.value}
    if comment:
        detail["comment"] = comment
    return _act(
        conn,
        alert_id,
        actor,
        NurseAction.RESOLVE,
        {"resolved_at": now, "resolved_by": actor.user_id, "outcome": out.value},
        detail,
        outcome=out,
        now=now,
    )


def comment(conn: psycopg.Connection[Any], alert_id: int | str, actor: Actor, text: str) -> dict[str, Any]:
    """A note on the alert's history; the status does not change."""
    if not text or not text.strip():
        raise InvalidTransition("a comment needs text")
    return _act(conn, alert_id, actor, NurseAction.COMMENT, {}, {"text": text})


# Re-exported for callers that check statuses.
STATUSES = tuple(s.value for s in Status)
