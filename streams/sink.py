"""Where observations and scores go: an adapter seam in front of the storage writer.

The storage writer (``carechain.db.writer.EventWriter``) is batched and
idempotent by event id; ``write`` returns only when the batch is durable
(the writer retries while the database is away), which is what lets the
worker move Kafka offsets on afterwards. No I/O library is imported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from carechain.events import Event
from carechain.settings import Settings
from streams.monitor import Score

log = logging.getLogger(__name__)


class ObservationSink(Protocol):
    """Durable storage for what the monitors saw and scored."""

    def write(self, observations: Sequence[Event], scores: Sequence[Score]) -> None:
        """Store both; return only when durable (raise only for a bug, never for a passing outage)."""

    def close(self) -> None:
        """Release connections."""


class CountingSink:
    """Stores nothing and counts: for benchmarks of the worker alone, and tests."""

    def __init__(self) -> None:
        self.observations = 0
        self.scores = 0
        self.late = 0

    def write(self, observations: Sequence[Event], scores: Sequence[Score]) -> None:
        self.observations += len(observations)
        self.scores += len(scores)
        self.late += sum(1 for o in observations if o.extra.get("late"))

    def close(self) -> None:
        pass


class WriterSink:
    """The storage engineer's ``EventWriter``: observations always, scores when it has ``write_scores``."""

    def __init__(self, writer: Any, retry_max_s: float = 30.0) -> None:
        self.writer = writer
        self.retry_max_s = retry_max_s
        self._warned = False

    def write(self, observations: Sequence[Event], scores: Sequence[Score]) -> None:
        delay = 0.5
        while True:
            try:
                if observations:
                    self.writer.write_events(list(observations))
                if scores:
                    write_scores = getattr(self.writer, "write_scores", None)
                    if write_scores is not None:
                        write_scores(list(scores))
                    elif not self._warned:
                        self._warned = True
                        log.warning("the storage writer has no write_scores: detector scores are not stored")
                return
            except (OSError, ConnectionError, TimeoutError) as exc:
                # Back-pressure: the batch is not acknowledged until it is stored.
                log.warning("storage unavailable (%s); retrying in %.1f s", type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(self.retry_max_s, delay * 2)

    def close(self) -> None:
        close = getattr(self.writer, "close", None)
        if close is not None:
            close()


def open_sink(settings: Settings) -> ObservationSink:
    """The storage writer when it is installed; otherwise a counting sink with a loud warning."""
    try:
        from carechain.db.writer import EventWriter
    except ImportError:
        log.warning("carechain.db.writer is not available: observations and scores are NOT stored")
        return CountingSink()
    factory = getattr(EventWriter, "from_settings", None)
    writer = factory(settings) if factory is not None else EventWriter(settings.database_url)
    return WriterSink(writer)
