"""``carechain evaluate --quick``: the monitor on simulated incidents, asserted against the targets.

Targets the monitor does not meet yet are strict xfails carrying the measured
number (docs/evaluation.md names the detector and why); when the detector is
fixed the xfail turns into a failure, and the mark must go.
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


@pytest.mark.xfail(
    strict=True,
    reason="measured 3.50 false alerts per resident-week in the quick set, 1.33 in the full set (target 0.1): the "
    "inactivity rule counts an outing longer than its 120-minute limit (door opened and closed, then no motion at "
    "home) as inactivity",
)
def test_false_alerts_on_healthy_residents(quick: dict[str, Any]) -> None:
    assert quick["healthy"]["false_alerts_per_resident_week"] <= 0.1
