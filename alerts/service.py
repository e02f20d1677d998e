"""The alert service's core loop, callable without Kafka: ``AlertService.handle(candidate, now)``.

One candidate -> one transaction: the alert row, its ``alert_events`` row(s) (+ ``pg_notify``), its
escalation deadlines and its outbox rows. The Kafka consumer (alerts/kafka.py) commits its offset
only after that transaction committed; the embedded demo calls ``handle`` from an in-process queue.
``escalate(now)`` is the escalation scan: due deadlines taken with SKIP LOCKED, the outbox rows and the
deadline's done mark in one transaction, so a process killed mid-way notifies each step exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from alerts import store
from alerts.escalation import (
    DueAction,
    EscalationPolicy,
    first_deadline,
    on_due,
    policy_for,
)
from alerts.lifecycle import (
    AlertRecord,
    Decision,
    Policy,
    Status,
    decide,
    inhibiting_alert,
    is_canary,
    record_change,
    related_group,
)
from alerts.rosters import on_call
from alerts.routing import Responsibility, RoutingRule, is_injured, responsible, route
from alerts.silences import Silence, StoredAlert, matching_silence
from carechain.candidates import AlertCandidate, CandidateState

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HandleResult:
    decision: Decision
    alert_id: int | None = None
    suppressed_by: str | None = None
    notified: int = 0  # outbox rows written
    events: list[int] = field(default_factory=list)


def alert_payload(row: dict[str, Any]) -> dict[str, Any]:
    """What receivers outside see: pseudonymous ids, kind, severity and the one-sentence reasons."""
    keys = (
        "id", "kind", "family", "severity", "status", "resident_id", "home_id", "tier", "reason", "reason_sv",
        "responsible_org_id", "responsible_role", "detector", "detector_version",
    )  # fmt: skip
    out = {k: row.get(k) for k in keys}
    out["alert_uuid"] = str(row.get("alert_uuid"))
    out["group_id"] = str(row.get("group_id"))
    for k in ("opened_at", "event_time"):
        v = row.get(k)
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    return out


class DatabaseLost(ConnectionError):
    """The service's database connection broke; the batch must be replayed, not skipped."""


