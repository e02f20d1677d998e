"""Event time: arrival order within the allowed lateness does not matter; late events never alert."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carechain.care_plan import CarePlan, Dose
from carechain.events import Event, Kind
from streams.monitor import DEFAULT_LATENESS_S, ResidentMonitor
from streams.synthetic import Home
from tests.streams.conftest import local

LATENESS = DEFAULT_LATENESS_S
START = local(24, 1, 30)  # a night: bed/door matter; the day begins at 07:00
SPAN_S = 3 * 3600

# (kind, value) pairs the generator draws from: every rule that acts on arrival or in order.
READINGS = [
    (Kind.MOTION, True),
    (Kind.MOTION, False),
    (Kind.BED, "out"),
    (Kind.BED, "in"),
    (Kind.DOOR, "open"),
    (Kind.DOOR, "closed"),
    (Kind.HEART_RATE, 70.0),
    (Kind.HEART_RATE, 130.0),
    (Kind.SPO2, 97.0),
    (Kind.SPO2, 84.0),
    (Kind.TEMPERATURE, 38.9),
    (Kind.TEMPERATURE, 36.8),
    (Kind.BATTERY, 9.0),
    (Kind.BATTERY, 80.0),
    (Kind.ROBOT_FAULT, "E1"),
    (Kind.DOSE_DISPENSED, "08:00"),
    (Kind.DOSE_MISSED, "08:00"),
    (Kind.DOSE_TAKEN, "08:00"),
    (Kind.REFILL_NEEDED, 4),
    (Kind.REFILL_NEEDED, 30),
]

stories = st.lists(
    st.tuples(st.integers(0, SPAN_S), st.integers(0, len(READINGS) - 1), st.sampled_from(["bedroom", "hall"])),
    min_size=1,
    max_size=40,
)


def build(story: list[tuple[int, int, str]], falls: list[int]) -> list[Event]:
    home = Home()
    evs = home.heartbeats(START, START + timedelta(seconds=SPAN_S + 1), every_s=60)
    for offset, i, room in story:
        kind, value = READINGS[i]
        evs.append(home.event(kind, value, START + timedelta(seconds=offset), room=room, device=f"d-{kind}-{room}"))
    for offset in sorted(set(falls)):
        # falls from one sensor less than 30 s apart are one incident: keep them apart
        if all(abs(offset - o) > 30 for o in falls if o < offset):
            evs.append(home.event(Kind.FALL, True, START + timedelta(seconds=offset), room="hall"))
    return sorted(evs, key=lambda e: (e.ts, e.event_id))


def run(evs: list[Event]) -> set[str]:
    plan = CarePlan(resident_id="r-1", doses=(Dose("08:00"),))
    m = ResidentMonitor("r-1", "h-1", plan)
    ids = []
    for e in evs:
        out = m.process(e)
        assert not any(o.extra.get("late") for o in out.observations)
        ids += [c.candidate_id for c in out.candidates]
    end = max(e.ts for e in evs) + timedelta(seconds=LATENESS + 1)
    ids += [c.candidate_id for c in m.tick(end).candidates]
    assert len(ids) == len(set(ids)), "one incident state proposed twice"
    return set(ids)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(story=stories, falls=st.lists(st.integers(0, SPAN_S), max_size=4), jitter=st.randoms(use_true_random=False))
def test_any_arrival_order_within_lateness_gives_the_same_candidates(
    story: list[tuple[int, int, str]], falls: list[int], jitter: st.SearchStrategy
) -> None:
    evs = build(story, falls)
    # shuffle so that no event arrives after one more than the lateness newer than it
    shuffled = sorted(evs, key=lambda e: e.ts.timestamp() + jitter.uniform(0, LATENESS - 1))  # type: ignore[attr-defined]
    assert run(shuffled) == run(evs)


@settings(max_examples=60, deadline=None)
@given(story=stories, late=stories)
def test_late_events_never_produce_candidates(
    story: list[tuple[int, int, str]], late: list[tuple[int, int, str]]
) -> None:
    home = Home()
    m = ResidentMonitor("r-1", "h-1")
    end = START + timedelta(seconds=SPAN_S + LATENESS + 10)
    for e in build(story, []):
        m.process(e)
    m.process(home.heartbeat(end))
    before = m.late_count
    for offset, i, room in late:
        kind, value = READINGS[i]
        # reaching the bridge long after it happened (a gateway's backfill), on either lane
        ev = home.event(kind, value, START + timedelta(seconds=offset), room=room, received_at=end)
        out = m.process(ev)
        assert out.candidates == []
        assert out.observations[0].extra["late"] is True
    fall = home.event(Kind.FALL, True, START, room="hall", received_at=end)
    assert m.process(fall).candidates == []
    assert m.late_count == before + len(late) + 1


def test_backfill_after_reconnect_is_stored_as_late_and_raises_nothing() -> None:
    home = Home()
    m = ResidentMonitor("r-1", "h-1")
    t = local(24, 12, 0)
    for e in home.heartbeats(t, t + timedelta(minutes=5)):
        m.process(e)
    m.tick(t + timedelta(minutes=5))
    # the gateway was away; it comes back and sends fresh readings, then its buffer from the past
    back = t + timedelta(minutes=30)
    m.process(home.heartbeat(back))
    m.tick(back)
    backfill = [
        home.event(Kind.FALL, True, t + timedelta(minutes=10), received_at=back),
        home.event(Kind.HEART_RATE, 150.0, t + timedelta(minutes=11), received_at=back),
    ]
    outs = [m.process(e) for e in backfill]
    assert all(o.candidates == [] for o in outs)
    assert [o.observations[0].extra.get("late") for o in outs] == [True, True]
    assert m.late_count == 2


def test_a_late_activity_still_counts_as_evidence_of_wellbeing() -> None:
    home = Home()
    m = ResidentMonitor("r-1", "h-1")
    t = local(24, 10, 0)
    m.process(home.heartbeat(t + timedelta(minutes=10)))
    out = m.process(home.motion(t))
    assert out.observations[0].extra.get("late") is True and out.candidates == []
    assert m.last_activity == t.timestamp()


def test_a_backlog_after_a_worker_restart_is_on_time() -> None:
    """Events that reached the bridge in time are not late, however long the worker took to see them."""
    home = Home()
    m = ResidentMonitor("r-1", "h-1")
    t = local(24, 12, 0)
    m.process(home.heartbeat(t))
    # the worker was down for ten minutes; the bulk backlog is processed first, then the urgent lane
    for e in home.heartbeats(t, t + timedelta(minutes=10)):
        m.process(e)
    m.tick(t + timedelta(minutes=10))
    fall = home.event(Kind.FALL, True, t + timedelta(minutes=1), room="hall")
    out = m.process(fall)
    assert [c.kind for c in out.candidates] == ["fall"]
    assert not out.observations[0].extra.get("late")
