"""The learned clinical models: quiet while warming up, alert on crafted changes, taught by feedback."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from carechain.candidates import AlertCandidate, Family, Feedback, Outcome
from carechain.care_plan import CarePlan
from carechain.events import Event, Kind
from streams.models.decline import DeclineSeries
from streams.models.vitals import VitalSignal
from streams.monitor import MonitorOutput, ResidentMonitor
from streams.synthetic import Home
from tests.streams.conftest import local

HOUR = timedelta(hours=1)


def _plan() -> CarePlan:
    # hourly heartbeats in these multi-day stories: silence limit raised to match
    return CarePlan(resident_id="r-1", gateway_silence_s=2 * 3600, inactivity_limit_min=24 * 60, wake_margin_min=600)


def day_events(
    home: Home,
    day: datetime,
    rng: random.Random,
    activity: int = 60,
    bath_day: int = 4,
    bath_night: int = 1,
    schedule: dict[str, range] | None = None,
) -> list[Event]:
    """One day of a routine: activity spread over rooms by hour, bathroom visits, hourly heartbeats."""
    schedule = schedule or {"kitchen": range(7, 10), "living": range(10, 21), "bedroom": range(21, 23)}
    evs = [home.heartbeat(day + h * HOUR) for h in range(24)]
    slots = [(room, h) for room, hours in schedule.items() for h in hours]
    for _ in range(activity):
        room, h = rng.choice(slots)
        evs.append(home.motion(day + h * HOUR + timedelta(minutes=rng.randrange(60)), room=room))
    for hh in rng.sample(range(8, 21), bath_day):
        evs.append(home.motion(day + hh * HOUR + timedelta(minutes=rng.randrange(14)), room="bathroom"))
    for hh in rng.sample([0, 1, 2, 3, 4, 23], bath_night):
        evs.append(home.motion(day + hh * HOUR + timedelta(minutes=rng.randrange(14)), room="bathroom"))
    return sorted(evs, key=lambda e: e.ts)


def feed(m: ResidentMonitor, evs: list[Event]) -> MonitorOutput:
    out = MonitorOutput()
    for e in evs:
        out.extend(m.process(e))
    return out


def clinical(out: MonitorOutput, detector: str) -> list[AlertCandidate]:
    return [c for c in out.candidates if c.detector == detector]


def test_bathroom_quiet_while_warming_up_then_alerts_on_a_sustained_rise() -> None:
    rng = random.Random(1)
    home, m = Home(), ResidentMonitor("r-1", "h-1", _plan())
    start = local(1, 0)
    # warm-up days with many night visits: no alert while warming up
    out = feed(m, [e for d in range(5) for e in day_events(home, start + d * 24 * HOUR, rng, bath_night=5)])
    assert clinical(out, "bathroom") == []
    out = feed(m, [e for d in range(5, 16) for e in day_events(home, start + d * 24 * HOUR, rng)])
    assert clinical(out, "bathroom") == []
    assert any(s.detector == "bathroom" for s in out.scores)
    # one restless night is not sustained
    out = feed(m, day_events(home, start + 16 * 24 * HOUR, rng, bath_night=5))
    out.extend(feed(m, day_events(home, start + 17 * 24 * HOUR, rng)))
    assert clinical(out, "bathroom") == []
    # two days in a row with many visits: infection signs
    out = feed(
        m, [e for d in (18, 19, 20) for e in day_events(home, start + d * 24 * HOUR, rng, bath_day=9, bath_night=5)]
    )
    cands = clinical(out, "bathroom")
    assert [c.kind for c in cands] == ["infection_signs"]
    assert cands[0].family == Family.CLINICAL and "urin" in cands[0].reason
    assert cands[0].evidence.contributing


def test_rhythm_alerts_on_a_day_turned_upside_down_and_feedback_raises_its_threshold() -> None:
    rng = random.Random(2)
    home, m = Home(), ResidentMonitor("r-1", "h-1", _plan())
    start = local(1, 0)
    out = feed(m, [e for d in range(20) for e in day_events(home, start + d * 24 * HOUR, rng)])
    assert clinical(out, "rhythm") == []
    odd = {"bedroom": range(7, 20), "kitchen": range(0, 4)}
    out = feed(m, day_events(home, start + 20 * 24 * HOUR, rng, schedule=odd))
    out.extend(feed(m, [home.heartbeat(start + 21 * 24 * HOUR + 3 * HOUR)]))
    cands = clinical(out, "rhythm")
    assert [c.kind for c in cands] == ["rhythm_change"]
    assert any("bedroom" in w or "living" in w for w in cands[0].evidence.contributing)
    k = m.detectors["rhythm"].k  # type: ignore[attr-defined]
    m.feedback(Feedback("a1", "r-1", cands[0].incident_key, "rhythm_change", "rhythm", Outcome.FALSE_ALARM, start))
    assert m.detectors["rhythm"].k == k + 0.5  # type: ignore[attr-defined]


def test_decline_quiet_in_warm_up_then_alerts_within_two_weeks() -> None:
    s = DeclineSeries()
    rng = random.Random(3)
    alerts = [s.step(100 + rng.gauss(0, 8))[1] for _ in range(30)]
    assert not any(alerts)
    days = [s.step(65 + rng.gauss(0, 8))[1] for _ in range(14)]
    assert any(days)
    assert days.index(True) <= 10


def test_decline_in_the_monitor_is_clinical_and_keyed_per_day() -> None:
    rng = random.Random(4)
    home, m = Home(), ResidentMonitor("r-1", "h-1", _plan())
    start = local(1, 0)
    out = feed(m, [e for d in range(25) for e in day_events(home, start + d * 24 * HOUR, rng, activity=80)])
    assert clinical(out, "decline") == []
    out = feed(m, [e for d in range(25, 37) for e in day_events(home, start + d * 24 * HOUR, rng, activity=35)])
    cands = clinical(out, "decline")
    assert [c.kind for c in cands] == ["decline"] and cands[0].incident_key.startswith("r-1:decline:2026-")


def test_vitals_signal_warm_up_and_alert() -> None:
    sig = VitalSignal(floor=3.0)
    rng = random.Random(5)
    t0 = 1_800_000_000.0
    early = [sig.step(t0 + i * 600, 70 + rng.gauss(0, 3)) for i in range(100)]  # 16 h: still warming up
    assert not any(a for _, a, _ in early)
    assert sig.step(t0 + 100 * 600, 140)[1] is False  # unusual, but not warm yet
    for i in range(101, 600):
        sig.step(t0 + i * 600, 70 + rng.gauss(0, 3))
    score, alert, warm = sig.step(t0 + 601 * 600, 110)
    assert warm and not alert and score > 4  # one odd reading is noise
    assert not sig.step(t0 + 602 * 600, 72)[1]  # and the run is broken by a usual one
    assert not sig.step(t0 + 603 * 600, 110)[1]
    score, alert, warm = sig.step(t0 + 604 * 600, 112)  # two unusual readings in a row
    assert warm and alert and score > 4
    assert not sig.step(t0 + 605 * 600, 72)[1]


def test_vitals_model_in_the_monitor_and_false_alarm_feedback() -> None:
    rng = random.Random(6)
    home = Home()
    m = ResidentMonitor("r-1", "h-1", _plan())
    start = local(1, 0)
    evs = []
    for i in range(4 * 24 * 6):  # every 10 min for 4 days
        t = start + timedelta(minutes=10 * i)
        evs += [home.event(Kind.HEART_RATE, round(62 + rng.gauss(0, 2), 1), t), home.heartbeat(t)]
    feed(m, evs)
    t = start + timedelta(days=4)
    odd = feed(m, [home.event(Kind.HEART_RATE, 95.0, t - timedelta(minutes=20))])
    usual = feed(m, [home.event(Kind.HEART_RATE, 62.0, t - timedelta(minutes=10)), home.heartbeat(t)])
    assert clinical(odd, "vitals") + clinical(usual, "vitals") == []  # one odd reading between usual ones: noise
    spike = [
        home.event(Kind.HEART_RATE, 95.0, t),
        home.event(Kind.HEART_RATE, 96.0, t + timedelta(minutes=10)),
        home.heartbeat(t + 5 * HOUR),
    ]
    out = feed(m, spike)
    cands = clinical(out, "vitals")
    # 95 bpm is inside the plan's bounds (45-120), yet far from this resident's usual 62
    assert [c.kind for c in cands] == ["vitals_anomaly"] and cands[0].family == Family.CLINICAL
    assert [c for c in out.candidates if c.detector == "vitals_bounds"] == []
    assert any(s.detector == "vitals" and s.alert for s in out.scores)
    k_before = m.detectors["vitals"].signals["heart_rate"].k  # type: ignore[attr-defined]
    m.feedback(Feedback("a2", "r-1", cands[0].incident_key, "vitals_anomaly", "vitals", Outcome.FALSE_ALARM, t))
    assert m.detectors["vitals"].signals["heart_rate"].k == k_before + 0.5  # type: ignore[attr-defined]
    assert m.detectors["vitals"].false_alarms == 1


def test_feedback_for_a_rule_is_counted_but_does_not_move_the_care_plan_limit() -> None:
    m = ResidentMonitor("r-1", "h-1")
    fb = Feedback("a3", "r-1", "r-1:inactivity:1", "inactivity", "inactivity", Outcome.FALSE_ALARM, local(1, 12))
    m.feedback(fb)
    m.feedback(replace(fb, detector="no_such_detector"))
    assert m.detectors["inactivity"].false_alarms == 1
    assert m.plan.inactivity_limit_min == 120
