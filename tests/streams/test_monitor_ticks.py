"""Due-only ticks: checking deadlines only when one may be due acts exactly as checking them every tick."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from carechain.care_plan import CarePlan
from carechain.events import Event, Kind
from streams.monitor import MonitorOutput, ResidentMonitor
from streams.synthetic import Home
from tests.streams.conftest import local


def _story(seed: int) -> list[Event]:
    """Three days of a home with the things deadlines are about: outages, dead sensors, late mornings, no doses."""
    rng = random.Random(seed)
    home = Home()
    evs: list[Event] = []
    outage = (local(2, rng.randrange(8, 20)), timedelta(minutes=rng.choice([2, 20, 200])))
    for d in range(1, 4):
        day = local(d, 0)
        wake = 7 * 3600 + rng.randrange(0, 4 * 3600)  # some mornings late enough for "not up"
        still = rng.randrange(wake, 20 * 3600)  # a still afternoon now and then: inactivity
        still_end = still + rng.choice([1800, 3 * 3600, 5 * 3600])
        t = 0.0
        while t < 86400:
            t += rng.expovariate(1 / 60)
            at = day + timedelta(seconds=t)
            if outage[0] <= at < outage[0] + outage[1]:
                continue  # the gateway is silent
            evs.append(home.heartbeat(at))
            if t < wake or t > 22 * 3600 or still <= t < still_end or rng.random() < 0.5:
                continue
            kind = rng.choice([Kind.MOTION, Kind.MOTION, Kind.MOTION, Kind.DOOR, Kind.BED, Kind.HEART_RATE, Kind.SPO2])
            room = rng.choice(["kitchen", "living", "bathroom", "hall", "bedroom"])
            value: object = {
                Kind.MOTION: True,
                Kind.DOOR: rng.choice(["open", "closed"]),
                Kind.BED: rng.choice(["in", "out"]),
                Kind.HEART_RATE: round(rng.gauss(70, 15), 1),
                Kind.SPO2: round(rng.gauss(94, 3), 1),
            }[kind]
            device = "watch" if kind in (Kind.HEART_RATE, Kind.SPO2) else None
            evs.append(home.event(kind, value, at, room=None if device else room, device=device))
        for slot in ("08:00", "20:00"):
            h = int(slot[:2])
            evs.append(home.event(Kind.DOSE_DUE, slot, day + timedelta(hours=h), device="robot"))
            if rng.random() < 0.6:
                late = timedelta(minutes=rng.choice([5, 45, 300]))
                evs.append(home.event(Kind.DOSE_TAKEN, slot, day + timedelta(hours=h) + late, device="robot"))
        if rng.random() < 0.5:
            evs.append(home.event(Kind.GATEWAY_STATUS, "offline", day + timedelta(hours=rng.randrange(9, 21))))
        for h in range(0, 24 if d < 3 else 12, 3):  # a spare-room sensor that dies on the third day
            evs.append(home.event(Kind.BATTERY, 50.0, day + timedelta(hours=h), device="pir-spare"))
    evs.sort(key=lambda e: e.ts)
    # a few backfilled and out-of-order events (late ones never alert, but their evidence counts)
    for _ in range(20):
        k = rng.randrange(len(evs) - 40)
        e = evs[k]
        evs.insert(k + rng.randrange(1, 30), replace(e, event_id=e.event_id + "-again"))
    return evs


def _run(evs: list[Event], full: bool, seed: int) -> tuple[list[tuple[str, str, datetime]], bytes]:
    rng = random.Random(seed)
    paused: set[str] = set()
    m = ResidentMonitor(
        "r-1", "h-1", CarePlan(resident_id="r-1", gateway_silence_s=300, device_silence_min=60), paused=paused
    )
    out = MonitorOutput()
    now = evs[0].ts
    i = 0
    end = evs[-1].ts + timedelta(hours=30)
    step = 0
    while now <= end:
        while i < len(evs) and evs[i].ts <= now:
            out.extend(m.process(evs[i]))
            i += 1
        if full:
            m.recheck()  # the reference: every tick checks every deadline
        out.extend(m.tick(now))
        step += 1
        if step % 4000 == 0:  # the worker changes things between ticks
            choice = rng.random()
            if choice < 0.3:
                paused.symmetric_difference_update({"inactivity"})
            elif choice < 0.6:
                m.plan = replace(m.plan, inactivity_limit_min=rng.choice([60, 120, 240]))
            else:
                m = ResidentMonitor.from_bytes(m.to_bytes(), m.plan, paused)  # a restart
        jump = rng.choice([5, 5, 5, 5, 60, 300])
        now += timedelta(seconds=jump if rng.random() > 0.01 else -20)  # a lagging partition's clock, briefly back
    got = [(c.incident_key, c.state.value, c.detected_at) for c in out.candidates]
    return got, m.to_bytes()


@pytest.mark.parametrize("seed", [1, 3, 4])
def test_due_only_ticks_give_the_same_candidates_and_state_as_checking_every_tick(seed: int) -> None:
    evs = _story(seed)
    due_only, state = _run(evs, full=False, seed=seed)
    every, state_every = _run(evs, full=True, seed=seed)
    assert due_only == every
    assert state == state_every  # suppressed counts included
    kinds = {key.split(":")[1] for key, _, _ in every}
    # the deadlines under test did fire
    assert {"gateway_silent", "dose_missed", "device_silent", "inactivity"} <= kinds, kinds


def test_a_quiet_monitor_skips_the_rules_until_its_next_deadline(home: Home) -> None:
    m = ResidentMonitor("r-1", "h-1", CarePlan(resident_id="r-1"))
    t = local(3, 10)
    m.process(home.motion(t, room="kitchen"))
    m.process(home.heartbeat(t))
    m.tick(t)
    due = m.next_due()
    assert t.timestamp() < due <= t.timestamp() + 45  # the gateway's silence limit comes first
    checked = m._due_at  # when deadlines were last checked
    m.tick(t + timedelta(seconds=20))
    assert m._due_at == checked  # nothing due: the rules were not asked
    out = m.tick(t + timedelta(seconds=50))  # past the heartbeat deadline: checked, and the gateway is silent
    assert m._due_at == (t + timedelta(seconds=50)).timestamp()
    assert [c.kind for c in out.candidates] == ["gateway_silent"]
    m.tick(t + timedelta(seconds=55))  # an open incident: checked every tick until it clears
    assert m._due_at == (t + timedelta(seconds=55)).timestamp()
