"""The nurses' page end to end in headless Debian Chromium (Playwright), against the real API and PostgreSQL.

A nurse signs in with a token, an alert is written the way the alert service
writes it (alert + alert_events row + pg_notify in one transaction), the page
shows it live, the nurse acknowledges and resolves it with clicks, and the
language toggle switches Swedish (default) to English.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.auth import local_issuer
from carechain.services.browser import CHROMIUM_ARGS
from tests.api import seed
from tests.browser.conftest import RunningApi

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(120)]

RID = "r-web-1"
NURSE = "nurse-web"
SCREENSHOT_DIR = Path("/tmp")


@pytest.fixture(scope="module")
def db(api_server: RunningApi) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(api_server.dsn, autocommit=True) as conn:
        seed.organisations(conn)
        seed.resident(conn, RID, "h-web-1")
        seed.relation(conn, NURSE, seed.KOMMUN_A, "hc-1", RID)
        seed.observations(conn, RID, days=3, per_hour=2)
        now = datetime.now(UTC)
        for day in range(3):
            for slot, hour, kind in (("08:00", 7, "medication.dose_taken"), ("20:00", 19, "medication.dose_missed")):
                ts = (now - timedelta(days=day + 1)).replace(hour=hour, minute=5)
                conn.execute(
                    "INSERT INTO observations (event_id, resident_id, home_id, device_id, kind, value_text, ts,"
                    " received_at, seq) VALUES (%s, %s, 'h-web-1', 'robot-web', %s, %s, %s, %s, %s)",
                    (f"dose-web-{day}-{slot}", RID, kind, slot, ts, ts, day),
                )
        yield conn


@pytest.fixture(scope="module")
def page(chromium: Path, api_server: RunningApi) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="sv-SE")
            pg = context.new_page()
            pg.set_default_timeout(10_000)
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.errors = errors  # type: ignore[attr-defined]
            yield pg
        finally:
            browser.close()


def _row_status(db: psycopg.Connection[Any], alert_id: int) -> str:
    row = db.execute("SELECT status FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_inbox_live_acknowledge_resolve_and_language(page: Any, api_server: RunningApi, db: Any) -> None:
    started = time.monotonic()
    token = local_issuer(api_server.settings).mint(NURSE, seed.KOMMUN_A, "nurse", unit="hc-1")

    page.goto(api_server.base_url + "/")
    # Swedish first.
    assert page.inner_text("#login-h") == "Logga in"
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#inbox-h:text-is('Larminkorg')")
    page.wait_for_selector("#live[data-state='on']")
    assert "personnummer" not in page.url and RID not in page.url

    # The alert service writes an alert; the page shows it live (no reload), explained in Swedish.
    alert_id, _ = seed.alert(db, RID, kind="fall", notify=True)
    item = f"#alerts li[data-id='{alert_id}']"
    page.wait_for_selector(item)
    assert page.inner_text(f"{item} .reason") == "Ett testlarm."
    assert page.inner_text(f"{item} .kind") == "Fall"
    assert page.inner_text(f"{item} .sev") == "HÖG"
    assert "fall 1.0" in page.inner_text(f"{item} .detector")

    # Acknowledge with a click.
    page.click(f"{item} .act-ack")
    page.wait_for_selector(f"{item}[data-status='acknowledged']")
    assert _row_status(db, alert_id) == "acknowledged"
    page.wait_for_selector(f"{item} .note:has-text('{NURSE}')")  # who acknowledged, from the history
    page.screenshot(path=str(SCREENSHOT_DIR / "carechain-inbox-sv.png"), full_page=True)

    # Resolve with an outcome: it leaves the list of open alerts.
    page.click(f"{item} .act-resolve")
    page.check(f"{item} input[value='false_alarm']")
    page.click(f"{item} .resolve-form button[type=submit]")
    page.wait_for_selector(item, state="detached")
    assert _row_status(db, alert_id) == "resolved"

    # English after the toggle; the resolved alert shows its outcome among all alerts.
    page.click("#lang-toggle")
    page.wait_for_selector("#inbox-h:text-is('Alert inbox')")
    page.select_option("#inbox-filter", "all")
    page.wait_for_selector(f"{item}[data-status='resolved']")
    assert page.inner_text(f"{item} .status") == "Resolved"
    assert page.inner_text(f"{item} .reason") == "A test alert."
    assert page.inner_text(f"{item} .note") == "Resolved: False alarm"
    page.screenshot(path=str(SCREENSHOT_DIR / "carechain-inbox-en.png"), full_page=True)

    # The resident page draws its plots from the API.
    page.click(f"{item} .resident a")
    page.wait_for_selector("#chart-activity svg")
    page.wait_for_selector("#chart-vitals svg")
    page.wait_for_selector("#chart-doses svg")
    assert "3" in page.inner_text("#chart-doses .legend")  # three doses taken, three missed
    page.screenshot(path=str(SCREENSHOT_DIR / "carechain-resident-en.png"), full_page=True)

    assert page.errors == []  # type: ignore[attr-defined]
    assert time.monotonic() - started < 60


def test_coordinator_overview_at_phone_width(page: Any, api_server: RunningApi, db: Any) -> None:
    token = local_issuer(api_server.settings).mint("coord-web", seed.KOMMUN_A, "coordinator")
    page.goto(api_server.base_url + "/#/overview")
    if page.is_visible("#logout"):
        page.click("#logout")
    page.set_viewport_size({"width": 390, "height": 844})
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.goto(api_server.base_url + "/#/overview")
    page.wait_for_selector("#overview-cards .kpi")
    labels = page.locator("#overview-cards .kpi .label").all_inner_texts()
    assert "Sparade hembesök" in labels or "Nurse rounds saved" in labels
    values = dict(zip(labels, page.locator("#overview-cards .kpi .value").all_inner_texts(), strict=True))
    rounds = values.get("Sparade hembesök", values.get("Nurse rounds saved"))
    assert rounds == "3"  # three doses taken with the robot in the seeded days
    # Nothing overflows sideways at phone width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(SCREENSHOT_DIR / "carechain-overview-phone.png"), full_page=True)
    assert page.errors == []  # type: ignore[attr-defined]
