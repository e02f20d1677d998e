"""Detached processes, pid files, ports and readiness polling.

Services are started in their own session (``setsid``) with output to a log
file in the state directory, so they outlive the CLI that started them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from carechain.services.base import ServiceError


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); read its state to be sure.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_pid(pid_file: Path, expect: str | None = None) -> int | None:
    """The pid recorded in pid_file, if it names a live process (whose command line contains expect)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    if expect is not None:
        # After a reboot or a kill -9 the recorded pid may belong to an unrelated process now.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return pid
        if expect not in cmdline:
            return None
    return pid


def spawn_detached(
    argv: Sequence[str],
    log_file: Path,
    pid_file: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start argv in its own session with stdout/stderr appended to log_file; record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_file: Path | None = None,
) -> None:
    """Poll check() until it is true; fail after timeout or as soon as alive() says the process died."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            time.sleep(0.5)  # look twice before declaring it dead
            if not alive() and not check():
                raise ServiceError(f"{what}: the process exited during start-up{_tail_of(log_file)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    raise ServiceError(f"{what}: not healthy after {timeout:.0f} s{_tail_of(log_file)}")


def _tail_of(log_file: Path | None) -> str:
    return f"\n--- last lines of {log_file} ---\n{log_tail(log_file)}" if log_file is not None else ""


def terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, wait up to timeout for a graceful exit, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)


def log_tail(log_file: Path, lines: int = 20) -> str:
    """The last lines of a log, for error messages."""
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def grant_traverse(path: Path) -> None:
    """Let other system users (postgres, mosquitto) reach path: add search (x), never read, to each ancestor."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """chown -R path to uid:gid."""
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
