"""``carechain backtest`` through the real command line (subprocess)."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from carechain.candidates import AlertCandidate, Family
from carechain.events import Kind
from streams.synthetic import Home
from tests.streams.conftest import local


def carechain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carechain.cli", "backtest", *args], capture_output=True, text=True, timeout=60
    )


def test_events_history_gives_the_alerts_it_would_have_raised(tmp_path: Path) -> None:
    home = Home()
    t = local(24, 9, 0)
    evs = home.heartbeats(t, t + timedelta(minutes=20))
    evs += [
        home.motion(t + timedelta(minutes=1)),
        home.event(Kind.FALL, True, t + timedelta(minutes=2), room="hall"),
        home.event(Kind.HEART_RATE, 150.0, t + timedelta(minutes=3)),
    ]
    evs.sort(key=lambda e: e.ts)
    path = tmp_path / "home.jsonl"
    path.write_text("".join(e.to_json().decode() + "\n" for e in evs) + "not json\n")
    res = carechain("--events", str(path))
    assert res.returncode == 0, res.stderr
    cands = [AlertCandidate.from_json(line) for line in res.stdout.splitlines()]
    assert [(c.kind, c.state.value) for c in cands] == [("fall", "firing"), ("vitals_heart_rate", "firing")]
    assert all(c.family == Family.WELFARE and c.resident_id == "r-1" for c in cands)
    assert f"line {len(evs) + 1}: not an event" in res.stderr
    # the resident's own plan allows a higher heart rate: only the fall remains
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"vitals": {"heart_rate": [40, 160]}}))
    res = carechain("--events", str(path), "--plan", str(plan))
    assert [AlertCandidate.from_json(line).kind for line in res.stdout.splitlines()] == ["fall"]


def test_detector_csv_vitals_scores_every_row(tmp_path: Path) -> None:
    rng = random.Random(1)
    rows = ["timestamp,value"]
    start = local(1, 0)
    for i in range(800):  # every 10 minutes for 5.5 days
        rows.append(f"{(start + timedelta(minutes=10 * i)).isoformat()},{70 + rng.gauss(0, 2):.1f}")
    rows.append(f"{(start + timedelta(minutes=10 * 800)).isoformat()},118")
    rows.append(f"{(start + timedelta(minutes=10 * 801)).isoformat()},119")  # two unusual readings in a row
    path = tmp_path / "hr.csv"
    path.write_text("\n".join(rows) + "\n")
    res = carechain("--detector", "vitals", str(path))
    assert res.returncode == 0, res.stderr
    out = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(out[0]) == ["timestamp", "value", "score", "alert"]
    assert len(out) == 802
    assert out[-2]["alert"] == "0" and float(out[-2]["score"]) > 4  # one odd reading: scored, not alerted
    assert out[-1]["alert"] == "1" and float(out[-1]["score"]) > 4
    assert not any(r["alert"] == "1" for r in out[:-1][:400])  # warming up, then a normal week


def test_detector_list_and_bad_name() -> None:
    res = carechain("--list")
    assert res.returncode == 0
    names = [line.split("\t")[0] for line in res.stdout.splitlines() if not line.startswith("#")]
    assert "vitals" in names and "decline" in names
    bad = carechain("--detector", "nope", "x.csv")
    assert bad.returncode == 2 and "--list" in bad.stderr


def test_detector_csv_reports_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("2026-11-01T00:00:00+00:00,100\nyesterday,abc\n1793491200,90\n")
    res = carechain("--detector", "decline", str(path))
    assert res.returncode == 1
    assert "line 2" in res.stderr
    assert len(res.stdout.splitlines()) == 3
