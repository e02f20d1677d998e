"""The writer's pure parts: value mapping, score rows, backoff bounds, which errors are retried."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

from carechain.db.writer import RetryPolicy, is_transient, observation_row, score_row
from carechain.events import Event

TS = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _event(value: bool | float | int | str | None, kind: str = "motion") -> Event:
    return Event("e1", "res-1", "home-1", "gw-1", "dev-1", "hall", kind, value, TS, 7, TS)


def test_values_go_to_the_right_column() -> None:
    assert observation_row(_event(True), False)[6:8] == (1.0, None)
    assert observation_row(_event(False), False)[6:8] == (0.0, None)
    assert observation_row(_event(72, "heart_rate"), False)[6:8] == (72.0, None)
    assert observation_row(_event(36.6, "temperature"), False)[6:8] == (36.6, None)
    assert observation_row(_event("open", "door"), False)[6:8] == (None, "open")
    assert observation_row(_event(None, "gateway.heartbeat"), True)[6:8] == (None, None)
    row = observation_row(_event(True), True)
    assert row[0] == "e1" and row[8] == TS and row[10] == 7 and row[11] is True


def test_score_rows_from_objects_and_mappings() -> None:
    @dataclass
    class Score:  # the shape of streams.monitor.Score
        resident_id: str = "res-1"
        detector: str = "rhythm"
        detector_version: str = "2"
        ts: datetime = TS
        value: float = 0.7
        threshold: float | None = 0.9
        features: dict[str, int] = field(default_factory=lambda: {"n": 3})

    row = score_row(Score())
    assert row[:6] == ("res-1", "rhythm", "2", TS, 0.7, 0.9)
    assert isinstance(row[6], Jsonb) and row[6].obj == {"n": 3}
    mapped = score_row({"resident_id": "r", "detector": "d", "version": 1, "ts": TS, "score": 1, "threshold": None})
    assert mapped == ("r", "d", "1", TS, 1.0, None, None)


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(deadline_s=5, initial_s=0.1, max_s=1.0)
    for attempt in range(12):
        cap = min(1.0, 0.1 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(0.0 <= d <= cap for d in delays)
    assert len({round(policy.delay(5), 6) for _ in range(20)}) > 1  # jitter: not all the same


def test_only_outages_are_retried() -> None:
    assert is_transient(psycopg.OperationalError("connection refused"))
    assert is_transient(errors.AdminShutdown())
    assert is_transient(psycopg.InterfaceError("the connection is closed"))
    assert is_transient(errors.SerializationFailure())
    assert not is_transient(errors.UniqueViolation())
    assert not is_transient(errors.UndefinedTable())
    assert not is_transient(errors.InvalidTextRepresentation())
    assert not is_transient(ValueError("bad"))
