"""Fixtures for the alert tests: a private migrated database per module, seeded with demo homes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from carechain.candidates import AlertCandidate, CandidateState, Evidence, Family, Severity
from carechain.settings import Settings
from tests.conftest import private_database

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # a Tuesday


def candidate(
    resident: str = "res-0001",
    home: str = "home-0001",
    kind: str = "fall",
    key: str | None = None,
    state: CandidateState = CandidateState.FIRING,
    at: datetime = T0,
    family: Family = Family.WELFARE,
    severity: Severity = Severity.CRITICAL,
    detector: str = "fall_rule",
    features: dict[str, Any] | None = None,
) -> AlertCandidate:
    """A candidate as the stream worker proposes it."""
    return AlertCandidate(
        resident_id=resident,
        home_id=home,
        kind=kind,
        family=family,
        severity=severity,
        detector=detector,
        detector_version="1.0",
        incident_key=key or f"{resident}:{kind}:{int(at.timestamp())}",
        state=state,
        event_time=at,
        detected_at=at,
        reason=f"A {kind} was detected.",
        reason_sv=f"Larm: {kind}.",
        evidence=Evidence(features=features or {}),
    )


@pytest.fixture(scope="module")
def alerts_dsn(settings: Settings) -> Iterator[str]:
    """A private database ``cc_alerts_<random>`` with every migration and 20 demo homes."""
    from carechain.db.seed import seed_demo

    with private_database(settings, "cc_alerts") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed_demo(conn, homes=20)
        yield dsn


@pytest.fixture()
def conn(alerts_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(alerts_dsn, autocommit=True) as c:
        yield c


def clean(conn: psycopg.Connection[Any]) -> None:
    """Empty the alert tables between tests of one module."""
    conn.execute(
        "TRUNCATE alerts, alert_events, escalation_deadlines, notification_outbox, notification_attempts,"
        " silences, alert_flaps, canary_heartbeats, teams, roster_shifts, webhook_endpoints CASCADE"
    )


def later(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
