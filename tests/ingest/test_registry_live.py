"""The cached device registry against the real PostgreSQL: load, NOTIFY, periodic fallback."""

from __future__ import annotations

import importlib.util
import threading
import time

import psycopg
import pytest

from carechain.settings import Settings
from ingest.registry import DeviceRegistry, RegistryUnavailable, load_snapshot
from ingest.routing import RegistrySnapshot
from tests.ingest.live import Device, homes, private_database, register, tag

pytestmark = pytest.mark.integration


def wait_for(pred: object, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():  # type: ignore[operator]
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def test_registry_loads_and_follows_notify(live: Settings) -> None:
    prefix = f"g{tag()}"
    devices = homes(prefix, 3)
    changes: list[RegistrySnapshot] = []
    with private_database(live, devices) as dsn:
        reg = DeviceRegistry(dsn, refresh_s=600, on_change=changes.append)
        reg.start()
        try:
            assert len(reg.snapshot) == len(devices)
            d = reg.snapshot.device(f"{prefix}-gw0001-motion")
            assert d is not None and d.resident_id == f"{prefix}-r0001" and d.monitoring_active
            with psycopg.connect(dsn, autocommit=True) as conn:
                register(conn, [Device(f"{prefix}-new", f"{prefix}-gw0000", f"{prefix}-h0000", f"{prefix}-r0000")])
                took = wait_for(lambda: reg.snapshot.device(f"{prefix}-new") is not None, 5)
                assert took is not None and took < 2.0, "NOTIFY did not refresh the registry"
                conn.execute("UPDATE ingest_test_devices SET monitoring_active = false WHERE home_id = %s",
                             (f"{prefix}-h0002",))
                took = wait_for(lambda: not reg.snapshot.device(f"{prefix}-gw0002-motion").monitoring_active, 5)
                assert took is not None and took < 2.0
        finally:
            reg.stop()
    assert len(changes) >= 3


def test_registry_reloads_periodically_without_notify(live: Settings) -> None:
    prefix = f"p{tag()}"
    with private_database(live, homes(prefix, 1)) as dsn:
        reg = DeviceRegistry(dsn, refresh_s=1.0)
        reg.start()
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                # A change that sends no notification (the trigger is bypassed).
                conn.execute("ALTER TABLE ingest_test_devices DISABLE TRIGGER ingest_test_devices_changed")
                register(conn, [Device(f"{prefix}-quiet", f"{prefix}-gw0000", f"{prefix}-h0000", f"{prefix}-r0000")])
            assert wait_for(lambda: reg.snapshot.device(f"{prefix}-quiet") is not None, 5) is not None
        finally:
            reg.stop()


def test_registry_start_waits_for_the_view(live: Settings) -> None:
    with private_database(live) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP VIEW device_registry")
        reg = DeviceRegistry(dsn, refresh_s=600)
        with pytest.raises(RegistryUnavailable, match="device_registry"):
            reg.start(wait_s=0.5)

        def create_later() -> None:
            time.sleep(0.5)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE VIEW device_registry AS SELECT * FROM ingest_test_devices")

        t = threading.Thread(target=create_later)
        t.start()
        reg.start(wait_s=20)
        t.join()
        reg.stop()
        assert len(reg.snapshot) == 0 and reg.reloads >= 1


@pytest.mark.skipif(importlib.util.find_spec("carechain.db.migrate") is None
                    or importlib.util.find_spec("carechain.db.seed") is None,
                    reason="storage migrations and seed not available yet")
def test_registry_reads_the_storage_schema_and_its_notifications(live: Settings) -> None:
    from carechain.db.migrate import migrate  # type: ignore[import-not-found,unused-ignore]
    from carechain.db.seed import seed_demo  # type: ignore[import-not-found,unused-ignore]

    name = f"cc_ingest_{tag()}"
    with psycopg.connect(live.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(live.database_url, dbname=name)
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            seed_demo(conn, homes=3)
            conn.commit()
        with psycopg.connect(dsn) as conn:
            snap = load_snapshot(conn)
        assert len(snap) > 0 and all(d.resident_id and d.gateway_id for d in snap.devices.values())
        assert all(d.monitoring_active for d in snap.devices.values())
        home = next(iter(snap.devices.values())).home_id
        gw = next(d.gateway_id for d in snap.devices.values() if d.home_id == home)
        assert snap.residents_behind(gw)
        # Withdrawing consent in the storage tables reaches a running registry through NOTIFY.
        reg = DeviceRegistry(dsn, refresh_s=600)
        reg.start()
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("UPDATE monitoring_consents SET withdrawn_at = now(), withdrawn_by = 'test' "
                             "WHERE home_id = %s", (home,))
            took = wait_for(lambda: not any(d.monitoring_active for d in reg.snapshot.devices.values()
                                            if d.home_id == home), 5)
            assert took is not None and took < 2.0
            assert any(d.monitoring_active for d in reg.snapshot.devices.values() if d.home_id != home)
        finally:
            reg.stop()
    finally:
        with psycopg.connect(live.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
