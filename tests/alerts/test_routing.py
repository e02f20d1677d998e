"""Pure routing: kind and severity -> organisation and role, per tier, overridable per organisation."""

from __future__ import annotations

from alerts.routing import Responsibility, RoutingRule, is_injured, responsible, route

DEFAULTS = [
    RoutingRule(None, "*", "low", 1, "kommun", "nurse"),
    RoutingRule(None, "*", "low", 2, "kommun", "coordinator"),
    RoutingRule(None, "fall", "low", 1, "kommun", "nurse"),
    RoutingRule(None, "fall", "low", 2, "region", "clinician"),
    RoutingRule(None, "vitals_bounds", "low", 1, "region", "clinician"),
    RoutingRule(None, "infection_signs", "low", 1, "region", "clinician"),
]
R = Responsibility("kommun-0180", "region-01")


def test_medication_and_daily_care_to_kommun_nurse() -> None:
    for kind in ("dose_missed", "inactivity", "not_up"):
        t = responsible(kind, "high", R, DEFAULTS)
        assert t is not None and (t.org_id, t.role) == ("kommun-0180", "nurse")


def test_vitals_and_infection_to_region_primary_care() -> None:
    for kind in ("vitals_bounds", "infection_signs"):
        t = responsible(kind, "medium", R, DEFAULTS)
        assert t is not None and (t.org_id, t.org_kind, t.role) == ("region-01", "region", "clinician")


def test_fall_kommun_first_region_when_unacknowledged_or_injured() -> None:
    assert [(t.org_id, t.role) for t in route("fall", "critical", 1, R, DEFAULTS)] == [("kommun-0180", "nurse")]
    assert [(t.org_id, t.role) for t in route("fall", "critical", 2, R, DEFAULTS)] == [("region-01", "clinician")]
    injured = route("fall", "critical", 1, R, DEFAULTS, injured=True)
    assert {(t.org_id, t.role) for t in injured} == {("kommun-0180", "nurse"), ("region-01", "clinician")}
    assert route("fall", "critical", 3, R, DEFAULTS)[0].org_id == "region-01"  # past the last tier: the last
    assert is_injured({"injured": True}) and not is_injured({})


def test_organisation_overrides_default() -> None:
    rules = [*DEFAULTS, RoutingRule("kommun-0180", "fall", "low", 1, "kommun", "alarm_centre")]
    assert [t.role for t in route("fall", "high", 1, R, rules)] == ["alarm_centre"]
    other = Responsibility("kommun-0182", "region-01")
    assert [t.role for t in route("fall", "high", 1, other, rules)] == ["nurse"]


def test_min_severity() -> None:
    rules = [*DEFAULTS, RoutingRule(None, "dose_missed", "critical", 1, "region", "clinician")]
    assert responsible("dose_missed", "high", R, rules).role == "nurse"  # type: ignore[union-attr]
    assert responsible("dose_missed", "critical", R, rules).role == "clinician"  # type: ignore[union-attr]
