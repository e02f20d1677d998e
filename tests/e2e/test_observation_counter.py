"""The e2e bench's row counter: exact like ``count(*)``, without scanning the whole table each poll."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from carechain.bench_e2e import Observations
from carechain.db.writer import EventWriter
from carechain.events import Event, make_event_id
from carechain.settings import Settings
from tests.conftest import private_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def dsn(settings: Settings) -> Iterator[str]:
    with private_database(settings, "cc_e2e_count") as url:
        yield url


def _events(n: int, start: int, day: datetime) -> list[Event]:
    out = []
    for i in range(start, start + n):
        ts = day + timedelta(seconds=i % 80_000)
        dev = f"cnt-d{i % 7}"
        out.append(
            Event(make_event_id(dev, i, ts), f"cnt-r{i % 5}", "cnt-h", "cnt-gw", dev, "hall", "motion", True, ts, i, ts)
        )
    return out


def _exact(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM observations").fetchone()
    return int(row[0]) if row else 0


def test_count_follows_count_star_across_marks_and_partitions(dsn: str) -> None:
    obs = Observations(dsn)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with EventWriter.from_settings(Settings(database_url=dsn)) as writer:
        assert obs.mark() == 0
        writer.write_events(_events(30_000, 0, today))  # many pages past the mark
        assert obs.count() == _exact(dsn) == 30_000
        assert obs.mark() == 30_000
        writer.write_events(_events(5_000, 30_000, today))
        # Another day's partition, possibly created after the mark, counts too.
        writer.write_events(_events(2_000, 35_000, today - timedelta(days=3)))
        assert obs.count() == _exact(dsn) == 37_000
        assert obs.wait_for(37_000, stall_s=5.0)[0] == 37_000
    assert obs.exact_counts == 2 and obs.tail_counts >= 3  # the polls did not count the whole table
