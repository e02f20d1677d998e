"""Each welfare, safety and technical rule with crafted sequences, absences included."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from carechain.candidates import CandidateState, Family, Severity
from carechain.care_plan import CarePlan, Dose
from carechain.events import Kind
from streams.monitor import ResidentMonitor
from streams.registry import PauseSwitch
from streams.synthetic import Home
from tests.streams.conftest import Driver, kinds, local

S = timedelta(seconds=1)
MIN = timedelta(minutes=1)


# --------------------------------------------------------------------------- fall, alarm


def test_fall_fires_at_once_with_evidence(driver: Driver, home: Home) -> None:
    t = local(23, 10, 0)
    driver.run(t - MIN, start=t - 5 * MIN)
    fall = home.event(Kind.FALL, True, t, room="hall")
    out = driver.m.process(fall)
    assert kinds(out.candidates) == [("fall", "firing")]
    c = out.candidates[0]
    assert c.family == Family.WELFARE and c.severity == Severity.CRITICAL
    assert c.detector == "fall" and c.detector_version
    assert c.incident_key == f"r-1:fall:{int(t.timestamp())}"
    assert c.evidence.event_ids == [fall.event_id]
    assert "hall" in c.reason and "10:00" in c.reason and "fall" in c.reason_sv
    assert c.event_time == t


def test_repeated_fall_reports_are_one_incident_but_a_new_fall_is_another(driver: Driver, home: Home) -> None:
    t = local(23, 10, 0)
    driver.run(t - MIN, start=t - 5 * MIN)
    cands = []
    for dt in (0, 5, 20):
        cands += driver.m.process(home.event(Kind.FALL, True, t + dt * S, room="hall")).candidates
    cands += driver.m.process(home.event(Kind.FALL, True, t + 90 * S, room="hall")).candidates
    assert [c.kind for c in cands] == ["fall", "fall"]
    assert len({c.incident_key for c in cands}) == 2


def test_fall_false_is_not_a_fall(driver: Driver, home: Home) -> None:
    t = local(23, 10, 0)
    driver.run(t, start=t - MIN)
    assert driver.m.process(home.event(Kind.FALL, False, t)).candidates == []


def test_alarm_button(driver: Driver, home: Home) -> None:
    t = local(23, 10, 0)
    driver.run(t, start=t - MIN)
    out = driver.m.process(home.event(Kind.ALARM_BUTTON, True, t))
    out2 = driver.m.process(home.event(Kind.ALARM_BUTTON, True, t + 10 * S))
    assert kinds(out.candidates) == [("alarm", "firing")] and out2.candidates == []


def test_canary_resident_is_processed_normally() -> None:
    h = Home(resident_id="canary-1", home_id="canary-home")
    m = ResidentMonitor("canary-1", "canary-home")
    t = local(23, 10)
    a = m.process(h.event(Kind.FALL, True, t)).candidates
    b = m.process(h.event(Kind.FALL, True, t + MIN)).candidates
    assert [c.kind for c in a + b] == ["fall", "fall"]
    assert a[0].resident_id == "canary-1"


# --------------------------------------------------------------------------- inactivity


def test_inactivity_fires_after_the_limit_and_not_before(driver: Driver, home: Home) -> None:
    t = local(23, 9, 0)
    before = driver.run(t + 120 * MIN - 5 * S, [home.motion(t)], start=t - MIN)
    assert [c for c in before if c.kind == "inactivity"] == []
    after = driver.run(t + 121 * MIN)
    assert kinds(after) == [("inactivity", "firing")]
    c = after[0]
    assert c.severity == Severity.HIGH and c.evidence.threshold == 120
    assert c.incident_key == f"r-1:inactivity:{int(t.timestamp())}"
    assert "10:00" not in c.reason and "09:00" in c.reason
    # the resident moves again: the incident is cleared, with the same key
    moved = driver.run(t + 125 * MIN, [home.motion(t + 123 * MIN)])
    assert kinds(moved) == [("inactivity", "cleared")]
    assert moved[0].incident_key == c.incident_key


def test_inactivity_uses_the_plans_limit(home: Home) -> None:
    m = ResidentMonitor("r-1", "h-1", CarePlan(resident_id="r-1", inactivity_limit_min=30))
    d = Driver(m, home)
    t = local(23, 11, 0)
    assert kinds(d.run(t + 31 * MIN, [home.motion(t)], start=t - MIN)) == [("inactivity", "firing")]


def test_no_inactivity_alert_while_the_resident_is_out(driver: Driver, home: Home) -> None:
    t = local(23, 10, 0)
    evs = [
        home.motion(t, room="hall"),
        home.event(Kind.DOOR, "open", t + MIN, room="hall"),
        home.event(Kind.DOOR, "closed", t + MIN + 10 * S, room="hall"),
    ]
    assert [c for c in driver.run(t + 200 * MIN, evs, start=t - MIN) if c.kind == "inactivity"] == []
    # back home, then still for longer than the limit: that is inactivity again
    back = t + 200 * MIN
    cands = driver.run(back + 125 * MIN, [home.event(Kind.DOOR, "open", back, room="hall"), home.motion(back + MIN)])
    assert kinds(cands) == [("inactivity", "firing")]


def test_resting_in_bed_by_day_gets_twice_the_limit(driver: Driver, home: Home) -> None:
    t = local(23, 13, 0)
    evs = [home.motion(t - MIN, room="bedroom"), home.event(Kind.BED, "in", t, room="bedroom")]
    assert [c for c in driver.run(t + 200 * MIN, evs, start=t - 2 * MIN) if c.kind == "inactivity"] == []
    cands = driver.run(t + 241 * MIN)
    assert kinds(cands) == [("inactivity", "firing")]
    assert "in bed" in cands[0].reason and cands[0].evidence.threshold == 240


def test_no_inactivity_alert_at_night(driver: Driver, home: Home) -> None:
    t = local(23, 22, 30)
    assert driver.run(t + 4 * 60 * MIN, [home.motion(t)], start=t - MIN) == []


def test_no_inactivity_before_the_resident_is_up_today(driver: Driver, home: Home) -> None:
    # last movement yesterday evening; the morning belongs to the not-up rule
    t = local(23, 21, 0)
    cands = driver.run(local(24, 8, 59), [home.motion(t)], start=t - MIN)
    assert [c for c in cands if c.kind == "inactivity"] == []


def test_gateway_silence_suppresses_inactivity_and_is_one_incident(driver: Driver, home: Home) -> None:
    t = local(23, 9, 0)
    # sensors in four rooms, then the whole home goes quiet: the gateway died
    evs = [home.motion(t + i * MIN, room=r) for i, r in enumerate(["kitchen", "hall", "bedroom", "bathroom"])]
    driver.run(t + 10 * MIN, evs, start=t - MIN)
    driver.heartbeats = False
    cands = driver.run(t + 4 * 60 * MIN)
    assert kinds(cands) == [("gateway_silent", "firing")]
    assert cands[0].family == Family.TECHNICAL
    assert cands[0].evidence.data_quality == ["gateway gw-1 offline"]


def test_gateway_silence_noticed_within_60_seconds(driver: Driver, home: Home) -> None:
    t = local(23, 9, 0)
    driver.run(t, start=t - 5 * MIN)
    last_hb = max(driver.m.gateways.values())
    driver.heartbeats = False
    cands = driver.run(t + 2 * MIN)
    assert kinds(cands) == [("gateway_silent", "firing")]
    assert (cands[0].detected_at.timestamp() - last_hb) <= 60


def test_gateway_offline_status_fires_at_next_tick_and_clears_on_return(driver: Driver, home: Home) -> None:
    t = local(23, 9, 0)
    driver.run(t, start=t - MIN)
    driver.m.process(home.event(Kind.GATEWAY_STATUS, "offline", t + S))
    driver.heartbeats = False
    cands = driver.run(t + 10 * S)
    assert kinds(cands) == [("gateway_silent", "firing")]
    driver.heartbeats = True
    cands = driver.run(t + 60 * S)
    assert kinds(cands) == [("gateway_silent", "cleared")]


def test_after_gateway_returns_a_still_resident_is_reported_ten_minutes_later(driver: Driver, home: Home) -> None:
    t = local(23, 9, 0)
    driver.run(t + MIN, [home.motion(t)], start=t - MIN)
    driver.heartbeats = False
    driver.run(t + 150 * MIN)  # silent through the limit: only the gateway alert
    driver.heartbeats = True
    back = t + 150 * MIN
    cands = driver.run(back + 9 * MIN)
    assert kinds(cands) == [("gateway_silent", "cleared")]
    cands = driver.run(back + 11 * MIN)
    assert kinds(cands) == [("inactivity", "firing")]


# --------------------------------------------------------------------------- not up


def test_not_up_fires_after_usual_wake_plus_margin(driver: Driver, home: Home) -> None:
    driver.run(local(24, 8, 59), [home.motion(local(23, 21, 0))], start=local(23, 20, 0))
    cands = driver.run(local(24, 9, 1))
    assert kinds(cands) == [("not_up", "firing")]
    assert cands[0].incident_key == "r-1:not_up:2026-11-24"
    assert "08:00" in cands[0].reason
    cands = driver.run(local(24, 9, 10), [home.motion(local(24, 9, 5), room="bathroom")])
    assert kinds(cands) == [("not_up", "cleared")]


def test_not_up_quiet_when_the_resident_got_up(driver: Driver, home: Home) -> None:
    evs = [home.motion(local(23, 21, 0)), home.motion(local(24, 7, 30), room="bathroom")]
    cands = driver.run(local(24, 10, 0), evs, start=local(23, 20, 0))
    assert [c for c in cands if c.kind == "not_up"] == []


def test_not_up_quiet_while_gateway_silent(driver: Driver, home: Home) -> None:
    driver.run(local(24, 7, 0), [home.motion(local(23, 21, 0))], start=local(23, 20, 0))
    driver.heartbeats = False
    cands = driver.run(local(24, 10, 0))
    assert kinds(cands) == [("gateway_silent", "firing")]


def test_not_up_needs_history_from_before_the_morning(home: Home) -> None:
    m = ResidentMonitor("r-1", "h-1")
    d = Driver(m, home)
    assert d.run(local(24, 10, 0), start=local(24, 9, 30)) == []


# --------------------------------------------------------------------------- night wandering


def test_night_wandering_fires_after_bed_out_and_door_open(driver: Driver, home: Home) -> None:
    evs = [
        home.event(Kind.BED, "out", local(24, 2, 0), room="bedroom"),
        home.event(Kind.DOOR, "open", local(24, 2, 10), room="hall"),
    ]
    cands = driver.run(local(24, 2, 15), evs, start=local(24, 1, 0))
    assert kinds(cands) == [("night_wandering", "firing")]
    c = cands[0]
    assert c.evidence.event_ids == [evs[0].event_id, evs[1].event_id]
    assert "02:00" in c.reason and "02:10" in c.reason
    back = driver.run(local(24, 2, 40), [home.event(Kind.BED, "in", local(24, 2, 35), room="bedroom")])
    assert kinds(back) == [("night_wandering", "cleared")]


def test_door_at_night_without_leaving_bed_is_not_wandering(driver: Driver, home: Home) -> None:
    evs = [home.event(Kind.DOOR, "open", local(24, 2, 10), room="hall")]
    assert driver.run(local(24, 2, 20), evs, start=local(24, 1, 0)) == []


def test_door_in_the_daytime_is_not_wandering(driver: Driver, home: Home) -> None:
    evs = [home.event(Kind.BED, "out", local(24, 7, 0)), home.event(Kind.DOOR, "open", local(24, 10, 0), room="hall")]
    cands = driver.run(local(24, 10, 10), evs, start=local(24, 6, 50))
    assert [c for c in cands if c.kind == "night_wandering"] == []


def test_back_in_bed_reported_out_of_order_prevents_a_false_wandering(driver: Driver, home: Home) -> None:
    out_ = home.event(Kind.BED, "out", local(24, 2, 0))
    in_ = home.event(Kind.BED, "in", local(24, 2, 5))
    door = home.event(Kind.DOOR, "open", local(24, 2, 6), room="hall")
    driver.run(local(24, 2, 0, 5), [out_], start=local(24, 1, 50))
    # the door arrives before the earlier "in" (within the allowed lateness)
    driver.m.process(door)
    driver.m.process(in_)
    assert [c for c in driver.run(local(24, 2, 20)) if c.kind == "night_wandering"] == []


# --------------------------------------------------------------------------- medication


def _med_monitor(home: Home) -> Driver:
    plan = CarePlan(resident_id="r-1", doses=(Dose("08:00", 30),))
    d = Driver(ResidentMonitor("r-1", "h-1", plan), home)
    d.run(local(24, 7, 0), [home.event(Kind.DOSE_TAKEN, "20:00", local(23, 20, 5))], start=local(23, 20, 0))
    return d


def test_dose_not_taken_within_grace_fires_at_the_deadline(home: Home) -> None:
    d = _med_monitor(home)
    assert [c for c in d.run(local(24, 8, 29, 55)) if c.kind == "dose_missed"] == []
    cands = [c for c in d.run(local(24, 8, 31)) if c.kind == "dose_missed"]
    assert kinds(cands) == [("dose_missed", "firing")]
    assert cands[0].incident_key == "r-1:dose_missed:2026-11-24:08:00" and cands[0].detector == "dose_overdue"
    late_take = d.run(local(24, 8, 50), [home.event(Kind.DOSE_TAKEN, "08:00", local(24, 8, 45))])
    assert kinds(late_take) == [("dose_missed", "cleared")]


def test_dose_taken_in_time_is_quiet(home: Home) -> None:
    d = _med_monitor(home)
    cands = d.run(local(24, 9, 30), [home.event(Kind.DOSE_TAKEN, "08:00", local(24, 8, 10))])
    assert [c for c in cands if c.kind == "dose_missed"] == []


def test_robot_report_and_timer_are_one_incident(home: Home) -> None:
    d = _med_monitor(home)
    cands = d.run(local(24, 9, 0), [home.event(Kind.DOSE_MISSED, "08:00", local(24, 8, 20))])
    missed = [c for c in cands if c.kind == "dose_missed"]
    assert kinds(missed) == [("dose_missed", "firing")] and missed[0].detector == "dose_missed"


def test_no_dose_alerts_without_a_medication_robot(driver: Driver, home: Home) -> None:
    cands = driver.run(local(24, 10, 0), [home.motion(local(24, 7, 0))], start=local(24, 6, 0))
    assert [c for c in cands if c.kind == "dose_missed"] == []


def test_robot_fault_once_until_it_works_again(driver: Driver, home: Home) -> None:
    t = local(24, 12, 0)
    evs = [
        home.event(Kind.ROBOT_FAULT, "E12", t),
        home.event(Kind.ROBOT_FAULT, "E12", t + MIN),
        home.event(Kind.DOSE_DISPENSED, "20:00", t + 10 * MIN),
    ]
    cands = driver.run(t + 15 * MIN, evs, start=t - MIN)
    assert kinds(cands) == [("robot_fault", "firing"), ("robot_fault", "cleared")]
    assert "E12" in cands[0].reason


def test_refill_needed_once_until_refilled(driver: Driver, home: Home) -> None:
    t = local(24, 12, 0)
    evs = [
        home.event(Kind.REFILL_NEEDED, 5, t),
        home.event(Kind.REFILL_NEEDED, 3, t + MIN),
        home.event(Kind.REFILL_NEEDED, 28, t + 5 * MIN),
    ]
    cands = driver.run(t + 10 * MIN, evs, start=t - MIN)
    assert kinds(cands) == [("refill_needed", "firing"), ("refill_needed", "cleared")]
    assert cands[0].severity == Severity.LOW


# --------------------------------------------------------------------------- vitals bounds, battery, devices


def test_vitals_outside_bounds_one_episode_then_cleared(driver: Driver, home: Home) -> None:
    t = local(24, 12, 0)
    evs = [
        home.event(Kind.HEART_RATE, v, t + i * MIN, room="bedroom") for i, v in enumerate([80.0, 130.0, 135.0, 90.0])
    ]
    cands = [c for c in driver.run(t + 10 * MIN, evs, start=t - MIN) if c.detector == "vitals_bounds"]
    assert kinds(cands) == [("vitals_heart_rate", "firing"), ("vitals_heart_rate", "cleared")]
    assert cands[0].evidence.threshold == 120.0 and "130" in cands[0].reason


def test_low_spo2_is_high_severity_and_plan_bounds_apply(home: Home) -> None:
    plan = CarePlan(resident_id="r-1")
    plan = replace(plan, vitals=replace(plan.vitals, spo2_min=85.0))
    d = Driver(ResidentMonitor("r-1", "h-1", plan), home)
    t = local(24, 12, 0)
    evs = [home.event(Kind.SPO2, 88.0, t), home.event(Kind.SPO2, 82.0, t + MIN)]
    cands = d.run(t + 5 * MIN, evs, start=t - MIN)
    assert kinds(cands) == [("vitals_spo2", "firing")] and cands[0].severity == Severity.HIGH


def test_temperature_out_of_bounds(driver: Driver, home: Home) -> None:
    t = local(24, 12, 0)
    cands = driver.run(t + 5 * MIN, [home.event(Kind.TEMPERATURE, 38.6, t)], start=t - MIN)
    assert kinds(cands) == [("vitals_temperature", "firing")]


def test_battery_low_once_per_device_until_replaced(driver: Driver, home: Home) -> None:
    t = local(24, 12, 0)
    evs = [home.event(Kind.BATTERY, v, t + i * MIN, device="d-7") for i, v in enumerate([20.0, 12.0, 11.0, 95.0])]
    cands = driver.run(t + 10 * MIN, evs, start=t - MIN)
    assert kinds(cands) == [("battery_low", "firing"), ("battery_low", "cleared")]
    assert cands[0].family == Family.TECHNICAL and "d-7" in cands[0].reason


def test_device_silent_after_much_longer_than_usual(driver: Driver, home: Home) -> None:
    start = local(20, 12, 0)
    evs = [home.motion(start + i * 30 * MIN, room="kitchen") for i in range(3 * 48)]  # every 30 min for 3 days
    driver.heartbeats = False
    # heartbeats once a minute (the plan's silence limit raised to match) keep the test fast
    m = driver.m
    m.plan = replace(m.plan, gateway_silence_s=120, inactivity_limit_min=24 * 60)
    # the first week: the sensor's longest normal silence (a night) is not known yet, so at least 12 hours
    hbs = [home.heartbeat(start + i * MIN) for i in range((3 * 24 + 14) * 60)]
    split = (3 * 24 + 6) * 60
    early = driver.run(start + split * MIN, evs + hbs[: split + 1], start=start)
    assert [c for c in early if c.kind == "device_silent"] == []  # 6 h: could be a night
    cands = driver.run(start + (3 * 24 + 13) * 60 * MIN, hbs[split + 1 :])
    silent = [c for c in early + cands if c.kind == "device_silent"]
    assert kinds(silent) == [("device_silent", "firing")]
    assert silent[0].severity == Severity.LOW


def test_device_silent_after_a_week_uses_the_learned_limit(driver: Driver, home: Home) -> None:
    start = local(20, 12, 0)
    evs = [home.motion(start + i * 30 * MIN, room="kitchen") for i in range(8 * 48)]  # every 30 min for 8 days
    driver.heartbeats = False
    m = driver.m
    m.plan = replace(m.plan, gateway_silence_s=600, inactivity_limit_min=24 * 60)
    hbs = [home.heartbeat(start + i * 5 * MIN) for i in range((8 * 24 + 5) * 12)]
    cands = driver.run(start + (8 * 24 + 4) * 60 * MIN, evs + hbs, start=start)
    silent = [c for c in cands if c.kind == "device_silent"]
    assert kinds(silent) == [("device_silent", "firing")]  # 4 h against a usual 30 min (plan floor 3 h)


def test_device_silent_quiet_during_warm_up(driver: Driver, home: Home) -> None:
    start = local(20, 12, 0)
    m = driver.m
    m.plan = replace(m.plan, gateway_silence_s=120)
    evs = [home.motion(start + i * 30 * MIN) for i in range(10)]
    driver.heartbeats = False
    hbs = [home.heartbeat(start + i * MIN) for i in range(10 * 60)]
    cands = driver.run(start + 9 * 60 * MIN, evs + hbs, start=start)
    assert [c for c in cands if c.kind == "device_silent"] == []


# --------------------------------------------------------------------------- pause


def test_detector_paused_per_resident(home: Home) -> None:
    plan = CarePlan(resident_id="r-1", paused_detectors=frozenset({"fall"}))
    m = ResidentMonitor("r-1", "h-1", plan)
    t = local(24, 12, 0)
    assert m.process(home.event(Kind.FALL, True, t)).candidates == []
    assert m.suppressed_count == 1
    assert kinds(m.process(home.event(Kind.ALARM_BUTTON, True, t)).candidates) == [("alarm", "firing")]


def test_detector_paused_globally_and_resumed(home: Home) -> None:
    switch = PauseSwitch()
    switch.pause("fall")
    m = ResidentMonitor("r-1", "h-1", paused=switch)
    t = local(24, 12, 0)
    assert m.process(home.event(Kind.FALL, True, t)).candidates == []
    switch.resume("fall")
    assert kinds(m.process(home.event(Kind.FALL, True, t + MIN)).candidates) == [("fall", "firing")]


def test_pause_refuses_unknown_names() -> None:
    import pytest

    with pytest.raises(ValueError):
        PauseSwitch().pause("fal")


def test_every_candidate_has_family_version_key_and_both_languages(driver: Driver, home: Home) -> None:
    t = local(24, 2, 0)
    evs = [
        home.event(Kind.FALL, True, t),
        home.event(Kind.BED, "out", t + MIN),
        home.event(Kind.DOOR, "open", t + 2 * MIN, room="hall"),
        home.event(Kind.HEART_RATE, 30.0, t + 3 * MIN),
        home.event(Kind.BATTERY, 3.0, t + 4 * MIN),
    ]
    cands = driver.run(t + 10 * MIN, evs, start=t - MIN)
    assert len(cands) == 4
    for c in cands:
        assert c.state == CandidateState.FIRING
        assert c.detector_version and c.reason and c.reason_sv and c.reason != c.reason_sv
        assert c.incident_key.startswith("r-1:")
        assert c.evidence.event_ids
