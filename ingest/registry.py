"""The device registry as the bridge sees it: cached, refreshed when it changes.

Reads the view ``device_registry(device_id, gateway_id, home_id, resident_id,
room, device_kind, monitoring_active)`` (docs/contracts.md) into an immutable
:class:`~ingest.routing.RegistrySnapshot`. A thread LISTENs on
``carechain_registry`` (the storage layer notifies on every change to homes,
residents, gateways, devices and consents) and reloads at once, and reloads
every ``refresh_s`` seconds anyway in case a notification was missed (e.g.
while the connection was down). The only file of the bridge that uses psycopg.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from ingest.routing import RegisteredDevice, RegistrySnapshot

log = logging.getLogger(__name__)

CHANNEL = "carechain_registry"
QUERY = (
    "SELECT device_id, gateway_id, home_id, resident_id, room, device_kind, monitoring_active "
    "FROM device_registry"
)
#: Notifications arriving this close together are folded into one reload.
DEBOUNCE_S = 0.05


def load_snapshot(conn: psycopg.Connection) -> RegistrySnapshot:
    """Read the whole view once (a region is ~10^5 devices: one cheap query)."""
    with conn.cursor() as cur:
        cur.execute(QUERY)
        rows = cur.fetchall()
    # A device of a home with no active resident has no one to key its events by: it is left
    # out, so its readings are dead-lettered (unknown_device) rather than sent under a wrong key.
    usable = [r for r in rows if r[3] is not None and r[1] is not None and r[2] is not None]
    if len(usable) < len(rows):
        log.info("device registry: %d devices without an active resident or gateway are not routable",
                 len(rows) - len(usable))
    devices = (
        RegisteredDevice(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            None if r[4] is None else str(r[4]),
            str(r[5]),
            bool(r[6]),
        )
        for r in usable
    )
    return RegistrySnapshot(devices, loaded_at=datetime.now(UTC))


class RegistryUnavailable(RuntimeError):
    """The registry could not be read at start-up (database down, or not migrated)."""


class DeviceRegistry:
    """A cached registry snapshot kept fresh by LISTEN/NOTIFY plus a periodic reload.

    ``snapshot`` is replaced whole (an atomic reference swap), so the bridge reads it
    without a lock. ``on_change`` is called from the listener thread after each reload.
    """

    def __init__(
        self,
        dsn: str,
        refresh_s: float = 30.0,
        on_change: Callable[[RegistrySnapshot], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.refresh_s = refresh_s
        self.on_change = on_change
        self.snapshot = RegistrySnapshot(())
        self.reloads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wait_s: float = 60.0) -> None:
        """Load once (retrying until ``wait_s``: without a registry every reading would be
        dead-lettered as unknown), then keep the snapshot fresh in a daemon thread."""
        deadline = time.monotonic() + wait_s
        delay = 0.2
        while True:
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    self._swap(load_snapshot(conn))
                break
            except psycopg.Error as exc:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise RegistryUnavailable(
                        f"device registry not readable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                    ) from exc
                log.warning("device registry not readable yet (%s); retrying", type(exc).__name__)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        self._thread = threading.Thread(target=self._listen_forever, name="registry-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the listener thread (it notices within a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _swap(self, snap: RegistrySnapshot) -> None:
        changed = len(snap) != len(self.snapshot) or self.reloads == 0
        self.snapshot = snap
        self.reloads += 1
        # The periodic reload would otherwise log every 30 s.
        log.log(logging.INFO if changed else logging.DEBUG, "device registry loaded: %d devices", len(snap))
        if self.on_change is not None:
            self.on_change(snap)

    def _listen_forever(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._listen_once()
                delay = 0.5
            except psycopg.Error as exc:
                # Keep serving the last snapshot: stale for a moment beats dead-lettering everything.
                log.warning("device registry listener lost its connection (%s); reconnecting", type(exc).__name__)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _listen_once(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            # A change may have happened while no one listened: reload after (re)connecting.
            self._swap(load_snapshot(conn))
            last = time.monotonic()
            while not self._stop.is_set():
                got = False
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    got = True
                if got:
                    # Fold a burst (a seed touching many rows) into one reload.
                    for _ in conn.notifies(timeout=DEBOUNCE_S):
                        pass
                if got or time.monotonic() - last >= self.refresh_s:
                    self._swap(load_snapshot(conn))
                    last = time.monotonic()
