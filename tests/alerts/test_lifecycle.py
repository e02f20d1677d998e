"""Pure lifecycle: dedup, reopening, clearing, grouping, inhibition, flapping, nurse transitions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.lifecycle import (
    AlertRecord,
    Decision,
    FlapState,
    InvalidTransition,
    NurseAction,
    Policy,
    Status,
    decide,
    inhibiting_alert,
    next_status,
    record_change,
    related_group,
)
from carechain.candidates import CandidateState, Family
from tests.alerts.conftest import T0, candidate, later

P = Policy()


def rec(**kw: object) -> AlertRecord:
    base: dict[str, object] = {
        "id": 1,
        "incident_key": "k",
        "incident_seq": 1,
        "group_id": "g1",
        "resident_id": "res-0001",
        "home_id": "home-0001",
        "kind": "fall",
        "family": "welfare",
        "severity": "critical",
        "status": Status.PROPOSED,
        "opened_at": T0,
        "last_candidate_at": T0,
    }
    base.update(kw)
    return AlertRecord(**base)  # type: ignore[arg-type]


def test_first_candidate_creates_and_a_burst_is_duplicate() -> None:
    c = candidate(key="k")
    assert decide(c, None, T0, P) is Decision.CREATE
    assert decide(c, rec(), later(0.1), P) is Decision.DUPLICATE  # same detected_at: a replay


def test_newer_firing_on_open_alert_refreshes_only_after_a_clear_else_duplicate() -> None:
    c = candidate(key="k", at=later(1))
    assert decide(c, rec(), later(1), P) is Decision.DUPLICATE
    assert decide(c, rec(condition_active=False), later(1), P) is Decision.REFRESH


def test_reopen_within_window_else_new_episode() -> None:
    closed = rec(status=Status.RESOLVED, resolved_at=later(5))
    assert decide(candidate(key="k", at=later(20)), closed, later(20), P) is Decision.REOPEN
    assert decide(candidate(key="k", at=later(60)), closed, later(60), P) is Decision.NEW_EPISODE


def test_clear_auto_resolves_welfare_and_technical_never_clinical() -> None:
    clr = candidate(key="k", state=CandidateState.CLEARED, at=later(2))
    assert decide(clr, rec(), later(2), P) is Decision.AUTO_RESOLVE
    assert decide(clr, rec(family="technical"), later(2), P) is Decision.AUTO_RESOLVE
    assert decide(clr, rec(family=Family.CLINICAL.value), later(2), P) is Decision.CLEAR_ONLY
    assert decide(clr, rec(status=Status.ACCEPTED), later(2), P) is Decision.CLEAR_ONLY
    assert decide(clr, None, later(2), P) is Decision.IGNORE
    assert decide(clr, rec(condition_active=False), later(2), P) is Decision.IGNORE


def test_nurse_transitions() -> None:
    assert next_status(Status.PROPOSED, NurseAction.ACKNOWLEDGE) is Status.ACKNOWLEDGED
    assert next_status(Status.ACKNOWLEDGED, NurseAction.ACCEPT) is Status.ACCEPTED
    assert next_status(Status.ACKNOWLEDGED, NurseAction.DISMISS) is Status.DISMISSED
    assert next_status(Status.ACCEPTED, NurseAction.RESOLVE) is Status.RESOLVED
    assert next_status(Status.DISMISSED, NurseAction.RESOLVE) is Status.RESOLVED
    assert next_status("resolved", NurseAction.COMMENT) is Status.RESOLVED
    for bad in ((Status.RESOLVED, NurseAction.ACKNOWLEDGE), (Status.ACCEPTED, NurseAction.DISMISS),
                (Status.ACKNOWLEDGED, NurseAction.ACKNOWLEDGE)):  # fmt: skip
        with pytest.raises(InvalidTransition):
            next_status(*bad)


def test_grouping_in_same_home_within_window() -> None:
    fall = rec(id=7, kind="fall", incident_key="fall-1", group_id="G")
    inactivity = candidate(kind="inactivity", key="inact-1", at=later(10))
    assert related_group(inactivity, [fall], later(10), P) is fall
    assert related_group(inactivity, [fall], later(45), P) is None  # outside 30 minutes
    other_home = candidate(kind="inactivity", key="x", home="home-0002", at=later(10))
    assert related_group(other_home, [fall], later(10), P) is None


def test_inhibition_only_for_absence_kinds_while_gateway_silent_open() -> None:
    gw = rec(id=3, kind="gateway_silent", family="technical", incident_key="gw")
    assert inhibiting_alert(candidate(kind="inactivity"), [gw]) is gw
    assert inhibiting_alert(candidate(kind="not_up"), [gw]) is gw
    assert inhibiting_alert(candidate(kind="fall"), [gw]) is None
    assert inhibiting_alert(candidate(kind="inactivity"), [rec(kind="gateway_silent", status=Status.RESOLVED)]) is None


def test_flapping_after_n_changes_in_window_notified_once() -> None:
    p = Policy(flap_changes=4, flap_window=timedelta(minutes=10))
    s, became = FlapState(), False
    events = []
    for i in range(6):
        s, became = record_change(s, later(i), p)
        events.append(became)
    assert events == [False, False, False, True, False, False]
    assert s.flapping
    s, became = record_change(s, later(60), p)  # quiet for long: no longer flapping
    assert not s.flapping and not became
