"""Headless Chromium for the web page's end-to-end test: Debian's package, never a download.

Playwright drives the browser through its ``executable_path``; ``playwright install``
is never run (no browser binaries from the network beyond the Debian mirror).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from carechain.services.base import ServiceError
from carechain.services.debian import apt_install

log = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")

#: Flags that keep a headless Chromium quiet and off the network.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def ensure_chromium(attempts: int = 3) -> Path:
    """Return Debian's Chromium, installing it with apt-get (update first) when missing.

    Other engineers' harnesses may hold the dpkg lock for a while, so a failed
    install is retried a few times before giving up with a clear error.
    """
    if CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    last: ServiceError | None = None
    for attempt in range(attempts):
        try:
            apt_install(["chromium"])
        except ServiceError as err:
            last = err
            log.warning("installing chromium failed (attempt %d): %s", attempt + 1, err)
            time.sleep(5 * (attempt + 1))
            continue
        if CHROMIUM.exists():
            return CHROMIUM
    raise ServiceError(f"Debian chromium is missing and could not be installed: {last}")
