"""The worker's PostgreSQL seams on the real database: care plans, global pauses, observations and scores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from carechain.care_plan import CarePlan
from carechain.settings import Settings
from streams.monitor import MonitorOutput, ResidentMonitor, Score
from streams.sink import WriterSink, open_sink
from streams.store import CarePlanStore
from streams.synthetic import Home
from tests.conftest import private_database
from tests.streams.conftest import local

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dsn(settings: Settings) -> Iterator[str]:
    with private_database(settings, "cc_streams") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO organisations (org_id, name, kind) VALUES ('k1', 'Kommun', 'kommun')")
            conn.execute("INSERT INTO organisations (org_id, name, kind) VALUES ('r1', 'Region', 'region')")
            conn.execute("INSERT INTO homes (home_id, kommun_org_id, region_org_id) VALUES ('h-1', 'k1', 'r1')")
            conn.execute(
                "INSERT INTO residents (resident_id, home_id, kommun_org_id, region_org_id)"
                " VALUES ('r-1', 'h-1', 'k1', 'r1')"
            )
        yield url


def test_care_plans_and_global_pauses_come_from_the_database(dsn: str) -> None:
    plan = CarePlan(resident_id="r-1", inactivity_limit_min=45, paused_detectors=frozenset({"rhythm"}))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO care_plans (resident_id, plan) VALUES ('r-1', %s)", (Jsonb(plan.to_dict()),))
        conn.execute(
            "INSERT INTO detector_pauses (detector, resident_id, paused, reason, changed_by)"
            " VALUES ('decline', NULL, true, 'review', 'admin'), ('fall', 'r-1', true, 'x', 'admin')"
        )
    store = CarePlanStore(dsn)
    try:
        got = store.plans(["r-1", "r-unknown"])
        assert got["r-1"].inactivity_limit_min == 45 and "rhythm" in got["r-1"].paused_detectors
        assert "r-unknown" not in got  # the worker gives such residents the default plan
        assert set(store.changed()) == {"r-1"}
        assert store.changed() == {}  # nothing changed since
        assert store.global_pauses() == {"decline"}  # per-resident switches live in the care plan
    finally:
        store.close()


def test_missing_database_means_default_plans_not_a_crash() -> None:
    store = CarePlanStore("postgresql://nobody:x@127.0.0.1:9/none")
    assert store.plans(["r-1"]) == {}
    assert store.global_pauses() is None


def test_observations_and_scores_are_stored_late_flag_included(dsn: str, settings: Settings) -> None:
    home = Home()
    m = ResidentMonitor("r-1", "h-1")
    t = local(24, 12, 0)
    out = MonitorOutput()
    for e in home.heartbeats(t, t + timedelta(minutes=5)):
        out.extend(m.process(e))
    out.extend(m.process(home.motion(t, room="kitchen")))  # five minutes late
    assert [o.extra.get("late") for o in out.observations][-1] is True
    sink = open_sink(settings.model_copy(update={"database_url": dsn}))
    assert isinstance(sink, WriterSink)
    score = Score("r-1", "h-1", "vitals", "1.0", t, 1.5, 4.0, False, {"kind": "heart_rate"})
    try:
        sink.write(out.observations, [score])
        sink.write(out.observations, [score])  # a replay adds nothing
    finally:
        sink.close()
    with psycopg.connect(dsn) as conn:
        n, late = conn.execute("SELECT count(*), count(*) FILTER (WHERE late) FROM observations").fetchone()  # type: ignore[misc]
        assert (n, late) == (len(out.observations), 1)
        assert conn.execute("SELECT detector, score FROM scores").fetchall() == [("vitals", 1.5)]
