"""Test data for the API tests, written straight into the private database (no resident data in names)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

KOMMUN_A = "kommun-a"  # owns the residents
KOMMUN_B = "kommun-b"
REGION_X = "region-x"
REGION_Y = "region-y"
ORGS = {KOMMUN_A: "kommun", KOMMUN_B: "kommun", REGION_X: "region", REGION_Y: "region"}
#: the policy's names for the stored kinds
POLICY_KIND = {"kommun": "municipality", "region": "region"}


def organisations(conn: psycopg.Connection[Any]) -> None:
    for org, kind in ORGS.items():
        conn.execute(
            "INSERT INTO organisations (org_id, name, kind) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (org, org.replace("-", " ").title(), kind),
        )


def personnummer(n: int) -> str:
    """A valid personnummer (Luhn check digit), born in the 1930s, distinct for n < 100,000."""
    yymmdd = f"3{n % 10}{1 + (n // 10) % 12:02d}{1 + (n // 120) % 28:02d}"
    serial = f"{(n // 3360) % 1000:03d}"
    digits = yymmdd + serial
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return f"19{yymmdd}-{serial}{(10 - total % 10) % 10}"


_numbers = iter(range(100_000))


def resident(
    conn: psycopg.Connection[Any], rid: str, home: str, kommun: str = KOMMUN_A, region: str = REGION_X
) -> None:
    conn.execute(
        "INSERT INTO homes (home_id, kommun_org_id, region_org_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (home, kommun, region),
    )
    conn.execute(
        "INSERT INTO residents (resident_id, home_id, kommun_org_id, region_org_id) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (rid, home, kommun, region),
    )
    conn.execute(
        "INSERT INTO resident_identities (resident_id, name, personnummer) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (rid, "Test Person", personnummer(next(_numbers))),
    )


def relation(conn: psycopg.Connection[Any], user: str, org: str, unit: str | None, rid: str) -> int:
    row = conn.execute(
        "INSERT INTO care_relations (user_id, org_id, unit, resident_id, kind, valid_from, created_by)"
        " VALUES (%s, %s, %s, %s, 'care_team', now() - interval '1 day', 'seed') RETURNING id",
        (user, org, unit, rid),
    ).fetchone()
    assert row is not None
    return int(row[0])


def consent(
    conn: psycopg.Connection[Any],
    rid: str,
    reader_org: str,
    reader_unit: str | None,
    categories: list[str],
    owner: str = KOMMUN_A,
) -> int:
    row = conn.execute(
        "INSERT INTO sharing_consents (resident_id, owner_org_id, reader_org_id, reader_unit, categories, mode,"
        " legal_basis, valid_from, valid_to, recorded_by, method)"
        " VALUES (%s, %s, %s, %s, %s, 'joint_documentation', 'consent', now() - interval '1 day',"
        " now() + interval '30 days', 'seed', 'written') RETURNING id",
        (rid, owner, reader_org, reader_unit, categories),
    ).fetchone()
    assert row is not None
    return int(row[0])


def alert(
    conn: psycopg.Connection[Any], rid: str, kind: str = "fall", family: str = "welfare", notify: bool = True
) -> tuple[int, int]:
    """An alert and its 'proposed' event, notified like the alert service does; returns (alert id, event id)."""
    with conn.transaction():
        a = conn.execute(
            "INSERT INTO alerts (resident_id, kind, family, severity, status, detector, detector_version, reason,"
            " reason_sv, evidence, responsible_org_id) VALUES (%s, %s, %s, 'high', 'proposed', %s, '1.0',"
            " 'A test alert.', 'Ett testlarm.', %s, %s) RETURNING id",
            (rid, kind, family, kind, Jsonb({"score": 0.93, "threshold": 0.8}), KOMMUN_A),
        ).fetchone()
        assert a is not None
        e = conn.execute(
            "INSERT INTO alert_events (alert_id, type, detail) VALUES (%s, 'proposed', %s) RETURNING id",
            (a[0], Jsonb({"note": "seed"})),
        ).fetchone()
        assert e is not None
        if notify:
            conn.execute("SELECT pg_notify('carechain_alert_events', %s)", (str(e[0]),))
    return int(a[0]), int(e[0])


def partitions(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> None:
    """The day partitions of observations for [lo, hi] (plain PostgreSQL partitions observations by UTC day and
    makes them on demand, migration 0006: the writer does; tests that COPY readings in do it here)."""
    if conn.execute("SELECT to_regproc('cc_observation_partitions')").fetchone() != (None,):
        days = [(lo + timedelta(days=i)).date() for i in range((hi - lo).days + 2)]
        conn.execute("SELECT cc_observation_partitions(%s::date[])", (days,))


def observations(conn: psycopg.Connection[Any], rid: str, days: int = 30, per_hour: int = 4) -> int:
    """Motion and heart-rate readings over the last ``days`` days, COPYed in."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    n = 0
    copy = "COPY observations (event_id, resident_id, home_id, device_id, room, kind, value_num, ts, received_at, seq)"
    with conn.cursor() as cur, cur.copy(copy + " FROM STDIN") as cp:
        for h in range(days * 24):
            base = now - timedelta(hours=h)
            for k in range(per_hour):
                ts = base + timedelta(minutes=k * (60 // per_hour))
                kind = "motion" if k % 2 == 0 else "heart_rate"
                value = 1.0 if kind == "motion" else 60.0 + (h + k) % 20
                cp.write_row((f"{rid}-{h}-{k}", rid, "h", "d-1", "kitchen", kind, value, ts, ts, n))
                n += 1
    return n
