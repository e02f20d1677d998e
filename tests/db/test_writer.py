"""The storage writer on the real PostgreSQL: idempotency, real faults, back-pressure."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from carechain.db.writer import (
    Backpressure,
    BufferedWriter,
    EventWriter,
    RetryPolicy,
    StorageUnavailable,
)
from carechain.events import Event, make_event_id

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def make_events(resident: str, n: int, start: datetime = T0, kind: str = "heart_rate") -> list[Event]:
    out = []
    for i in range(n):
        ts = start + timedelta(seconds=i)
        device = f"{resident}-dev"
        value: bool | float | str = 60.0 + i % 40
        if kind == "motion":
            value = i % 2 == 0
        elif kind == "door":
            value = "open" if i % 2 else "closed"
        out.append(
            Event(
                event_id=make_event_id(device, i, ts),
                resident_id=resident,
                home_id=f"home-{resident}",
                gateway_id="gw-x",
                device_id=device,
                room="kitchen",
                kind=kind,
                value=value,
                ts=ts,
                seq=i,
                received_at=ts + timedelta(milliseconds=50),
            )
        )
    return out


def count(dsn: str, resident: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM observations WHERE resident_id = %s", (resident,)).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture()
def writer(db_dsn: str) -> Iterator[EventWriter]:
    w = EventWriter(db_dsn, pool_size=2, retry=RetryPolicy(deadline_s=20), name=f"cc-test-{uuid.uuid4().hex[:8]}")
    yield w
    w.close()


def test_replayed_batch_adds_nothing(writer: EventWriter, db_dsn: str) -> None:
    events = make_events("res-idem", 500)
    assert writer.write_events(events) == 500
    assert writer.write_events(events) == 0  # replay
    assert writer.write_events(events[250:] + events[:10] + events[:10]) == 0  # overlap and duplicates in a batch
    more = make_events("res-idem", 600)  # first 500 known, 100 new
    assert writer.write_events(more) == 100
    assert count(db_dsn, "res-idem") == 600


def test_values_map_to_columns_and_late_flags(writer: EventWriter, db_dsn: str) -> None:
    motion = make_events("res-map", 2, kind="motion")
    door = make_events("res-map", 2, start=T0 + timedelta(hours=1), kind="door")
    hr = make_events("res-map", 1, start=T0 + timedelta(hours=2))
    hr = [dataclasses.replace(hr[0], extra={"late": True})]  # the worker's own late flag
    assert writer.write_events(motion + door + hr, late_ids={door[1].event_id}) == 5
    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute(
            "SELECT kind, value_num, value_text, late FROM observations WHERE resident_id = 'res-map' ORDER BY ts"
        ).fetchall()
    assert rows == [
        ("motion", 1.0, None, False),
        ("motion", 0.0, None, False),
        ("door", None, "closed", False),
        ("door", None, "open", True),
        ("heart_rate", 60.0, None, True),
    ]


def test_scores_and_checkpoints(writer: EventWriter) -> None:
    scores = [
        {
            "resident_id": "res-sc",
            "detector": "rhythm",
            "detector_version": "1",
            "ts": T0,
            "value": 0.4,
            "threshold": 0.9,
            "features": {"room": "kitchen", "n": 3},
        },
        {
            "resident_id": "res-sc",
            "detector": "rhythm",
            "detector_version": "1",
            "ts": T0 + timedelta(hours=1),
            "score": 0.95,
            "threshold": 0.9,
            "features": None,
        },
    ]
    assert writer.write_scores(scores) == 2
    assert writer.write_scores(scores) == 0
    writer.save_checkpoint("res-sc", "rhythm", "1", b"\x01state-a")
    writer.save_checkpoint("res-sc", "rhythm", "2", b"\x02state-b")  # replaces
    writer.save_checkpoints([("res-sc2", "vitals", "1", b"v"), ("res-sc", "vitals", "1", b"w")])
    got = writer.load_checkpoints(["res-sc"])
    assert [(c.detector, c.version, c.state) for c in got] == [("rhythm", "2", b"\x02state-b"), ("vitals", "1", b"w")]
    assert [c.resident_id for c in writer.load_checkpoints(detector="vitals")] == ["res-sc", "res-sc2"]


def test_connection_terminated_mid_write_retries_and_loses_nothing(db_dsn: str) -> None:
    """A real fault: the writer's backend is killed (pg_terminate_backend) while its INSERT runs."""
    app = f"cc-kill-{uuid.uuid4().hex[:8]}"
    events = make_events("res-kill", 2_000)
    with EventWriter(db_dsn, pool_size=1, retry=RetryPolicy(deadline_s=20), name=app) as writer:
        writer.write_events(events[:100])  # warm the pool
        result: dict[str, object] = {}
        with psycopg.connect(db_dsn) as blocker:
            # Hold a lock that the writer's INSERT must wait for, so the kill lands mid-write.
            blocker.execute("LOCK TABLE observations IN SHARE MODE")
            t = threading.Thread(target=lambda: result.update(n=writer.write_events(events)))
            t.start()
            killed = False
            with psycopg.connect(db_dsn, autocommit=True) as admin:
                for _ in range(200):
                    row = admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                        (app,),
                    ).fetchone()
                    if row:
                        assert admin.execute("SELECT pg_terminate_backend(%s)", (row[0],)).fetchone() == (True,)
                        killed = True
                        break
                    time.sleep(0.05)
            blocker.rollback()  # release the lock; the retry goes through
            t.join(30)
        assert killed, "the writer never reached the INSERT"
        assert not t.is_alive()
        assert result["n"] == 1_900  # the killed attempt rolled back; the retry inserted the rest
    assert count(db_dsn, "res-kill") == 2_000


