"""The infection-signs model: night trips out of bed, Poisson evidence, sustained rises (crafted sequences)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from carechain.candidates import Feedback, Outcome
from carechain.care_plan import CarePlan
from carechain.events import Event, Kind
from streams.models.bathroom import DEFAULT_K, BathroomSeries, NightTrips, poisson_llr
from streams.monitor import MonitorOutput, ResidentMonitor
from streams.synthetic import Home
from tests.streams.conftest import local

MIN = timedelta(minutes=1)


def _poisson(rng: random.Random, lam: float) -> int:
    n, p, limit = 0, rng.random(), 2.718281828459045**-lam
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def test_poisson_evidence_is_for_a_rise_and_against_a_usual_count() -> None:
    assert poisson_llr(0, 1.0, 3.0) < 0 < poisson_llr(4, 1.0, 3.0)
    assert poisson_llr(4, 0.5, 3.0) > poisson_llr(4, 2.0, 3.0)


def test_series_is_quiet_on_usual_days_and_alerts_within_three_days_of_a_rise() -> None:
    rng = random.Random(7)
    s = BathroomSeries()
    alerts = [s.step(_poisson(rng, 6.0), _poisson(rng, 1.0))[1] for _ in range(60)]
    assert not any(alerts)
    ramp = ((1.4, 2.25), (1.8, 3.5), (1.8, 3.5))
    rise = [s.step(_poisson(rng, 6.0 * m), _poisson(rng, 1.0 * n))[1] for m, n in ramp]
    assert any(rise)


def test_one_restless_night_is_not_sustained() -> None:
    s = BathroomSeries()
    for _ in range(14):
        s.step(6, 1)
    assert not s.step(6, 4)[1]
    assert not s.step(6, 1)[1]
    assert s.cusum < DEFAULT_K


def test_a_suspected_infection_does_not_teach_the_baseline() -> None:
    s = BathroomSeries()
    for _ in range(10):
        s.step(6, 1)
    mean = s.night.mean
    s.step(12, 5)
    assert s.night.mean == mean


def test_trips_count_bed_out_bathroom_bed_in_per_night_and_skip_naps() -> None:
    trips = NightTrips()
    trips.bed_out(0.0)
    trips.bathroom(60.0)
    assert trips.bed_in(400.0, night=10, local_hour=2)
    trips.bed_out(1000.0)  # up, but not to the bathroom
    assert not trips.bed_in(1200.0, night=10, local_hour=2)
    trips.bed_out(2000.0)
    trips.bathroom(2100.0)
    assert not trips.bed_in(2400.0, night=10, local_hour=14)  # a nap
    trips.bed_out(3000.0)
    trips.bathroom(3100.0)
    assert not trips.bed_in(3000.0 + 3 * 3600, night=10, local_hour=3)  # up for hours: not a trip
    assert trips.take(10) == 1 and trips.take(10) == 0
    raw = trips.dump()
    again = NightTrips()
    again.load(raw)
    assert again.dump() == raw


def _bed(home: Home, ts: datetime, value: str) -> Event:
    return home.event(Kind.BED, value, ts, room="bedroom")


def _night_with_trips(home: Home, evening: datetime, n: int) -> list[Event]:
    evs = [home.heartbeat(evening + h * 60 * MIN) for h in range(-2, 22)]
    evs.append(home.motion(evening - 10 * MIN, room="bathroom"))  # the evening routine, before bed
    evs.append(_bed(home, evening, "in"))
    for i in range(n):
        t = evening + (60 + 50 * i) * MIN
        evs += [_bed(home, t, "out"), home.motion(t + 2 * MIN, room="bathroom"), _bed(home, t + 8 * MIN, "in")]
    wake = evening + 9 * 60 * MIN
    evs += [_bed(home, wake, "out"), home.motion(wake + 5 * MIN, room="bathroom")]
    for h in range(1, 12):
        evs.append(home.motion(wake + h * 60 * MIN, room="kitchen"))
    for h in (2, 5, 8):
        evs.append(home.motion(wake + h * 60 * MIN + 30 * MIN, room="bathroom"))
    return sorted(evs, key=lambda e: e.ts)


def test_monitor_counts_trips_out_of_bed_and_alerts_on_a_sustained_rise() -> None:
    plan = CarePlan(resident_id="r-1", gateway_silence_s=2 * 3600, inactivity_limit_min=24 * 60, wake_margin_min=600)
    home, m = Home(), ResidentMonitor("r-1", "h-1", plan)
    out = MonitorOutput()
    for d in range(12):
        for e in _night_with_trips(home, local(1 + d, 22), 1):
            out.extend(m.process(e))
    assert [c for c in out.candidates if c.detector == "bathroom"] == []
    for d in range(12, 15):
        for e in _night_with_trips(home, local(1 + d, 22), 5):
            out.extend(m.process(e))
    cands = [c for c in out.candidates if c.detector == "bathroom"]
    assert [c.kind for c in cands] == ["infection_signs"]
    assert "out of bed" in cands[0].evidence.contributing[0] and "urinvägsinfektion" in cands[0].reason_sv
    k = m.detectors["bathroom"].series.k  # type: ignore[attr-defined]
    fb = Feedback("a1", "r-1", cands[0].incident_key, "infection_signs", "bathroom", Outcome.FALSE_ALARM, local(20, 0))
    m.feedback(fb)
    assert m.detectors["bathroom"].series.k == k + 1.0  # type: ignore[attr-defined]


def test_fever_supports_but_one_feverish_day_alone_is_not_an_alert() -> None:
    s = BathroomSeries()
    for i in range(14):
        s.step(6, 1, 36.6 + (0.01 if i % 2 else -0.01))
    assert not s.step(6, 1, 37.1)[1]  # fever, usual visits: not yet
    assert s.step(10, 4, 37.1)[1]  # fever and more visits: infection signs
    mean = s.temp.mean
    s.step(6, 1, 37.1)
    assert s.temp.mean == mean  # a feverish day does not teach the usual temperature
