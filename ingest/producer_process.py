"""Kafka producing in a child process, so routing and producing run on two cores.

kafka-python spends ~15 µs of pure Python per record and routing ~13 µs per
reading; in one process the GIL serialises them. With ``carechain bridge
--producer-process`` the bridge hands each batch of records through a pipe
to a child process that owns the :class:`~ingest.kafka.EventProducer` and
answers, per batch, once Kafka acknowledged all of it (or not). The bridge's
guarantees are unchanged: its MQTT acks still wait for those answers.

If the child dies, every unanswered batch counts as refused (the bridge sends
it again) and the next batch starts a new child. If the bridge dies, the
child sees the pipe close, finishes what it holds and exits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import pickle
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from ingest.kafka import EventProducer, ProducerTuning
from ingest.messages import DeliveryError, Record

log = logging.getLogger(__name__)


def _child_main(conn: Connection, bootstrap: str, client_id: str, tuning: ProducerTuning,
                urgent_topics: Sequence[str]) -> None:
    """The child: receive ``(batch_id, records)``, produce, answer ``(batch_id, error or None)`` in order."""
    try:
        producer = EventProducer(bootstrap, client_id=client_id, tuning=tuning, urgent_topics=urgent_topics)
    except DeliveryError as exc:
        conn.send_bytes(pickle.dumps((-1, str(exc))))
        return
    conn.send_bytes(pickle.dumps((0, None)))  # ready
    inflight: deque[tuple[int, Any]] = deque()
    lock = threading.Condition()
    closing = threading.Event()

    def answer() -> None:
        while True:
            with lock:
                while not inflight and not closing.is_set():
                    lock.wait()
                if not inflight:
                    return
                batch_id, pending = inflight[0]
            error: str | None = None
            try:
                pending.wait()
            except DeliveryError as exc:
                error = str(exc)
            with lock:
                inflight.popleft()
            try:
                conn.send_bytes(pickle.dumps((batch_id, error)))
            except OSError:
                return  # the bridge is gone

    answerer = threading.Thread(target=answer, name="answers", daemon=True)
    answerer.start()
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break  # the bridge died
            if not data:
                break  # the bridge is closing
            batch_id, rows = pickle.loads(data)
            try:
                pending: Any = producer.send_batch([Record(t, k, v) for t, k, v in rows])
            except DeliveryError as exc:
                pending = _Refused(str(exc))
            with lock:
                inflight.append((batch_id, pending))
                lock.notify()
    finally:
        closing.set()
        with lock:
            lock.notify()
        answerer.join(30)
        producer.close()


class _Refused:
    def __init__(self, why: str) -> None:
        self.why = why

    def wait(self) -> None:
        raise DeliveryError(self.why)


class _ChildPending:
    """A batch handed to the child process."""

    def __init__(self, sink: ProcessProducer, batch_id: int) -> None:
        self.sink, self.batch_id = sink, batch_id

    def done(self) -> bool:
        return self.batch_id in self.sink._answers

    def wait(self) -> None:
        self.sink._wait(self.batch_id)


class ProcessProducer:
    """A :class:`~ingest.bridge.BatchSink` whose producer lives in a child process."""

    def __init__(self, bootstrap: str, client_id: str, tuning: ProducerTuning, urgent_topics: Sequence[str],
                 delivery_timeout_s: float = 90.0) -> None:
        self._args = (bootstrap, client_id, tuning, list(urgent_topics))
        self.delivery_timeout_s = delivery_timeout_s
        self._ctx = mp.get_context("spawn")  # the bridge has threads: never fork it
        self._answers: dict[int, str | None] = {}
        self._cond = threading.Condition()
        self._next_id = 1
        self._conn: Connection | None = None
        self._proc: Any = None
        self._generation = 0
        self._start_child()

    def _start_child(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_child_main, args=(child, *self._args), name="carechain-bridge-producer",
                                 daemon=True)
        proc.start()
        child.close()
        batch_id, error = pickle.loads(parent.recv_bytes()) if parent.poll(120) else (-1, "child did not start")
        if batch_id != 0:
            proc.join(5)
            raise DeliveryError(f"producer process: {error}")
        self._conn, self._proc = parent, proc
        self._generation += 1
        threading.Thread(target=self._read_answers, args=(parent, self._generation), name="producer-answers",
                         daemon=True).start()
        log.info("Kafka producer process %d started", proc.pid)

    def _read_answers(self, conn: Connection, generation: int) -> None:
        while True:
            try:
                batch_id, error = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            with self._cond:
                self._answers[batch_id] = error
                self._cond.notify_all()
        with self._cond:
            if generation == self._generation:
                self._conn = None  # the next send starts a new child
            self._cond.notify_all()

    def send_batch(self, records: list[Record]) -> _ChildPending:
        """Hand a batch to the child; raises DeliveryError when no child can take it."""
        with self._cond:
            conn = self._conn
        if conn is None:
            log.error("Kafka producer process is gone; starting a new one")
            self._fail_unanswered()
            self._start_child()
            conn = self._conn
            assert conn is not None
        batch_id = self._next_id
        self._next_id += 1
        try:
            conn.send_bytes(pickle.dumps((batch_id, [(r.topic, r.key, r.value) for r in records]), protocol=5))
        except OSError as exc:
            raise DeliveryError(f"producer process unreachable: {type(exc).__name__}") from exc
        return _ChildPending(self, batch_id)

    def _fail_unanswered(self) -> None:
        with self._cond:
            for batch_id in range(1, self._next_id):
                self._answers.setdefault(batch_id, "producer process died")
            self._cond.notify_all()

    def _wait(self, batch_id: int) -> None:
        deadline = time.monotonic() + self.delivery_timeout_s
        with self._cond:
            while batch_id not in self._answers:
                if self._conn is None:
                    self._answers[batch_id] = "producer process died"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeliveryError("no answer from the producer process in time")
                self._cond.wait(min(remaining, 1.0))
            error = self._answers.pop(batch_id)
        if error is not None:
            raise DeliveryError(error)

    def warm(self, topics: Sequence[str]) -> None:
        """Nothing to do here: the child fetches a topic's partitions on first use."""

    def missing_topics(self, names: Sequence[str]) -> list[str]:
        """As :meth:`EventProducer.missing_topics` (asked from this process)."""
        from ingest.kafka import missing_topics

        return missing_topics(self._args[0], names)

    def close(self, timeout_s: float = 10.0) -> None:
        """Tell the child to finish what it holds and exit, then wait for it.

        An explicit end-of-work message rather than closing the pipe: a thread of ours is
        blocked reading the same socket, which keeps it open after ``close()``.
        """
        with self._cond:
            conn = self._conn
            self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError):  # the child is gone already
                conn.send_bytes(b"")
        if self._proc is not None:
            self._proc.join(timeout_s + 20)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        if conn is not None:
            conn.close()
