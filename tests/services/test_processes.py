"""Unit tests of pid-file handling: a stale or reused pid is never taken for our service."""

from __future__ import annotations

import os
from pathlib import Path

from carechain.services.processes import pid_alive, read_pid


def test_read_pid_of_a_live_process_with_matching_command_line(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert read_pid(pid_file) == os.getpid()
    assert read_pid(pid_file, expect="python") == os.getpid()


def test_a_reused_pid_running_something_else_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert read_pid(pid_file, expect="kafka.Kafka") is None


def test_missing_garbage_or_dead_pid_files(tmp_path: Path) -> None:
    assert read_pid(tmp_path / "absent.pid") is None
    (tmp_path / "garbage.pid").write_text("not a pid")
    assert read_pid(tmp_path / "garbage.pid") is None
    dead = 2**22 + 12345  # above pid_max's default range: no such process
    (tmp_path / "dead.pid").write_text(str(dead))
    assert not pid_alive(dead)
    assert read_pid(tmp_path / "dead.pid") is None
