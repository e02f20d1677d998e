"""Matching alerts with ground truth (pure, no monitor)."""

from __future__ import annotations

from datetime import timedelta

from carechain.evaluation import Alert, ScenarioResult, score, summarize
from carechain.simulation.scenarios import IncidentType, healthy_scenario, incident_scenario


def _alert(sc, kind: str, after_s: float, key: str) -> Alert:  # type: ignore[no-untyped-def]
    inc = sc.incidents[0] if sc.incidents else None
    base = inc.start.timestamp() if inc else sc.start.timestamp() + 86400
    return Alert(sc.home.resident_id, kind, key, base + after_s, "")


def test_recall_precision_delay_and_false_alerts() -> None:
    falls = incident_scenario(IncidentType.FALL, 2, seed=1)
    healthy = healthy_scenario(1, 7, seed=1, first_home=10)[0]
    r1 = ScenarioResult(falls[0], [_alert(falls[0], "fall", 1.0, "a")])
    # The second fall is found too late (outside its 10-minute window) and a dose is missed meanwhile.
    r2 = ScenarioResult(falls[1], [_alert(falls[1], "fall", 3600.0, "b"), _alert(falls[1], "dose_missed", 900, "c")])
    r3 = ScenarioResult(healthy, [_alert(healthy, "inactivity", 0, "d")])
    out = score([r1, r2, r3])
    fall = out["types"]["fall"]
    assert fall["incidents"] == 2 and fall["detected"] == 1
    assert fall["recall"] == 0.5
    assert fall["delay_median_s"] == 1.0
    assert fall["meets_target"] is False
    assert fall["misses"][0]["scenario"] == falls[1].name
    # The late fall alert is explained by its incident (not false); the missed dose is a consequence.
    assert fall["precision"] == 1.0
    assert out["false_alerts_by_kind"] == {"inactivity": 1}
    assert out["healthy"]["resident_weeks"] == 1.0
    assert out["healthy"]["false_alerts_per_resident_week"] == 1.0
    assert out["healthy"]["meets_target"] is False


def test_a_false_alert_lowers_precision_of_its_type() -> None:
    sc = incident_scenario(IncidentType.GATEWAY_OFFLINE, 1, seed=1)[0]
    healthy = healthy_scenario(1, 7, seed=1, first_home=10)[0]
    hit = _alert(sc, "gateway_silent", 40.0, "x")
    stray = Alert(healthy.home.resident_id, "gateway_silent", "y", healthy.start.timestamp() + 5 * 86400, "")
    out = score([ScenarioResult(sc, [hit]), ScenarioResult(healthy, [stray])])
    gw = out["types"]["gateway_offline"]
    assert gw["recall"] == 1.0
    assert gw["precision"] == 0.5
    assert gw["delay_p95_s"] == 40.0
    assert gw["meets_target"] is True  # no precision target for gateways; delay within 60 s
    assert sc.incidents[0].window >= timedelta(minutes=5)


def test_several_seeds_give_the_median_and_the_worst() -> None:
    def run(seed: int, recall: float, precision: float, per_week: float) -> dict[str, object]:
        t = {"incidents": 20, "recall": recall, "precision": precision, "delay_median_s": 1e5, "delay_p95_s": 2e5}
        return {
            "set": "full",
            "seed": seed,
            "types": {"infection": t},
            "healthy": {"false_alerts_per_resident_week": per_week},
        }

    out = summarize([run(1, 0.95, 0.9, 0.05), run(2, 0.85, 1.0, 0.0), run(3, 0.95, 0.8, 0.15)])
    inf = out["types"]["infection"]
    assert out["seeds"] == [1, 2, 3] and inf["incidents"] == 60
    assert (inf["recall_median"], inf["recall_worst"]) == (0.95, 0.85)
    assert (inf["precision_median"], inf["precision_worst"]) == (0.9, 0.8)
    assert inf["meets_target"] is True and inf["worst_meets_target"] is False
    assert out["healthy"]["false_alerts_per_resident_week_median"] == 0.05
    assert out["healthy"]["meets_target"] is True and out["healthy"]["worst_meets_target"] is False


def test_infections_are_counted_with_and_without_fever() -> None:
    infections = incident_scenario(IncidentType.INFECTION, 6, seed=1)
    results = [
        ScenarioResult(sc, [_alert(sc, "infection_signs", 40 * 3600.0, f"k{i}")]) for i, sc in enumerate(infections)
    ]
    results[0].alerts.clear()  # the first one is missed
    out = score(results)
    by_sign = out["types"]["infection"]["by_sign"]
    fever = [bool(sc.incidents[0].detail["fever"]) for sc in infections]
    want = {"fever": fever.count(True), "no fever": fever.count(False)}
    assert {k: v["incidents"] for k, v in by_sign.items()} == {k: n for k, n in want.items() if n}
    missed = "fever" if fever[0] else "no fever"
    assert by_sign[missed]["detected"] == by_sign[missed]["incidents"] - 1
    both = summarize([{"set": "full", "seed": s, **out} for s in (1, 2)])
    assert both["types"]["infection"]["by_sign"][missed]["incidents"] == 2 * by_sign[missed]["incidents"]