class AlertService:
    """Applies candidates and due deadlines to the database. One instance per connection."""

    def __init__(self, conn: store.Conn, policy: Policy | None = None, config_ttl_s: float = 30.0) -> None:
        self.conn = conn
        self.policy = policy or Policy()
        self._config_ttl = config_ttl_s
        self._config_at = -1e9
        self._rules: list[RoutingRule] = []
        self._policies: list[tuple[str | None, EscalationPolicy]] = []
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}

    # --- configuration (routing rules, escalation policies), refreshed now and then ---------------------
    def _config(self) -> tuple[list[RoutingRule], list[tuple[str | None, EscalationPolicy]]]:
        if time.monotonic() - self._config_at > self._config_ttl:
            self._rules = store.routing_rules(self.conn)
            self._policies = store.escalation_policies(self.conn)
            self._config_at = time.monotonic()
        return self._rules, self._policies

    def reload_config(self) -> None:
        self._config_at = -1e9
        self._cache.clear()

    def _cached(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        """Registry facts that change rarely (who is responsible, teams, endpoints, gateways), kept for the
        config TTL: a handful of queries fewer per candidate."""
        hit = self._cache.get(key)
        t = time.monotonic()
        if hit is not None and t - hit[0] <= self._config_ttl:
            return hit[1]
        value = load()
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (t, value)
        return value

    def _responsibility(self, resident_id: str) -> Responsibility:
        r: Responsibility = self._cached(("resp", resident_id), lambda: store.responsibility(self.conn, resident_id))
        return r

    # --- candidates ----------------------------------------------------------------------------------------
    def handle(self, candidate: AlertCandidate, now: datetime) -> HandleResult:
        """Apply one candidate in one transaction."""
        with self.conn.transaction():
            store.lock_event_order(self.conn)
            return self._handle(candidate, now)

    def handle_batch(self, candidates: list[AlertCandidate], clock: Callable[[], datetime]) -> list[HandleResult]:
        """Apply a batch in one transaction (one commit, one WAL flush, for a whole Kafka poll). If any
        candidate fails, the batch is rolled back and applied one by one, so one bad candidate costs only
        itself (it is logged and skipped, never crashes the service)."""
        if not candidates:
            return []
        try:
            with self.conn.transaction():
                store.lock_event_order(self.conn)
                return [self._handle(c, clock()) for c in candidates]
        except Exception:  # a bad candidate: fall back to one transaction each to isolate it
            self._raise_if_database_lost()
            log.warning("batch of %d candidates failed; applying one by one", len(candidates), exc_info=True)
        out = []
        for c in candidates:
            try:
                out.append(self.handle(c, clock()))
            except Exception as e:  # logged with its incident key only (pseudonymous)
                self._raise_if_database_lost()
                log.error("candidate %s could not be applied: %s: %s", c.incident_key, type(e).__name__, e)
                out.append(HandleResult(Decision.IGNORE))
        return out

    def _raise_if_database_lost(self) -> None:
        """A lost connection is not a bad candidate: re-raise so the consumer commits no offset and the
        runner reconnects and replays (found by the chaos run: after a PostgreSQL restart every candidate
        was skipped as if it were bad data, and those falls were lost)."""
        if self.conn.closed or self.conn.broken:
            raise DatabaseLost("the database connection was lost; candidates will be replayed")

    def _handle(self, c: AlertCandidate, now: datetime) -> HandleResult:
        conn = self.conn
        with conn.pipeline():
            pre = store.prefetch(
                conn, c.incident_key, c.home_id, now - self.policy.group_window, now, c.resident_id, c.kind
            )
            return self._apply(c, pre, now)

    def _apply(self, c: AlertCandidate, pre: store.Prefetch, now: datetime) -> HandleResult:
        conn = self.conn
        current = pre.current
        decision = decide(c, current, now, self.policy)
        if decision in (Decision.DUPLICATE, Decision.IGNORE):
            return HandleResult(decision, current.id if current else None)
        if is_canary(c, self.policy):
            return self._canary(c, current, decision, now)
        if decision is Decision.REFRESH:
            assert current is not None
            store.update_alert(conn, current.id, {"last_candidate_at": c.detected_at, "condition_active": True}, now)
            return HandleResult(decision, current.id)
        if decision in (Decision.AUTO_RESOLVE, Decision.CLEAR_ONLY):
            assert current is not None
            return self._clear(c, current, decision, pre, now)
        if decision is Decision.REOPEN:
            assert current is not None
            return self._reopen(c, current, pre, now)
        return self._create(c, current, decision, pre, now)

    def _suppression(
        self, c: AlertCandidate, pre: store.Prefetch, now: datetime
    ) -> tuple[str | None, dict[str, Any], list[AlertRecord]]:
        """Silence, inhibition: who mutes this alert (recorded, not notified)."""
        recent = pre.recent
        silence = None
        if pre.silences:
            gateways = self._cached(("gw", c.home_id or ""), partial(store.gateways_of_home, self.conn, c.home_id))
            silence = matching_silence(c, pre.silences, gateways, now)
        if silence is not None:
            return f"silence:{silence.id}", {"silence_id": silence.id, "silence_reason": silence.reason}, recent
        inhibitor = inhibiting_alert(c, recent)
        if inhibitor is not None:
            return f"inhibited:{inhibitor.id}", {"inhibited_by_alert": inhibitor.id, "by_kind": inhibitor.kind}, recent
        return None, {}, recent

    def _flap(self, c: AlertCandidate, pre: store.Prefetch, now: datetime) -> tuple[bool, bool]:
        """Count a state change; returns (flapping, became flapping now). Falls and alarms never flap."""
        if c.kind in self.policy.never_flapping:
            return False, False
        new, became = record_change(pre.flap, now, self.policy)
        store.save_flap_state(self.conn, c.resident_id, c.kind, new, now)
        return new.flapping, became

    def _create(
        self, c: AlertCandidate, current: AlertRecord | None, decision: Decision, pre: store.Prefetch, now: datetime
    ) -> HandleResult:
        conn = self.conn
        rules, _ = self._config()
        resp = self._responsibility(c.resident_id)
        owner = responsible(c.kind, c.severity.value, resp, rules)
        suppressed_by, sup_detail, recent = self._suppression(c, pre, now)
        flapping, became_flapping = self._flap(c, pre, now)
        if suppressed_by is None and flapping:
            suppressed_by = "flapping"
        group = related_group(c, recent, now, self.policy)
        min_duration = self.policy.min_duration_of(c.kind)
        fields: dict[str, Any] = {
            "incident_key": c.incident_key,
            "incident_seq": (current.incident_seq + 1) if current else 1,
            "group_id": group.group_id if group else store.new_group_id(),
            "resident_id": c.resident_id,
            "home_id": c.home_id,
            "kind": c.kind,
            "family": c.family.value,
            "severity": c.severity.value,
            "detector": c.detector,
            "detector_version": c.detector_version,
            "status": Status.PROPOSED.value,
            "responsible_org_id": owner.org_id if owner else (resp.kommun_org_id or resp.region_org_id),
            "responsible_role": owner.role if owner else None,
            "tier": 1,
            "event_time": c.event_time,
            "created_at": now,
            "opened_at": now,
            "last_candidate_at": c.detected_at,
            "reason": c.reason,
            "reason_sv": c.reason_sv,
            "evidence": c.to_dict()["evidence"],
            "suppressed": suppressed_by is not None,
            "suppressed_by": suppressed_by,
            "notify_after": now + min_duration if min_duration else None,
            "flap_count": 1 if flapping else 0,
        }
        # The id and uuid are chosen here (id from the prefetch's nextval), so the insert needs no answer and
        # the whole candidate costs two round trips. A concurrent insert of the same key (two instances during
        # a rebalance) fails the unique key: the batch is retried one by one and this one becomes a duplicate.
        alert_id = pre.next_id
        fields.update({"id": alert_id, "alert_uuid": store.new_group_id(), "reopen_count": 0})
        store.insert_alert_blind(conn, fields)
        row = fields
        detail: dict[str, Any] = {"incident_key": c.incident_key, "candidate_id": c.candidate_id, **sup_detail}
        if suppressed_by:
            detail["suppressed_by"] = suppressed_by
        if group:
            detail["related_to"] = group.id
        if decision is Decision.NEW_EPISODE and current:
            detail["previous_alert"] = current.id
        res = HandleResult(decision, alert_id, suppressed_by)
        store.add_event_blind(conn, alert_id, "proposed", now, detail=detail)
        if group:
            store.add_event_blind(conn, group.id, "related", now, detail={"alert_id": alert_id})
        if became_flapping:
            store.add_event_blind(conn, alert_id, "flapping", now, detail={"kind": c.kind})
            res.notified += self._notify_flapping(alert_id, c, owner.org_id if owner else None, now)
        if suppressed_by is None:
            if min_duration:
                store.schedule_deadline(conn, alert_id, 0, now + min_duration)  # hysteresis
            else:
                res.notified += self._start_notifications(row, now, resp, is_injured(c.evidence.features))
        return res

    def _start_notifications(
        self, row: dict[str, Any], now: datetime, resp: Responsibility, injured: bool = False
    ) -> int:
        """Tier-1 notification now and the first escalation deadline."""
        alert_id = int(row["id"])
        n = self._notify_tier(row, 1, 0, now, resp, injured)
        _, policies = self._config()
        pol = policy_for(row["severity"], row["responsible_org_id"], policies)
        dl = first_deadline(pol, row["opened_at"])
        if dl is not None:
            store.schedule_deadline(self.conn, alert_id, dl.step, dl.due_at)
        return n

    def _reopen(self, c: AlertCandidate, current: AlertRecord, pre: store.Prefetch, now: datetime) -> HandleResult:
        conn = self.conn
        suppressed_by, sup_detail, _ = self._suppression(c, pre, now)
        flapping, became_flapping = self._flap(c, pre, now)
        if suppressed_by is None and flapping:
            suppressed_by = "flapping"
        row = store.alert_row(conn, current.id)
        assert row is not None
        reopen_count = int(row["reopen_count"]) + 1
        store.update_alert(
            conn,
            current.id,
            {
                "status": Status.PROPOSED.value,
                "opened_at": now,
                "last_candidate_at": c.detected_at,
                "condition_active": True,
                "cleared_at": None,
                "resolved_at": None,
                "resolved_by": None,
                "outcome": None,
                "acknowledged_at": None,
                "acknowledged_by": None,
                "accepted_at": None,
                "accepted_by": None,
                "dismissed_at": None,
                "dismissed_by": None,
                "dismiss_reason": None,
                "tier": 1,
                "suppressed": suppressed_by is not None,
                "suppressed_by": suppressed_by,
                "reopen_count": reopen_count,
                "flap_count": int(row["flap_count"]) + (1 if flapping else 0),
            },
            now,
        )
        store.clear_deadlines(conn, current.id)
        res = HandleResult(Decision.REOPEN, current.id, suppressed_by)
        detail = {"reopen_count": reopen_count, "candidate_id": c.candidate_id, **sup_detail}
        res.events.append(store.add_event(conn, current.id, "reopened", now, detail=detail))
        if became_flapping:
            res.events.append(store.add_event(conn, current.id, "flapping", now, detail={"kind": c.kind}))
            res.notified += self._notify_flapping(current.id, c, row["responsible_org_id"], now)
        if suppressed_by is None:
            resp = self._responsibility(c.resident_id)
            fresh = store.alert_row(conn, current.id)
            assert fresh is not None
            res.notified += self._start_notifications(fresh, now, resp, is_injured(c.evidence.features))
        return res

    def _clear(
        self, c: AlertCandidate, current: AlertRecord, decision: Decision, pre: store.Prefetch, now: datetime
    ) -> HandleResult:
        conn = self.conn
        flapping, became_flapping = self._flap(c, pre, now)
        fields: dict[str, Any] = {"condition_active": False, "cleared_at": now, "last_candidate_at": c.detected_at}
        res = HandleResult(decision, current.id)
        if decision is Decision.AUTO_RESOLVE:
            fields.update({"status": Status.RESOLVED.value, "resolved_at": now, "resolved_by": "system:cleared"})
            if flapping:
                fields["flap_count"] = 1
            store.update_alert(conn, current.id, fields, now)
            res.events.append(
                store.add_event(conn, current.id, "resolved", now, detail={"auto": True, "reason": c.reason})
            )
        else:
            store.update_alert(conn, current.id, fields, now)
            res.events.append(store.add_event(conn, current.id, "cleared", now, detail={"reason": c.reason}))
        if became_flapping:
            res.events.append(store.add_event(conn, current.id, "flapping", now, detail={"kind": c.kind}))
            row = store.alert_row(conn, current.id)
            res.notified += self._notify_flapping(current.id, c, row["responsible_org_id"] if row else None, now)
        return res

    def _canary(
        self, c: AlertCandidate, current: AlertRecord | None, decision: Decision, now: datetime
    ) -> HandleResult:
        """The pipeline heartbeat: record the round trip, keep the alert closed, tell no nurse."""
        if c.state is CandidateState.CLEARED or decision is not Decision.CREATE:
            return HandleResult(Decision.IGNORE, current.id if current else None)
        rtt = store.record_canary(self.conn, c.resident_id, c.event_time, now)
        row = store.insert_alert(
            self.conn,
            {
                "incident_key": c.incident_key,
                "resident_id": c.resident_id,
                "home_id": c.home_id,
                "kind": c.kind,
                "family": c.family.value,
                "severity": c.severity.value,
                "detector": c.detector,
                "detector_version": c.detector_version,
                "status": Status.RESOLVED.value,
                "event_time": c.event_time,
                "created_at": now,
                "opened_at": now,
                "last_candidate_at": c.detected_at,
                "resolved_at": now,
                "resolved_by": "system:canary",
                "reason": c.reason,
                "reason_sv": c.reason_sv,
                "suppressed": True,
                "suppressed_by": "canary",
                "canary": True,
                "evidence": {"rtt_ms": rtt},
            },
        )
        log.info("canary %s arrived, round trip %.0f ms", c.resident_id, rtt)
        return HandleResult(Decision.CREATE, int(row["id"]) if row else None, "canary")

    # --- notifications ---------------------------------------------------------------------------------------
    def _notify_tier(
        self,
        row: dict[str, Any],
        tier: int,
        step: int,
        now: datetime,
        resp: Responsibility,
        injured: bool = False,
        collect: list[store.OutboxRow] | None = None,
    ) -> int:
        """Outbox rows for every target of ``tier``: the organisation's webhooks and the on-call person's
        (else the team's) e-mail. Dedup keys name alert, reopen, step, channel and target."""
        rules, _ = self._config()
        targets = route(row["kind"], row["severity"], tier, resp, rules, injured)
        base = f"a{row['id']}:r{row['reopen_count']}:s{step}"
        payload = {"type": "alert", "step": step, "alert": alert_payload({**row, "tier": tier})}
        rows: list[store.OutboxRow] = []
        for t in targets:
            payload_t = {**payload, "target": {"org_id": t.org_id, "role": t.role, "tier": tier}}
            endpoints = self._cached(("ep", t.org_id), partial(store.webhook_endpoints, self.conn, t.org_id))
            for ep in endpoints:
                key = f"{base}:webhook:{ep}"
                rows.append(store.OutboxRow(row["id"], "webhook", str(ep), {**payload_t, "dedup_key": key}, key, now))
            shifts, team_emails, tz = self._cached(
                ("team", t.org_id, t.role), partial(store.team_shifts, self.conn, t.org_id, t.role)
            )
            duty = on_call(shifts, now, tz)
            emails = [s.email for s in duty[:1] if s.email] or team_emails[:1]
            for email in emails:
                key = f"{base}:email:{email}"
                rows.append(store.OutboxRow(row["id"], "email", email, {**payload_t, "dedup_key": key}, key, now))
        if collect is not None:
            collect.extend(rows)  # the escalation scan writes all of its rows at once
        else:
            store.enqueue_many(self.conn, rows)
        return len(rows)

    def _notify_flapping(self, alert_id: int, c: AlertCandidate, org_id: str | None, now: datetime) -> int:
        """One notice that a resident's kind is flapping (then its alerts are recorded, not pushed)."""
        key = f"flapping:{c.resident_id}:{c.kind}:{now.isoformat(timespec='minutes')}"
        payload = {
            "type": "flapping",
            "resident_id": c.resident_id,
            "kind": c.kind,
            "org_id": org_id,
            "text": f"{c.kind} for {c.resident_id} is flapping: further changes are recorded, not notified",
        }
        return int(store.enqueue(self.conn, alert_id, "operator", "operators", {**payload, "dedup_key": key}, key, now))

    # --- escalation scan -------------------------------------------------------------------------------------
    def escalate(self, now: datetime, limit: int = 500) -> int:
        """One scan: judge every due deadline (SKIP LOCKED) and write the outcome of all of them set-wise (a few
        statements per scan, not per deadline). Returns deadlines handled. Everything commits in one
        transaction, so a crash leaves each deadline either wholly done (outbox rows, event, done mark, next
        deadline) or wholly due."""
        with self.conn.transaction():
            store.lock_event_order(self.conn)
            due = store.due_deadlines(self.conn, now, limit)
            if not due:
                return 0
            _, policies = self._config()
            silences = store.active_silences(self.conn, now)
            plan = store.ScanWrites()
            for d in due:
                self._on_due(d, policies, silences, now, plan)
            store.write_scan(self.conn, plan, now)
        return len(due)

    def _on_due(
        self,
        d: dict[str, Any],
        policies: list[tuple[str | None, EscalationPolicy]],
        silences: list[Silence],
        now: datetime,
        plan: store.ScanWrites,
    ) -> None:
        """One due deadline (its row carries the alert's columns): notify the tier or skip, mark it done.
        A silence made after the alert opened (the resident went to hospital) stops its escalation too."""
        if silences:
            subject = StoredAlert(d["resident_id"], d["home_id"], d["detector"], d["kind"], d["family"])
            gateways = self._cached(
                ("gw", d["home_id"] or ""), partial(store.gateways_of_home, self.conn, d["home_id"])
            )
            hit = matching_silence(subject, silences, gateways, now)
            if hit is not None:
                plan.done.append((d["alert_id"], d["step"], f"skipped:silence:{hit.id}"))
                return
        pol = policy_for(d["severity"], d["responsible_org_id"], policies)
        dec = on_due(
            pol,
            d["step"],
            Status(d["status"]),
            d["suppressed"],
            d["condition_active"],
            d["opened_at"],
            d["acknowledged_at"],
            d["tier"],
        )
        if dec.action is DueAction.SKIP:
            plan.done.append((d["alert_id"], d["step"], f"skipped:{dec.why}"))
            return
        resp = self._responsibility(d["resident_id"])
        injured = is_injured((d.get("evidence") or {}).get("features") or {})
        n = self._notify_tier(d, dec.tier, d["step"], now, resp, injured, collect=plan.outbox)
        kind = "notified" if d["step"] == 0 else ("retriggered" if d["step"] >= 1000 else "escalated")
        plan.done.append((d["alert_id"], d["step"], f"notified:tier{dec.tier}"))
        if dec.next is not None:
            plan.next.append((d["alert_id"], dec.next.step, dec.next.due_at))
        if dec.tier != d["tier"]:
            plan.tiers.append((d["alert_id"], dec.tier))
        plan.events.append((d["alert_id"], kind, {"step": d["step"], "tier": dec.tier, "why": dec.why,
                                                  "outbox_rows": n}))  # fmt: skip
