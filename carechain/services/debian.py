"""Installing Debian packages with apt-get, once, when binaries are missing."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence

from carechain.services.base import ServiceError

log = logging.getLogger(__name__)

_updated = False


def apt_install(packages: Sequence[str]) -> None:
    """``apt-get update`` (once per process) then ``apt-get install -y packages``."""
    global _updated
    if shutil.which("apt-get") is None:
        raise ServiceError(f"cannot install {' '.join(packages)}: apt-get not found (install them by hand)")
    if os.geteuid() != 0:
        raise ServiceError(f"cannot install {' '.join(packages)}: apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        log.info("apt-get update")
        _run(["apt-get", "update"], env)
        _updated = True
    log.info("apt-get install -y %s", " ".join(packages))
    _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env)


def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise ServiceError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{tail}")
