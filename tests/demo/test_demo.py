"""``carechain demo`` from a clean folder: a nurse sees the simulated fall live, and it stops cleanly.

The demo runs as a subprocess (its own embedded broker, PostgreSQL and API on
free ports); the test reads the nurse's token from its output, subscribes to
the live alert stream (SSE) and waits for the fall the demo injects 10
simulated seconds in; then SIGINT must stop everything, exit 0, and leave no
PostgreSQL running on the demo's data folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.timeout(180)

TOKEN_LINE = re.compile(r"^\s+(nurse|clinician|coordinator)\s+\S+: (\S+)$")
URL_LINE = re.compile(r"CareChain demo is running: (http://\S+)/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_on(pgdata: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or []):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def test_demo_fall_reaches_the_nurse_live_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "CARECHAIN_DATABASE_URL"}
    cmd = [sys.executable, "-m", "carechain.cli", "demo", "--data", str(data), "--port", str(port)]
    cmd += ["--mqtt-port", str(_free_port()), "--homes", "8", "--fall-after", "10"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops the demo"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(90), "demo did not start:\n" + "\n".join(lines[-40:])
        started = time.monotonic() - t0
        url = next(m.group(1) for line in lines if (m := URL_LINE.search(line)))
        tokens = {m.group(1): m.group(2) for line in lines if (m := TOKEN_LINE.match(line))}
        assert set(tokens) == {"nurse", "clinician", "coordinator"}
        assert data.joinpath("pg", "PG_VERSION").exists()
        assert _postgres_on((data / "pg").resolve())

        # Last-Event-ID 0 replays from the table: the fall may come before the stream is open.
        headers = {"Authorization": f"Bearer {tokens['nurse']}", "Accept": "text/event-stream", "Last-Event-ID": "0"}
        fall: dict[str, object] | None = None
        with (
            httpx.Client(timeout=httpx.Timeout(30.0, read=30.0)) as client,
            client.stream("GET", f"{url}/v1/alerts/stream", headers=headers) as resp,
        ):
            assert resp.status_code == 200, resp.read()
            deadline = time.monotonic() + 45
            for line in resp.iter_lines():
                if time.monotonic() > deadline:
                    break
                if not line.startswith("data:"):
                    continue
                body = json.loads(line[5:])
                alert = body.get("alert", body)
                if alert.get("kind") == "fall":
                    fall = body
                    break
        assert fall is not None, "no fall alert on the nurse's live stream:\n" + "\n".join(lines[-30:])
        seen_after = time.monotonic() - t0 - started
        assert seen_after < 45
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(10)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0, "\n".join(lines[-30:])
    assert any("embedded PostgreSQL stopped" in line for line in lines)
    time.sleep(0.5)
    assert not _postgres_on((data / "pg").resolve())
    assert (data / "pg").exists()  # the data stay for the next run
