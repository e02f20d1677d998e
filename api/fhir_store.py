"""SQL for the FHIR read API: stored rows -> the domain records of :mod:`api.fhir`.

Parameterised SQL only; psycopg lives here, the mapping (:mod:`api.fhir`) stays
pure and the route (:mod:`api.routes.fhir`) decides and audits. Searches are
keyset-paginated on ``(time, id)``, newest first; callers ask for ``limit + 1``
rows to know whether a next page exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from psycopg import Connection
from psycopg.rows import dict_row

from api import fhir, store
from api.access import NEEDS_VISIT_KIND, NEEDS_VISIT_REASON, NEEDS_VISIT_REASON_SV, Category, ResidentFacts

if TYPE_CHECKING:
    from api.routes.fhir import DateRange

Row = dict[str, Any]


def _rows(conn: Connection[Any], query: str, params: Sequence[Any] = ()) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def _one(conn: Connection[Any], query: str, params: Sequence[Any] = ()) -> Row | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


def _window(col: str, id_col: str, dates: DateRange, after: list[Any] | None, params: list[Any]) -> list[str]:
    """WHERE parts for a date range and a (time, id) keyset cursor, newest first."""
    where = []
    if dates.since is not None:
        where.append(f"{col} >= %s")
        params.append(dates.since)
    if dates.until is not None:
        where.append(f"{col} < %s")
        params.append(dates.until)
    if after is not None:
        where.append(f"({col}, {id_col}::text) < (%s::timestamptz, %s)")
        params.extend([str(after[0]), str(after[1])])
    return where


def resident_facts(conn: Connection[Any], resident_id: str) -> ResidentFacts | None:
    """The access policy's facts (the API core's query)."""
    return store.resident_facts(conn, resident_id)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


# --- Patient ------------------------------------------------------------------------------------


def resident(conn: Connection[Any], resident_id: str) -> fhir.ResidentRecord | None:
    """The resident with identity fields; the mapping shows them only when allowed."""
    r = _one(conn, "SELECT * FROM residents WHERE id = %s", (resident_id,))
    if r is None:
        return None
    return fhir.ResidentRecord(
        resident_id=str(r["id"]),
        org_id=_str(r.get("org_id")),
        active=bool(r.get("active", True)),
        given_name=r.get("given_name") or r.get("first_name"),
        family_name=r.get("family_name") or r.get("last_name"),
        personnummer=r.get("personnummer") or r.get("personal_number"),
        birth_date=r.get("birth_date"),
        gender=r.get("gender") if r.get("gender") in ("male", "female", "other", "unknown") else None,
    )


# --- Device -------------------------------------------------------------------------------------

_DEVICE_SQL = (
    "SELECT d.*, r.resident_id AS r_resident_id, r.gateway_id AS r_gateway_id, r.home_id AS r_home_id"
    " FROM devices d LEFT JOIN device_registry r ON r.device_id = d.id"
)


def _device(r: Row) -> fhir.DeviceRecord:
    kind = r.get("kind") or r.get("device_kind") or "sensor"
    return fhir.DeviceRecord(
        device_id=str(r["id"]),
        device_kind=str(kind),
        resident_id=_str(r.get("r_resident_id") or r.get("resident_id")),
        gateway_id=_str(r.get("r_gateway_id") or r.get("gateway_id")),
        home_id=_str(r.get("r_home_id") or r.get("home_id")),
        room=r.get("room"),
        online=r.get("online"),
        last_seen=r.get("last_seen"),
        battery_pct=r.get("battery_pct"),
        active=r.get("revoked_at") is None and r.get("active", True) is not False,
    )


def device(conn: Connection[Any], device_id: str) -> fhir.DeviceRecord | None:
    r = _one(conn, f"{_DEVICE_SQL} WHERE d.id = %s", (device_id,))
    return _device(r) if r else None


def devices(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.DeviceRecord]:
    q_params: list[Any] = [resident_id]
    where = "r.resident_id = %s"
    if after is not None:
        where += " AND d.id::text > %s"
        q_params.append(str(after[1]))
    q_params.append(limit)
    return [_device(r) for r in _rows(conn, f"{_DEVICE_SQL} WHERE {where} ORDER BY d.id LIMIT %s", q_params)]


# --- Observation ----------------------------------------------------------------------------------

CLINICAL_READINGS = frozenset({"heart_rate", "spo2", "temperature"})


def observation_category(o: fhir.ObservationRecord) -> Category:
    """Anomaly scores are clinical (risk models); readings and features are sensor events.

    The same split as the REST API (``/vitals`` is sensor events, ``/scores`` clinical), so a
    caller can never read through FHIR what the REST API refuses, or the other way round.
    """
    return Category.CLINICAL if o.category == "score" else Category.SENSOR_EVENTS


def _observation(r: Row) -> fhir.ObservationRecord:
    return fhir.ObservationRecord(
        observation_id=str(r["id"]),
        resident_id=str(r["resident_id"]),
        category=str(r["category"]),
        code=str(r["code"]),
        ts=r["ts"],
        value=r.get("value"),
        unit=r.get("unit"),
        device_id=_str(r.get("device_id")),
        period_end=r.get("period_end"),
        detector_version=_str(r.get("detector_version")),
        threshold=r.get("threshold"),
    )


# One view over the three stored kinds of observation. Ids are prefixed per kind so a read by id
# finds its table.
_OBS_UNION = """
SELECT * FROM (
  SELECT 'ev-' || e.event_id::text AS id, e.resident_id, 'reading' AS category, e.kind AS code, e.ts,
         e.value AS value, e.unit, e.device_id, NULL::timestamptz AS period_end,
         NULL::text AS detector_version, NULL::double precision AS threshold
    FROM events e
) o
"""


def observation(conn: Connection[Any], observation_id: str) -> fhir.ObservationRecord | None:
    r = _one(conn, f"{_OBS_UNION} WHERE o.id = %s", (observation_id,))
    return _observation(r) if r else None


def observations(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.ObservationRecord]:
    q_params: list[Any] = [resident_id]
    where = ["o.resident_id = %s"]
    clinical = Category.CLINICAL in categories
    sensor = Category.SENSOR_EVENTS in categories
    if not clinical:
        where.append("o.category <> 'score'")
    if not sensor:
        where.append("o.category = 'score'")
    code = params.get("code")
    if code:
        where.append("o.code = %s")
        q_params.append(code.rpartition("|")[2])
    category = params.get("category")
    if category:
        cat = category.rpartition("|")[2]
        if cat == "vital-signs":
            where.append("o.code = ANY(%s)")
            q_params.append(list(CLINICAL_READINGS))
        elif cat in ("reading", "feature", "score"):
            where.append("o.category = %s")
            q_params.append(cat)
    where += _window("o.ts", "o.id", dates, after, q_params)
    q_params.append(limit)
    q = f"{_OBS_UNION} WHERE {' AND '.join(where)} ORDER BY o.ts DESC, o.id DESC LIMIT %s"
    return [_observation(r) for r in _rows(conn, q, q_params)]


# --- Alerts: Flag, DetectedIssue, CommunicationRequest, Task --------------------------------------

#: Alert kinds that stand for a lasting warning (Flag): technical trouble -> "monitoring degraded".
MONITORING_KINDS = frozenset({"gateway_silent", "device_silent", "low_battery", "gateway_offline"})
FALL_RISK_KINDS = frozenset({"fall_risk", "decline"})


def _alert(r: Row) -> fhir.AlertRecord:
    return fhir.AlertRecord(
        alert_id=str(r["id"]),
        resident_id=str(r["resident_id"]),
        kind=str(r["kind"]),
        family=str(r.get("family") or "welfare"),
        severity=str(r.get("severity") or "medium"),
        status=str(r["status"]),
        detector=str(r.get("detector") or ""),
        detector_version=str(r.get("detector_version") or ""),
        reason=str(r.get("reason") or ""),
        reason_sv=str(r.get("reason_sv") or r.get("reason") or ""),
        created_at=r["created_at"],
        event_time=r.get("event_time"),
        org_id=_str(r.get("responsible_org_id") or r.get("org_id")),
        owner_user=_str(r.get("acknowledged_by") or r.get("owner")),
        acknowledged_at=r.get("acknowledged_at"),
        resolved_at=r.get("resolved_at"),
        ack_deadline=r.get("ack_deadline") or r.get("escalate_at"),
        outcome=_str(r.get("outcome")),
        dismiss_reason=_str(r.get("dismiss_reason")),
        updated_at=r.get("updated_at"),
    )


def needs_visit(a: fhir.AlertRecord) -> fhir.AlertRecord:
    """A clinical alert as home care may see it: "needs a visit", no detector, no risk wording."""
    return replace(
        a,
        kind=NEEDS_VISIT_KIND,
        family="summary",
        detector="",
        detector_version="",
        reason=NEEDS_VISIT_REASON,
        reason_sv=NEEDS_VISIT_REASON_SV,
        outcome=None,
        dismiss_reason=None,
    )


def alert(conn: Connection[Any], alert_id: str) -> fhir.AlertRecord | None:
    r = _one(conn, "SELECT * FROM alerts WHERE id::text = %s", (alert_id,))
    return _alert(r) if r else None


def _alerts_where(
    resident_id: str, dates: DateRange, params: Mapping[str, str], after: list[Any] | None, q_params: list[Any]
) -> list[str]:
    where = ["resident_id = %s"]
    q_params.append(resident_id)
    where += _window("created_at", "id", dates, after, q_params)
    return where


def alerts(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.AlertRecord]:
    q_params: list[Any] = []
    where = _alerts_where(resident_id, dates, params, after, q_params)
    status = params.get("status")
    if status:
        # FHIR Task status -> our lifecycle states.
        states = [k for k, v in fhir.TASK_STATUS.items() if v == status] or [status]
        where.append("status = ANY(%s)")
        q_params.append(states)
    q_params.append(limit)
    q = f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY created_at DESC, id::text DESC LIMIT %s"
    return [_alert(r) for r in _rows(conn, q, q_params)]


def medication_alert(conn: Connection[Any], alert_id: str) -> fhir.AlertRecord | None:
    a = alert(conn, alert_id)
    return a if a is not None and a.kind in fhir.MEDICATION_ALERT_KINDS else None


def medication_alerts(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.AlertRecord]:
    q_params: list[Any] = []
    where = _alerts_where(resident_id, dates, params, after, q_params)
    where.append("kind = ANY(%s)")
    q_params.append(sorted(fhir.MEDICATION_ALERT_KINDS))
    q_params.append(limit)
    q = f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY created_at DESC, id::text DESC LIMIT %s"
    return [_alert(r) for r in _rows(conn, q, q_params)]


def _warning(r: Row) -> fhir.WarningRecord:
    a = _alert(r)
    clinical = a.kind in FALL_RISK_KINDS
    active = a.status in ("open", "acknowledged", "accepted")
    return fhir.WarningRecord(
        warning_id=a.alert_id,
        resident_id=a.resident_id,
        kind="fall_risk" if clinical else "monitoring_degraded",
        active=active,
        start=a.event_time or a.created_at,
        end=None if active else (a.resolved_at or a.updated_at),
        text=a.reason,
        text_sv=a.reason_sv,
        clinical=clinical,
    )


_WARNING_KINDS = sorted(MONITORING_KINDS | FALL_RISK_KINDS)


def warning(conn: Connection[Any], warning_id: str) -> fhir.WarningRecord | None:
    r = _one(conn, "SELECT * FROM alerts WHERE id::text = %s AND kind = ANY(%s)", (warning_id, _WARNING_KINDS))
    return _warning(r) if r else None


def warnings(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.WarningRecord]:
    kinds = []
    if Category.ALERTS in categories:
        kinds += sorted(MONITORING_KINDS)
    if Category.CLINICAL in categories:
        kinds += sorted(FALL_RISK_KINDS)
    q_params: list[Any] = []
    where = _alerts_where(resident_id, dates, params, after, q_params)
    where.append("kind = ANY(%s)")
    q_params.append(kinds)
    status = params.get("status")
    if status == "active":
        where.append("status IN ('open', 'acknowledged', 'accepted')")
    elif status == "inactive":
        where.append("status NOT IN ('open', 'acknowledged', 'accepted')")
    q_params.append(limit)
    q = f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY created_at DESC, id::text DESC LIMIT %s"
    return [_warning(r) for r in _rows(conn, q, q_params)]


# --- MedicationAdministration ------------------------------------------------------------------------

_DOSE_KINDS = ("medication.dose_taken", "medication.dose_missed")


def _dose(r: Row) -> fhir.DoseRecord:
    value = r.get("value")
    return fhir.DoseRecord(
        dose_id=f"ev-{r['event_id']}",
        resident_id=str(r["resident_id"]),
        slot=str(value) if value is not None else "dose",
        status="taken" if r["kind"] == "medication.dose_taken" else "missed",
        ts=r["ts"],
        robot_device_id=_str(r.get("device_id")),
    )


def dose(conn: Connection[Any], dose_id: str) -> fhir.DoseRecord | None:
    if not dose_id.startswith("ev-"):
        return None
    r = _one(
        conn, "SELECT * FROM events WHERE event_id::text = %s AND kind = ANY(%s)", (dose_id[3:], list(_DOSE_KINDS))
    )
    return _dose(r) if r else None


def doses(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.DoseRecord]:
    q_params: list[Any] = [resident_id, list(_DOSE_KINDS)]
    where = ["resident_id = %s", "kind = ANY(%s)"]
    cursor = [after[0], str(after[1]).removeprefix("ev-")] if after else None
    where += _window("ts", "event_id", dates, cursor, q_params)
    q_params.append(limit)
    q = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY ts DESC, event_id::text DESC LIMIT %s"
    return [_dose(r) for r in _rows(conn, q, q_params)]


# --- Communication (notification deliveries) ---------------------------------------------------------


def _notification(r: Row) -> fhir.NotificationRecord:
    return fhir.NotificationRecord(
        notification_id=str(r["id"]),
        alert_id=str(r["alert_id"]),
        resident_id=str(r["resident_id"]),
        channel=str(r.get("channel") or "webhook"),
        recipient_org=_str(r.get("org_id") or r.get("recipient_org")),
        status=str(r.get("status") or "pending"),
        created_at=r["created_at"],
        sent_at=r.get("sent_at") or r.get("delivered_at"),
        error=_str(r.get("last_error") or r.get("error")),
    )


_NOTIFICATION_SQL = "SELECT n.*, a.resident_id FROM notifications n JOIN alerts a ON a.id = n.alert_id"


def notification(conn: Connection[Any], notification_id: str) -> fhir.NotificationRecord | None:
    r = _one(conn, f"{_NOTIFICATION_SQL} WHERE n.id::text = %s", (notification_id,))
    return _notification(r) if r else None


def notifications(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.NotificationRecord]:
    q_params: list[Any] = [resident_id]
    where = ["a.resident_id = %s", *_window("n.created_at", "n.id", dates, after, q_params)]
    q_params.append(limit)
    q = f"{_NOTIFICATION_SQL} WHERE {' AND '.join(where)} ORDER BY n.created_at DESC, n.id::text DESC LIMIT %s"
    return [_notification(r) for r in _rows(conn, q, q_params)]


# --- CareTeam (care relations) ----------------------------------------------------------------------


def _relation(r: Row) -> fhir.CareRelationRecord:
    return fhir.CareRelationRecord(
        relation_id=str(r["id"]),
        resident_id=str(r["resident_id"]),
        user_id=str(r["user_id"]),
        org_id=str(r["org_id"]),
        role=str(r.get("role") or "carer"),
        start=r["valid_from"],
        end=r.get("valid_to"),
        unit=r.get("unit"),
        kind=r.get("kind"),
    )


def care_relation(conn: Connection[Any], relation_id: str) -> fhir.CareRelationRecord | None:
    if not relation_id.isdigit():
        return None
    r = _one(conn, "SELECT * FROM care_relations WHERE id = %s", (int(relation_id),))
    return _relation(r) if r else None


def care_relations(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.CareRelationRecord]:
    q_params: list[Any] = [resident_id]
    where = ["resident_id = %s", *_window("valid_from", "id", dates, after, q_params)]
    q_params.append(limit)
    q = f"SELECT * FROM care_relations WHERE {' AND '.join(where)} ORDER BY valid_from DESC, id::text DESC LIMIT %s"
    return [_relation(r) for r in _rows(conn, q, q_params)]


# --- Consent: sharing consents, blocks, monitoring consents -----------------------------------------


def _sharing(r: Row) -> fhir.ConsentRecord:
    return fhir.ConsentRecord(
        consent_id=f"sharing-{r['id']}",
        resident_id=str(r["resident_id"]),
        kind="sharing",
        active=r.get("withdrawn_at") is None,
        recorded_at=r["recorded_at"],
        start=r["valid_from"],
        end=r["valid_to"],
        org_id=r["reader_org_id"],
        recorded_by=r.get("recorded_by"),
        method=r.get("method"),
        categories=tuple(r.get("categories") or ()),
        basis=r.get("legal_basis"),
    )


def _block(r: Row) -> fhir.ConsentRecord:
    return fhir.ConsentRecord(
        consent_id=f"block-{r['id']}",
        resident_id=str(r["resident_id"]),
        kind="block",
        active=r.get("lifted_at") is None,
        recorded_at=r["created_at"],
        start=r["valid_from"],
        end=r.get("valid_to"),
        org_id=r.get("org_id"),
        recorded_by=r.get("created_by"),
        categories=(r["category"],) if r.get("category") else (),
    )


_CONSENT_TABLES = {"sharing": ("sharing_consents", _sharing), "block": ("blocks", _block)}


def consent(conn: Connection[Any], consent_id: str) -> fhir.ConsentRecord | None:
    kind, _, num = consent_id.partition("-")
    if kind not in _CONSENT_TABLES or not num.isdigit():
        return None
    table, build = _CONSENT_TABLES[kind]
    r = _one(conn, f"SELECT * FROM {table} WHERE id = %s", (int(num),))
    return build(r) if r else None


def consents(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.ConsentRecord]:
    out = [_sharing(r) for r in store.sharing_consents_of(conn, resident_id)]
    out += [_block(r) for r in store.blocks_of(conn, resident_id)]
    out.sort(key=lambda c: (c.recorded_at.isoformat(), c.consent_id), reverse=True)
    if after is not None:
        out = [c for c in out if (c.recorded_at.isoformat(), c.consent_id) < (str(after[0]), str(after[1]))]
    return out[:limit]


# --- AuditEvent -------------------------------------------------------------------------------------


def _audit(r: Row) -> fhir.AuditRecord:
    return fhir.AuditRecord(
        audit_id=str(r["id"]),
        at=r["at"],
        action=_audit_action(str(r["action"])),
        resource=str(r["resource"]),
        outcome=str(r["outcome"]),
        user_id=r.get("user_id"),
        org_id=r.get("org_id"),
        role=r.get("role"),
        resident_id=r.get("resident_id"),
        purpose=r.get("purpose"),
        emergency=bool(r.get("emergency")),
        client=r.get("client"),
        request_id=r.get("request_id"),
        basis=r.get("basis"),
    )


def _audit_action(action: str) -> str:
    """``GET /v1/...`` -> read; ``FHIR search Observation`` -> search; other verbs -> create/update/delete."""
    verb = action.split(" ", 2)
    if verb[0] == "FHIR" and len(verb) > 1:
        return verb[1]
    return {"GET": "read", "POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}.get(
        verb[0], "stream" if verb[0] == "SSE" else "read"
    )


def audit_row(conn: Connection[Any], audit_id: int) -> fhir.AuditRecord | None:
    rows = store.audit_query(conn, before_id=audit_id + 1, limit=1)
    return _audit(rows[0]) if rows and int(rows[0]["id"]) == audit_id else None


def audit_rows(
    conn: Connection[Any], resident_id: str | None, dates: DateRange, limit: int, after: list[Any] | None
) -> list[fhir.AuditRecord]:
    rows = store.audit_query(
        conn,
        resident_id=resident_id,
        since=dates.since,
        until=dates.until,
        before_id=int(after[1]) if after else None,
        limit=limit,
    )
    return [_audit(r) for r in rows]
