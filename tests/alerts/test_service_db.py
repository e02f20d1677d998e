"""The service core and the nurse actions on a real PostgreSQL (no Kafka): dedup, lifecycle, routing,
silences, inhibition, flapping, escalation deadlines with a controllable clock, feedback outbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from alerts import actions
from alerts.lifecycle import Decision, Policy
from alerts.service import AlertService
from alerts.store import add_silence
from carechain.candidates import CandidateState, Family, Outcome, Severity
from tests.alerts.conftest import T0, candidate, clean, later

pytestmark = pytest.mark.integration

NURSE = actions.Actor("nurse-anna", "kommun-0180", "nurse")


def world(conn: psycopg.Connection[Any]) -> None:
    """Teams with rosters and a webhook per organisation."""
    clean(conn)
    conn.execute(
        "INSERT INTO teams (team_id, org_id, role, name, email) VALUES"
        " ('k-nurses', 'kommun-0180', 'nurse', 'Hemsjukvård Söder', 'hsv@kommun.test'),"
        " ('k-coord', 'kommun-0180', 'coordinator', 'Samordnare', 'samordnare@kommun.test'),"
        " ('r-clin', 'region-01', 'clinician', 'Vårdcentral', 'vc@region.test')"
    )
    conn.execute(
        "INSERT INTO roster_shifts (team_id, user_id, email, day_type, starts, ends) VALUES"
        " ('k-nurses', 'nurse-anna', 'anna@kommun.test', 'weekday', '07:00', '16:00'),"
        " ('k-nurses', 'nurse-night', 'natt@kommun.test', 'any', '22:00', '07:00')"
    )
    conn.execute(
        "INSERT INTO webhook_endpoints (org_id, url, secret) VALUES"
        " ('kommun-0180', 'http://127.0.0.1:9/k', 's1'), ('region-01', 'http://127.0.0.1:9/r', 's2')"
    )


def outbox(conn: psycopg.Connection[Any], alert_id: int | None = None) -> list[tuple[str, str, str]]:
    q = "SELECT channel, target, dedup_key FROM notification_outbox"
    rows = conn.execute(q + " WHERE alert_id = %s ORDER BY id" if alert_id else q + " ORDER BY id", (
        [alert_id] if alert_id else []
    )).fetchall()  # fmt: skip
    return [(r[0], r[1], r[2]) for r in rows]


def test_burst_of_duplicates_is_one_alert(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    c = candidate()
    results = [svc.handle(c, later(0.01 * i)) for i in range(20)]
    assert results[0].decision is Decision.CREATE
    assert all(r.decision is Decision.DUPLICATE for r in results[1:])
    assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM alert_events").fetchone() == (1,)
    # Tier 1 of a fall: the kommun's nurse on duty (Tuesday 10:00 Stockholm) and the kommun's webhook.
    assert {(ch, t) for ch, t, _ in outbox(conn)} == {("email", "anna@kommun.test"), ("webhook", "1")} or {
        ch for ch, _, _ in outbox(conn)
    } == {"email", "webhook"}
    assert conn.execute("SELECT responsible_org_id, responsible_role FROM alerts").fetchone() == (
        "kommun-0180",
        "nurse",
    )


def test_escalation_fires_on_time_not_before_and_stops_on_ack(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    svc.handle(candidate(at=T0), T0)
    n0 = len(outbox(conn))
    assert svc.escalate(later(4.9)) == 0  # critical: tier 2 after 5 minutes, not before
    assert len(outbox(conn)) == n0
    assert svc.escalate(later(5.0)) == 1
    rows = outbox(conn)
    assert any(t == "vc@region.test" for _, t, _ in rows[n0:])  # a fall goes to the region at tier 2
    assert conn.execute("SELECT tier FROM alerts").fetchone() == (2,)
    assert svc.escalate(later(5.5)) == 0  # done once
    alert_id = conn.execute("SELECT id FROM alerts").fetchone()[0]  # type: ignore[index]
    actions.acknowledge(conn, alert_id, NURSE)
    n1 = len(outbox(conn))
    assert svc.escalate(later(11)) == 1  # step 2 is due but the alert is acknowledged: skipped
    assert len(outbox(conn)) == n1
    outcome = conn.execute("SELECT outcome FROM escalation_deadlines WHERE step = 2").fetchone()
    assert outcome is not None and outcome[0].startswith("skipped")


def test_actions_lifecycle_and_feedback(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    r = svc.handle(candidate(kind="inactivity", severity=Severity.HIGH), T0)
    assert r.alert_id is not None
    a = actions.acknowledge(conn, r.alert_id, NURSE)
    assert a["status"] == "acknowledged" and a["acknowledged_by"] == "nurse-anna"
    with pytest.raises(actions.InvalidTransition):
        actions.acknowledge(conn, r.alert_id, NURSE)
    a = actions.accept(conn, r.alert_id, NURSE)
    assert a["status"] == "accepted"
    actions.comment(conn, r.alert_id, NURSE, "Ringde dottern")
    a = actions.resolve(conn, r.alert_id, NURSE, Outcome.TRUE_INCIDENT, "Hjälpte henne upp")
    assert a["status"] == "resolved" and a["outcome"] == "true_incident"
    types = [t for (t,) in conn.execute("SELECT type FROM alert_events WHERE alert_id = %s ORDER BY id", (r.alert_id,))]
    assert types == ["proposed", "acknowledged", "accepted", "commented", "resolved"]
    fb = conn.execute("SELECT payload FROM notification_outbox WHERE channel = 'feedback'").fetchall()
    assert len(fb) == 1 and fb[0][0]["feedback"]["outcome"] == "true_incident"
    with pytest.raises(actions.AlertNotFound):
        actions.acknowledge(conn, 999_999, NURSE)
    r2 = svc.handle(candidate(kind="inactivity", key="k2"), T0)
    with pytest.raises(actions.InvalidTransition):
        actions.dismiss(conn, r2.alert_id or 0, NURSE, " ")
    d = actions.dismiss(conn, r2.alert_id or 0, NURSE, "Var på dagverksamhet")
    assert d["status"] == "dismissed" and d["dismiss_reason"] == "Var på dagverksamhet"


def test_silenced_resident_recorded_not_notified(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    with pytest.raises(ValueError):
        add_silence(conn, "resident", "res-0001", "", later(60), "coordinator-maria", T0)
    add_silence(conn, "resident", "res-0001", "På sjukhus", later(60 * 24), "coordinator-maria", T0)
    svc = AlertService(conn)
    r = svc.handle(candidate(), later(1))
    assert r.suppressed_by and r.suppressed_by.startswith("silence:")
    assert conn.execute("SELECT suppressed FROM alerts").fetchone() == (True,)
    assert outbox(conn) == []
    assert svc.escalate(later(30)) == 0


def test_inhibition_by_gateway_silent(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    svc.handle(candidate(kind="gateway_silent", family=Family.TECHNICAL, severity=Severity.HIGH), T0)
    r = svc.handle(candidate(kind="inactivity", severity=Severity.HIGH), later(1))
    assert r.suppressed_by and r.suppressed_by.startswith("inhibited:")
    assert outbox(conn, r.alert_id) == []


def test_clear_auto_resolves_welfare_not_clinical(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    svc.handle(candidate(kind="inactivity", key="w"), T0)
    r = svc.handle(candidate(kind="inactivity", key="w", state=CandidateState.CLEARED, at=later(3)), later(3))
    assert r.decision is Decision.AUTO_RESOLVE
    svc.handle(candidate(kind="infection_signs", key="c", family=Family.CLINICAL, severity=Severity.MEDIUM), T0)
    r = svc.handle(
        candidate(kind="infection_signs", key="c", family=Family.CLINICAL, state=CandidateState.CLEARED, at=later(3)),
        later(3),
    )
    assert r.decision is Decision.CLEAR_ONLY
    rows = dict(conn.execute("SELECT incident_key, status FROM alerts").fetchall())
    assert rows == {"w": "resolved", "c": "proposed"}
    # The clinical alert went to the region's clinician.
    assert conn.execute("SELECT responsible_org_id FROM alerts WHERE incident_key = 'c'").fetchone() == ("region-01",)


def test_min_duration_holds_notification_until_it_lasts(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn, Policy(min_duration={"gateway_silent": timedelta(minutes=2)}))
    g = {"kind": "gateway_silent", "family": Family.TECHNICAL, "severity": Severity.HIGH}
    svc.handle(candidate(key="g1", **g), T0)  # type: ignore[arg-type]
    svc.handle(candidate(key="g1", state=CandidateState.CLEARED, at=later(1), **g), later(1))  # type: ignore[arg-type]
    svc.escalate(later(3))
    assert outbox(conn) == []  # back within the minimum duration: never notified
    svc.handle(candidate(key="g2", at=later(10), **g), later(10))  # type: ignore[arg-type]
    assert svc.escalate(later(11)) == 0
    assert svc.escalate(later(12)) == 1
    assert len(outbox(conn)) >= 1


def test_flapping_marked_and_notified_once(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn, Policy(flap_changes=4, flap_window=timedelta(minutes=30), min_duration={}))
    for i in range(4):
        t = later(i * 2)
        svc.handle(candidate(kind="inactivity", key=f"f{i}", at=t), t)
        svc.handle(candidate(kind="inactivity", key=f"f{i}", at=t, state=CandidateState.CLEARED), t + timedelta(1 / 60))
    ops = conn.execute("SELECT count(*) FROM notification_outbox WHERE channel = 'operator'").fetchone()
    assert ops == (1,)
    last = conn.execute("SELECT suppressed_by FROM alerts ORDER BY id DESC LIMIT 1").fetchone()
    assert last == ("flapping",)


def test_falls_are_never_muted_as_flapping(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn, Policy(flap_changes=4, flap_window=timedelta(minutes=30), min_duration={}))
    for i in range(6):
        t = later(i * 2)
        svc.handle(candidate(kind="fall", key=f"fall{i}", at=t), t)
    rows = conn.execute("SELECT suppressed_by FROM alerts WHERE kind = 'fall' ORDER BY id").fetchall()
    assert rows == [(None,)] * 6
    ops = conn.execute("SELECT count(*) FROM notification_outbox WHERE channel = 'operator'").fetchone()
    assert ops == (0,)


def test_reopen_within_window_else_new(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn, Policy(reopen_window=timedelta(minutes=30)))
    svc.handle(candidate(kind="inactivity", key="k"), T0)
    svc.handle(candidate(kind="inactivity", key="k", state=CandidateState.CLEARED, at=later(1)), later(1))
    r = svc.handle(candidate(kind="inactivity", key="k", at=later(10)), later(10))
    assert r.decision is Decision.REOPEN
    svc.handle(candidate(kind="inactivity", key="k", state=CandidateState.CLEARED, at=later(11)), later(11))
    r = svc.handle(candidate(kind="inactivity", key="k", at=later(100)), later(100))
    assert r.decision is Decision.NEW_EPISODE
    assert conn.execute("SELECT count(*), max(incident_seq) FROM alerts").fetchone() == (2, 2)


def test_grouping_fall_then_inactivity(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    svc.handle(candidate(kind="fall"), T0)
    svc.handle(candidate(kind="inactivity", severity=Severity.HIGH, at=later(10)), later(10))
    svc.handle(candidate(kind="inactivity", resident="res-0002", home="home-0002", at=later(10)), later(10))
    groups = conn.execute("SELECT home_id, count(DISTINCT group_id) FROM alerts GROUP BY home_id ORDER BY 1").fetchall()
    assert groups == [("home-0001", 1), ("home-0002", 1)]
    assert conn.execute("SELECT count(DISTINCT group_id) FROM alerts").fetchone() == (2,)


def test_canary_recorded_never_notified(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    r = svc.handle(candidate(resident="canary-1", home="canary-home", at=T0), later(0.05))
    assert r.suppressed_by == "canary"
    assert outbox(conn) == []
    row = conn.execute("SELECT rtt_ms FROM canary_heartbeats").fetchone()
    assert row is not None and abs(row[0] - 3000) < 1
    assert conn.execute("SELECT status FROM alerts").fetchone() == ("resolved",)


def test_response_stats_history_and_open_alerts(conn: psycopg.Connection[Any]) -> None:
    from alerts.statistics import alert_history, open_alerts, response_stats

    world(conn)
    svc = AlertService(conn)
    ids = [svc.handle(candidate(kind="inactivity", key=f"s{i}", severity=Severity.HIGH), T0).alert_id for i in range(3)]
    conn.execute("UPDATE alerts SET opened_at = now() - interval '10 minutes'")
    for i in ids[:2]:
        actions.acknowledge(conn, i or 0, NURSE)
    actions.resolve(conn, ids[0] or 0, NURSE, Outcome.NO_ACTION_NEEDED)
    stats = response_stats(conn, org_id="kommun-0180")
    assert len(stats) == 1
    s = stats[0]
    assert (s["kind"], s["severity"], s["alerts"], s["acknowledged"], s["resolved"]) == ("inactivity", "high", 3, 2, 1)
    assert 590 <= s["ack_p50_s"] <= 700 and s["resolve_p50_s"] >= 590
    assert response_stats(conn, org_id="region-01") == []
    hist = alert_history(conn, "res-0001")
    assert len(hist) == 3 and hist[-1]["events"][0]["type"] == "proposed"
    assert [a["id"] for a in open_alerts(conn, "kommun-0180")] == [ids[2], ids[1]]


def test_silence_made_after_opening_stops_escalation(conn: psycopg.Connection[Any]) -> None:
    world(conn)
    svc = AlertService(conn)
    svc.handle(candidate(), T0)
    n0 = len(outbox(conn))
    add_silence(conn, "resident", "res-0001", "Inlagd på sjukhus", later(600), "coordinator-maria", later(1))
    assert svc.escalate(later(5)) == 1
    assert len(outbox(conn)) == n0
    row = conn.execute("SELECT outcome FROM escalation_deadlines WHERE step = 1").fetchone()
    assert row is not None and row[0].startswith("skipped:silence:")


def test_a_lost_database_connection_replays_instead_of_skipping(alerts_dsn: str) -> None:
    """Chaos-run finding: after a PostgreSQL restart candidates were skipped as bad data. Now the batch
    raises, so the consumer commits no offset and the runner reconnects and replays it."""
    from alerts.service import DatabaseLost

    with psycopg.connect(alerts_dsn, autocommit=True) as admin, psycopg.connect(alerts_dsn, autocommit=True) as c:
        world(c)
        svc = AlertService(c)
        pid = c.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DatabaseLost):
            svc.handle_batch([candidate()], lambda: later(0))
        assert admin.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
    with psycopg.connect(alerts_dsn, autocommit=True) as c:  # the runner's reconnect: the replay applies it
        results = AlertService(c).handle_batch([candidate()], lambda: later(0))
        assert results[0].decision is Decision.CREATE
