"""Pure escalation timing with a controllable clock."""

from __future__ import annotations

from datetime import timedelta

from alerts.escalation import (
    RETRIGGER_BASE,
    DueAction,
    EscalationPolicy,
    EscalationStep,
    first_deadline,
    on_due,
    policy_for,
    retrigger_deadline,
)
from alerts.lifecycle import Status
from tests.alerts.conftest import T0, later

CRIT = EscalationPolicy(
    "critical",
    (EscalationStep(1, timedelta(minutes=5), 2), EscalationStep(2, timedelta(minutes=10), 3)),
    repeat=timedelta(minutes=5),
    retrigger=timedelta(minutes=60),
)


def test_steps_then_repeats() -> None:
    d = first_deadline(CRIT, T0)
    assert d is not None and (d.step, d.due_at) == (1, later(5))
    seen = []
    step = d.step
    for _ in range(4):
        dec = on_due(CRIT, step, Status.PROPOSED, False, True, T0, None, 1)
        assert dec.action is DueAction.NOTIFY and dec.next is not None
        seen.append((step, dec.tier, dec.next.due_at))
        step = dec.next.step
    assert seen == [(1, 2, later(10)), (2, 3, later(15)), (3, 3, later(20)), (4, 3, later(25))]


def test_acknowledged_stops_escalation_and_retriggers_if_not_resolved() -> None:
    assert on_due(CRIT, 1, Status.ACKNOWLEDGED, False, True, T0, later(2), 1).action is DueAction.SKIP
    r = retrigger_deadline(CRIT, later(2))
    assert r is not None and (r.step, r.due_at) == (RETRIGGER_BASE, later(62))
    dec = on_due(CRIT, RETRIGGER_BASE, Status.ACKNOWLEDGED, False, True, T0, later(2), 1)
    assert dec.action is DueAction.NOTIFY and dec.next is not None and dec.next.due_at == later(122)
    assert on_due(CRIT, RETRIGGER_BASE, Status.RESOLVED, False, True, T0, later(2), 1).action is DueAction.SKIP


def test_min_duration_step_zero() -> None:
    assert on_due(CRIT, 0, Status.PROPOSED, False, True, T0, None, 1).action is DueAction.NOTIFY
    assert on_due(CRIT, 0, Status.PROPOSED, False, False, T0, None, 1).action is DueAction.SKIP
    assert on_due(CRIT, 0, Status.PROPOSED, True, True, T0, None, 1).action is DueAction.SKIP


def test_policy_per_org_then_default_then_notify_once() -> None:
    mine = EscalationPolicy("critical", (EscalationStep(1, timedelta(minutes=2), 2),))
    pols = [(None, CRIT), ("kommun-0180", mine)]
    assert policy_for("critical", "kommun-0180", pols) is mine
    assert policy_for("critical", "kommun-0182", pols) is CRIT
    assert first_deadline(policy_for("low", None, pols), T0) is None
