"""Time-series queries on crafted data: buckets, summaries and the device status, in either mode."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from carechain.db import queries
from carechain.db.writer import EventWriter
from carechain.events import Event, make_event_id

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 20, tzinfo=UTC)
R = "res-q"


def at(h: int, m: int = 0, s: int = 0) -> datetime:
    return DAY + timedelta(hours=h, minutes=m, seconds=s)


def ev(kind: str, ts: datetime, value: bool | float | str | None, room: str = "kitchen", resident: str = R) -> Event:
    device = f"{resident}-{kind}-{room}"
    seq = int(ts.timestamp())
    return Event(
        event_id=make_event_id(device, seq, ts),
        resident_id=resident,
        home_id=f"home-{resident}",
        gateway_id=f"gw-{resident}",
        device_id=device,
        room=room,
        kind=kind,
        value=value,
        ts=ts,
        seq=seq,
        received_at=ts,
    )


CRAFTED = [
    ev("heart_rate", at(8, 10), 60.0, room="bedroom"),
    ev("heart_rate", at(8, 50), 80.0, room="bedroom"),
    ev("heart_rate", at(9, 5), 100.0, room="bedroom"),
    ev("heart_rate", at(10, 59, 59), 70.0, room="bedroom"),
    ev("spo2", at(8, 30), 95.0, room="bedroom"),
    ev("motion", at(8, 1), True),
    ev("motion", at(8, 2), True),
    ev("motion", at(8, 3), False),  # motion ended: not an activity event
    ev("motion", at(9, 30), True, room="bathroom"),
    ev("door", at(9, 40), "open", room="hall"),
    ev("door", at(9, 41), "closed", room="hall"),
    ev("medication.dose_taken", at(8, 5), "08:00", room="kitchen"),
    ev("motion", at(23, 30), True),  # 00:30 on the 21st in Stockholm
    # Someone else's data must never show up.
    ev("heart_rate", at(8, 20), 150.0, resident="res-other"),
    ev("motion", at(8, 20), True, resident="res-other"),
]


@pytest.fixture(scope="module")
def conn(db_dsn: str) -> Iterator[psycopg.Connection]:
    with EventWriter(db_dsn, pool_size=1) as w:
        assert w.write_events(CRAFTED) == len(CRAFTED)
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c


def test_timeline_raw_newest_first_with_keyset_and_kinds(conn: psycopg.Connection) -> None:
    rows = queries.timeline(conn, R, at(8), at(11))
    assert [r["ts"] for r in rows] == sorted((e.ts for e in CRAFTED[:12]), reverse=True)
    assert rows[0]["kind"] == "heart_rate" and rows[0]["value"] == 70.0
    door = [r for r in rows if r["kind"] == "door"]
    assert [r["value"] for r in door] == ["closed", "open"]
    page1 = queries.timeline(conn, R, at(8), at(11), limit=5)
    page2 = queries.timeline(conn, R, at(8), at(11), limit=5, after=(page1[-1]["ts"], page1[-1]["event_id"]))
    assert [r["event_id"] for r in page1 + page2] == [r["event_id"] for r in rows[:10]]
    doses = queries.timeline(conn, R, at(8), at(11), medication=True)
    assert [(r["kind"], r["value"]) for r in doses] == [("medication.dose_taken", "08:00")]
    sensors = queries.timeline(conn, R, at(8), at(11), medication=False)
    assert len(sensors) == len(rows) - 1 and all(not r["kind"].startswith("medication.") for r in sensors)
    hr = queries.timeline(conn, R, at(8), at(11), kinds=["heart_rate"])
    assert [r["value"] for r in hr] == [70.0, 100.0, 80.0, 60.0]
    assert set(rows[0]) >= {"event_id", "ts", "kind", "value", "device_id", "room", "late"}


def test_timeline_bucketed_by_any_interval(conn: psycopg.Connection) -> None:
    hourly = queries.timeline(conn, R, at(8), at(11), bucket=timedelta(hours=1), kinds=["heart_rate"])
    assert [(r["bucket"], r["n"], r["min"], r["avg"], r["max"]) for r in hourly] == [
        (at(8), 2, 60.0, 70.0, 80.0),
        (at(9), 1, 100.0, 100.0, 100.0),
        (at(10), 1, 70.0, 70.0, 70.0),
    ]
    two_h = queries.timeline(conn, R, at(8), at(11), bucket=timedelta(hours=2), kinds=["heart_rate"])
    assert [(r["bucket"], r["n"], r["max"]) for r in two_h] == [(at(8), 3, 100.0), (at(10), 1, 70.0)]
    # 90-minute buckets from midnight: 07:30, 09:00, 10:30.
    ninety = queries.timeline(conn, R, at(8), at(11), bucket=timedelta(minutes=90), kinds=["heart_rate"])
    assert [(r["bucket"], r["n"]) for r in ninety] == [(at(7, 30), 2), (at(9), 1), (at(10, 30), 1)]
    all_kinds = queries.timeline(conn, R, at(8), at(9), bucket=timedelta(hours=1))
    assert {r["kind"]: r["n"] for r in all_kinds} == {
        "heart_rate": 2,
        "spo2": 1,
        "motion": 3,
        "medication.dose_taken": 1,
    }
    assert next(r for r in all_kinds if r["kind"] == "medication.dose_taken")["avg"] is None


def test_timeline_local_day_buckets(conn: psycopg.Connection) -> None:
    days = queries.timeline(
        conn, R, DAY, DAY + timedelta(days=2), bucket=timedelta(days=1), kinds=["motion"], tz="Europe/Stockholm"
    )
    # Local (CET, UTC+1) midnight is 23:00 UTC; the 23:30 UTC motion belongs to the next local day.
    assert [(r["bucket"], r["n"]) for r in days] == [(DAY - timedelta(hours=1), 4), (at(23), 1)]


def test_vitals_trend_min_avg_max(conn: psycopg.Connection) -> None:
    trend = queries.vitals_trend(conn, R, at(8), at(11), timedelta(hours=1))
    assert [(r["bucket"], r["kind"], r["min"], r["avg"], r["max"], r["n"]) for r in trend] == [
        (at(8), "heart_rate", 60.0, 70.0, 80.0, 2),
        (at(8), "spo2", 95.0, 95.0, 95.0, 1),
        (at(9), "heart_rate", 100.0, 100.0, 100.0, 1),
        (at(10), "heart_rate", 70.0, 70.0, 70.0, 1),
    ]
    three_h = queries.vitals_trend(conn, R, at(6), at(12), timedelta(hours=3), kinds=["heart_rate"])
    # 3-hour buckets from midnight: 06:00 (08:10, 08:50) and 09:00 (09:05, 10:59:59).
    assert [(r["bucket"], r["min"], r["avg"], r["max"], r["n"]) for r in three_h] == [
        (at(6), 60.0, 70.0, 80.0, 2),
        (at(9), 70.0, 85.0, 100.0, 2),
    ]
    odd = queries.vitals_trend(conn, R, at(8), at(11), timedelta(minutes=45), kinds=["heart_rate"])
    assert sum(r["n"] for r in odd) == 4 and [r["bucket"] for r in odd] == [at(7, 30), at(8, 15), at(9), at(10, 30)]


def test_activity_hourly_per_room(conn: psycopg.Connection) -> None:
    rows = queries.activity_hourly(conn, R, at(0), at(23))
    assert [(r["hour"], r["room"], r["events"]) for r in rows] == [(at(8), "kitchen", 2), (at(9), "bathroom", 1)]


def test_daily_summaries(conn: psycopg.Connection) -> None:
    rows = queries.daily_summaries(conn, R, DAY, DAY + timedelta(days=1))
    assert len(rows) == 1
    d = rows[0]
    assert d["day"] == DAY
    assert (d["motion_events"], d["bathroom_events"], d["door_openings"], d["doses_taken"], d["doses_missed"]) == (
        4,
        1,
        1,
        1,
        0,
    )
    assert d["heart_rate_avg"] == pytest.approx(77.5)


def test_device_status(db_dsn: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_dsn) as c:
        c.execute("INSERT INTO organisations VALUES ('k-ds', 'K', 'kommun'), ('r-ds', 'R', 'region')")
        c.execute("INSERT INTO homes (home_id, kommun_org_id, region_org_id) VALUES ('home-ds', 'k-ds', 'r-ds')")
        c.execute(
            "INSERT INTO residents (resident_id, home_id, kommun_org_id, region_org_id) VALUES"
            " ('res-ds', 'home-ds', 'k-ds', 'r-ds')"
        )
        c.execute("INSERT INTO gateways (gateway_id, home_id, last_seen_at) VALUES ('gw-ds', 'home-ds', %s)", (now,))
        c.execute(
            "INSERT INTO devices (device_id, gateway_id, home_id, device_kind, room, resident_id) VALUES"
            " ('res-ds-battery-hall', 'gw-ds', 'home-ds', 'motion', 'hall', 'res-ds'),"
            " ('dev-silent', 'gw-ds', 'home-ds', 'door', 'hall', 'res-ds'),"
            " ('res-ds-motion-kitchen', 'gw-ds', 'home-ds', 'motion', 'kitchen', NULL)"  # the home's resident's
        )
        c.commit()
    with EventWriter(db_dsn, pool_size=1) as w:
        w.write_events(
            [
                ev("battery", now - timedelta(hours=2), 80.0, room="hall", resident="res-ds"),
                ev("battery", now - timedelta(hours=1), 79.0, room="hall", resident="res-ds"),
                ev("motion", now - timedelta(minutes=5), True, room="kitchen", resident="res-ds"),
            ]
        )
    with psycopg.connect(db_dsn) as c:
        st = queries.device_status(c, "home-ds")
    assert st["home_id"] == "home-ds"
    assert [(g["gateway_id"], g["last_seen_at"]) for g in st["gateways"]] == [("gw-ds", now)]
    by_id = {d["device_id"]: d for d in st["devices"]}
    assert by_id["res-ds-battery-hall"]["battery"] == 79.0
    assert by_id["res-ds-battery-hall"]["last_reading_at"] == now - timedelta(hours=1)
    assert by_id["dev-silent"]["last_reading_at"] is None and by_id["dev-silent"]["battery"] is None
    # A device without its own resident reports the home's resident's readings.
    assert by_id["res-ds-motion-kitchen"]["last_reading_at"] == now - timedelta(minutes=5)


def test_bad_bucket_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(ValueError):
        queries.timeline(conn, R, at(8), at(9), bucket=timedelta(0))
    assert queries.storage_mode(conn) in ("postgresql", "timescaledb")
