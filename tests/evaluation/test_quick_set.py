"""``carechain evaluate --quick``: the monitor on simulated incidents, asserted against the targets.

Every target the quick set can judge is met by the monitor (the false-alert
target was a strict xfail until the inactivity rule learned that a resident who
went out through the door is away). The clinical models are judged on the full
set (docs/evaluation.md): the quick set is too small for them.
"""

from __future__ import annotations

from typing import Any

import pytest

from carechain.evaluation import TARGETS, evaluate
from carechain.simulation.scenarios import IncidentType


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    return evaluate("quick", seed=1, jobs=2)


def test_quick_set_runs_every_incident_type_but_decline(quick: dict[str, Any]) -> None:
    assert set(quick["types"]) == {t.value for t in IncidentType} - {"decline"}
    assert quick["dead_letters"] == {}  # every simulated reading fits the contract and the registry
    assert quick["events"] > 100_000


@pytest.mark.parametrize("kind", [IncidentType.FALL, IncidentType.MISSED_DOSE, IncidentType.GATEWAY_OFFLINE])
def test_urgent_incidents_all_found_in_time(quick: dict[str, Any], kind: IncidentType) -> None:
    t = quick["types"][kind.value]
    target = TARGETS[kind]
    assert t["recall"] == 1.0, t["misses"]
    assert target.delay_s is not None
    assert t["delay_p95_s"] <= target.delay_s


@pytest.mark.parametrize("kind", [IncidentType.INACTIVITY, IncidentType.NIGHT_WANDERING])
def test_welfare_recall(quick: dict[str, Any], kind: IncidentType) -> None:
    assert quick["types"][kind.value]["recall"] >= TARGETS[kind].recall


def test_infection_signs_within_three_days(quick: dict[str, Any]) -> None:
    t = quick["types"]["infection"]
    assert t["recall"] >= 0.92
    assert t["precision"] is None or t["precision"] >= 0.85
    assert t["delay_p95_s"] <= 3 * 86400


def test_robot_fault_and_dead_battery_found(quick: dict[str, Any]) -> None:
    assert quick["types"]["robot_fault"]["recall"] == 1.0
    assert quick["types"]["dead_battery"]["recall"] == 1.0


def test_false_alerts_on_healthy_residents(quick: dict[str, Any]) -> None:
    assert quick["healthy"]["false_alerts_per_resident_week"] <= 0.1
