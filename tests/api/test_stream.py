"""The live alert stream on a real server: filtered per user by the access policy, resumable with
Last-Event-ID, heartbeats, and every subscription and delivery audited."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration


class Listener:
    """Reads an SSE stream in a thread; collects (id, data) messages and counts heartbeats."""

    def __init__(self, url: str, token: str, last_event_id: int | None = None) -> None:
        self.messages: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.heartbeats = 0
        self.status: int | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        assert self.ready.wait(10), "stream did not open"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with httpx.Client(timeout=httpx.Timeout(10, read=30)) as c, c.stream("GET", url, headers=headers) as r:
            self.status = r.status_code
            self.ready.set()
            event_id = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(": heartbeat"):
                    self.heartbeats += 1
                elif line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: ") and event_id is not None:
                    self.messages.put((event_id, json.loads(line[6:])))

    def take(self, timeout: float) -> list[tuple[int, dict[str, Any]]]:
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.05))
            except queue.Empty:
                continue
        return out

    def close(self) -> None:
        self._stop.set()


def test_stream_filters_per_user_resumes_and_audits(
    live: LiveServer, mint: Any, db: psycopg.Connection[Any], app: Any
) -> None:
    seed.organisations(db)
    seed.resident(db, "r-sse-1", "h-sse-1")
    seed.resident(db, "r-sse-2", "h-sse-2")
    seed.relation(db, "nurse-sse", seed.KOMMUN_A, "hc-sse", "r-sse-1")
    seed.relation(db, "clin-sse", seed.REGION_X, "vc-sse", "r-sse-1")  # relation but no consent: nothing
    url = f"{live.url}/v1/alerts/stream"
    nurse_token = mint("nurse-sse", seed.KOMMUN_A, "nurse", "hc-sse")
    deadline = time.monotonic() + 10
    while not app.state.api.stream.listening.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    nurse = Listener(url, nurse_token)
    clinician = Listener(url, mint("clin-sse", seed.REGION_X, "clinician", "vc-sse"))
    assert nurse.status == clinician.status == 200
    time.sleep(0.2)

    mine_id, mine_event = seed.alert(db, "r-sse-1", "fall", "welfare")
    _, other_event = seed.alert(db, "r-sse-2", "fall", "welfare")
    _, clinical_event = seed.alert(db, "r-sse-1", "infection_signs", "clinical")
    got = nurse.take(2.0)
    assert [eid for eid, _ in got] == [mine_event, clinical_event]
    assert got[0][1]["alert"]["id"] == mine_id and got[0][1]["alert"]["kind"] == "fall"
    assert got[1][1]["alert"]["kind"] == "needs_visit" and "evidence" not in got[1][1]["alert"]
    assert clinician.take(0.5) == []
    assert nurse.heartbeats + clinician.heartbeats >= 1  # heartbeat every 0.5 s in the tests
    nurse.close()
    clinician.close()

    # Missed while away: resumes from the table with Last-Event-ID.
    _, missed = seed.alert(db, "r-sse-1", "dose_missed", "welfare")
    _, other_missed = seed.alert(db, "r-sse-2", "dose_missed", "welfare")
    resumed = Listener(url, nurse_token, last_event_id=clinical_event)
    replay = resumed.take(1.0)
    assert [eid for eid, _ in replay] == [missed]
    _, live_after = seed.alert(db, "r-sse-1", "fall", "welfare")
    assert [eid for eid, _ in resumed.take(1.5)] == [live_after]
    resumed.close()
    assert other_event not in {e for e, _ in got} and other_missed not in {e for e, _ in replay}

    rows = db.execute(
        "SELECT action, resource, resident_id, outcome FROM audit_log WHERE user_id = 'nurse-sse' ORDER BY id"
    ).fetchall()
    deliveries = [r for r in rows if r[0] == "SSE deliver"]
    assert {r[1] for r in deliveries} == {f"alert_event/{e}" for e in (mine_event, clinical_event, missed, live_after)}
    assert all(r[2] == "r-sse-1" and r[3] == "allowed" for r in deliveries)
    assert sum(1 for r in rows if r[1] == "alerts/stream/subscribe") == 2


def test_stream_refuses_roles_without_resident_data(live: LiveServer, mint: Any) -> None:
    with httpx.Client(base_url=live.url) as c:
        for role in ("auditor", "admin"):
            r = c.get("/v1/alerts/stream", headers={"Authorization": f"Bearer {mint('x', seed.KOMMUN_A, role)}"})
            assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        r = c.get("/v1/alerts/stream")
        assert r.status_code == 401
