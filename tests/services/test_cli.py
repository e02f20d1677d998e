"""`carechain services up|status`: healthy, and `up` again changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import service_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SERVICES = ("postgres", "mosquitto", "kafka")


def _carechain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carechain.cli", *args], capture_output=True, text=True,
                          timeout=280, env={**os.environ})


def _pids(status_table: str) -> dict[str, str]:
    pids = {}
    for line in status_table.splitlines():
        m = re.match(r"(\w+)\s+(up|DOWN)\s+\S+\s+(\S+)", line)
        if m and m.group(1) in SERVICES:
            pids[m.group(1)] = m.group(3)
    return pids


def test_status_reports_every_service_up() -> None:
    proc = _carechain("services", "status")
    if proc.returncode != 0:
        service_unavailable(f"carechain services ({proc.stdout.strip()})")
    pids = _pids(proc.stdout)
    assert set(pids) == set(SERVICES), proc.stdout
    assert all(p.isdigit() for p in pids.values()), proc.stdout


def test_up_twice_is_idempotent() -> None:
    first = _carechain("services", "up")
    if first.returncode != 0:
        service_unavailable(f"carechain services up failed:\n{first.stderr[-2000:]}")
    second = _carechain("services", "up")
    assert second.returncode == 0, second.stderr
    for name in SERVICES:
        assert f"{name}: already running" in second.stderr, second.stderr
    # Nothing was restarted: the same processes serve.
    assert _pids(first.stdout) == _pids(second.stdout)


def test_status_exits_nonzero_when_a_service_is_down(tmp_path: os.PathLike[str]) -> None:
    # A state directory with nothing running and ports nobody listens on.
    env = {**os.environ, "CARECHAIN_STATE_DIR": str(tmp_path), "CARECHAIN_MQTT_PORT": "1",
           "CARECHAIN_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CARECHAIN_DATABASE_URL": "postgresql://x:y@127.0.0.1:1/z"}
    proc = subprocess.run([sys.executable, "-m", "carechain.cli", "services", "status"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 1
    assert proc.stdout.count("DOWN") == 3, proc.stdout