def test_idle_pooled_connection_killed_between_writes(db_dsn: str) -> None:
    app = f"cc-idle-{uuid.uuid4().hex[:8]}"
    events = make_events("res-idle", 300)
    with EventWriter(db_dsn, pool_size=1, retry=RetryPolicy(deadline_s=20), name=app) as writer:
        assert writer.write_events(events[:100]) == 100
        with psycopg.connect(db_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,))
        assert writer.write_events(events) == 200
    assert count(db_dsn, "res-idle") == 300


def test_unreachable_database_raises_storage_unavailable_after_deadline() -> None:
    # Nothing listens on port 1 of loopback: connection refused on every attempt.
    dsn = "postgresql://carechain:carechain@127.0.0.1:1/carechain"
    with EventWriter(dsn, retry=RetryPolicy(deadline_s=1.0, initial_s=0.05, max_s=0.2)) as writer:
        start = time.monotonic()
        with pytest.raises(StorageUnavailable) as info:
            writer.write_events(make_events("res-away", 3))
        assert 0.9 <= time.monotonic() - start < 10
        assert isinstance(info.value, ConnectionError)  # adapters treating ConnectionError as "retry later" still do


def test_buffer_signals_backpressure_when_full(writer: EventWriter, db_dsn: str) -> None:
    buf = BufferedWriter(writer, capacity=1_000, batch_size=300)
    events = make_events("res-bp", 1_500)
    buf.submit(events[:600])
    buf.submit(events[600:1_000])
    assert buf.full and buf.flush_due
    with pytest.raises(Backpressure) as info:
        buf.submit(events[1_000:1_010])
    assert (info.value.pending, info.value.capacity, info.value.offered) == (1_000, 1_000, 10)
    assert buf.pending == 1_000  # nothing of the refused batch was taken
    assert buf.flush() == 1_000
    assert buf.pending == 0 and not buf.full
    buf.submit(events[1_000:], late_ids={events[1_499].event_id})
    assert buf.flush() == 500
    assert count(db_dsn, "res-bp") == 1_500
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM observations WHERE resident_id = 'res-bp' AND late").fetchone() == (
            1,
        )


def test_buffer_keeps_events_when_the_database_stays_away() -> None:
    dsn = "postgresql://carechain:carechain@127.0.0.1:1/carechain"
    with EventWriter(dsn, retry=RetryPolicy(deadline_s=0.3, initial_s=0.05, max_s=0.1)) as w:
        buf = BufferedWriter(w, capacity=10, batch_size=4)
        buf.submit(make_events("res-keep", 6))
        with pytest.raises(StorageUnavailable):
            buf.flush()
        assert buf.pending == 6
