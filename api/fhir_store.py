"""SQL for the FHIR read API: stored rows -> the domain records of :mod:`api.fhir`.

The API core's queries (:mod:`api.store`) are reused wherever one exists
(identity, relations, consents, blocks, monitoring consents, alerts and their
history, the audit log); the few queries only FHIR needs are here. The mapping
(:mod:`api.fhir`) stays pure and the route (:mod:`api.routes.fhir`) decides
and audits. Searches are keyset-paginated on ``(time, id)``, newest first;
callers ask for ``limit + 1`` rows to know whether a next page exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import Connection
from psycopg.rows import dict_row

from api import fhir, store
from api.access import NEEDS_VISIT_KIND, NEEDS_VISIT_REASON, NEEDS_VISIT_REASON_SV, Category, ResidentFacts
from carechain.events import BOOL_KINDS, NUMERIC_RANGES, Kind

if TYPE_CHECKING:
    from api.routes.fhir import DateRange

Row = dict[str, Any]
#: A sensor that reported nothing for this long counts as offline (the care plan's default device silence).
SENSOR_SILENCE = timedelta(minutes=180)
ACTIVE_ALERT = ("proposed", "open", "acknowledged", "accepted")


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
        # Byte order ("C") on both sides, the same order as the ORDER BY and as Python's sort.
        where.append(f'({col}, ({id_col})::text COLLATE "C") < (%s::timestamptz, %s COLLATE "C")')
        params.extend([str(after[0]), str(after[1])])
    return where


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def resident_facts(conn: Connection[Any], resident_id: str) -> ResidentFacts | None:
    """The access policy's facts (the API core's query)."""
    return store.resident_facts(conn, resident_id)


# --- Patient ------------------------------------------------------------------------------------


def resident(conn: Connection[Any], resident_id: str) -> fhir.ResidentRecord | None:
    """The resident with identity fields; the mapping shows them only when the caller may see them."""
    r = store.resident_identity(conn, resident_id)
    if r is None:
        return None
    given, family = None, None
    if r.get("name"):
        parts = str(r["name"]).rsplit(" ", 1)
        given, family = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return fhir.ResidentRecord(
        resident_id=str(r["id"]),
        org_id=_str(r.get("org_id")),
        given_name=given,
        family_name=family,
        personnummer=_str(r.get("personnummer")),
    )


# --- Device: gateways and the sensors/robots under them ------------------------------------------


def _gateway_online(conn: Connection[Any], g: Row) -> bool:
    """Offline while revoked or while a "gateway silent" alert of its home is open."""
    if g.get("revoked_at") is not None:
        return False
    if "online" in g and g["online"] is not None:
        return bool(g["online"])
    open_silent = _one(
        conn,
        "SELECT 1 FROM alerts a JOIN residents r ON r.id = a.resident_id WHERE r.home_id = %s"
        " AND a.kind = 'gateway_silent' AND a.status = ANY(%s) LIMIT 1",
        (g["home_id"], list(ACTIVE_ALERT)),
    )
    return open_silent is None


def _gateway_record(conn: Connection[Any], g: Row, resident_id: str | None) -> fhir.DeviceRecord:
    return fhir.DeviceRecord(
        device_id=str(g["id"]),
        device_kind="gateway",
        resident_id=resident_id,
        home_id=_str(g.get("home_id")),
        online=_gateway_online(conn, g),
        active=g.get("revoked_at") is None,
    )


def _sensor_record(conn: Connection[Any], d: Row, now: datetime) -> fhir.DeviceRecord:
    seen = _one(
        conn,
        "SELECT max(ts) AS last_seen FROM observations WHERE resident_id = %s AND device_id = %s AND ts >= %s",
        (d["resident_id"], d["id"], now - SENSOR_SILENCE),
    )
    last_seen = seen["last_seen"] if seen else None
    return fhir.DeviceRecord(
        device_id=str(d["id"]),
        device_kind=str(d.get("kind") or "sensor"),
        resident_id=_str(d.get("resident_id")),
        gateway_id=_str(d.get("gateway_id")),
        room=d.get("room"),
        online=last_seen is not None,
        last_seen=last_seen,
    )


def _home_resident(conn: Connection[Any], home_id: str) -> str | None:
    r = _one(conn, "SELECT id FROM residents WHERE home_id = %s ORDER BY id LIMIT 1", (home_id,))
    return str(r["id"]) if r else None


def device(conn: Connection[Any], device_id: str) -> fhir.DeviceRecord | None:
    """A sensor/robot, or a gateway (attributed to its home's resident for the access check)."""
    now = datetime.now(UTC)
    d = _one(
        conn,
        "SELECT d.*, coalesce(d.resident_id, (SELECT r.id FROM residents r WHERE r.home_id = g.home_id"
        " ORDER BY r.id LIMIT 1)) AS owner FROM devices d JOIN gateways g ON g.id = d.gateway_id WHERE d.id = %s",
        (device_id,),
    )
    if d is not None:
        return _sensor_record(conn, {**d, "resident_id": d["owner"]}, now)
    g = store.gateway(conn, device_id)
    if g is None:
        return None
    return _gateway_record(conn, g, _home_resident(conn, str(g["home_id"])))


def devices(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.DeviceRecord]:
    """The resident's home gateway(s) and the devices under them, by id."""
    now = datetime.now(UTC)
    home = _one(conn, "SELECT home_id FROM residents WHERE id = %s", (resident_id,))
    if home is None or home["home_id"] is None:
        return []
    out: list[fhir.DeviceRecord] = []
    for g in _rows(conn, "SELECT * FROM gateways WHERE home_id = %s ORDER BY id", (home["home_id"],)):
        out.append(_gateway_record(conn, g, resident_id))
    for d in _rows(
        conn,
        "SELECT d.* FROM devices d JOIN gateways g ON g.id = d.gateway_id WHERE g.home_id = %s"
        " AND (d.resident_id IS NULL OR d.resident_id = %s) ORDER BY d.id",
        (home["home_id"], resident_id),
    ):
        out.append(_sensor_record(conn, {**d, "resident_id": resident_id}, now))
    out.sort(key=lambda r: r.device_id)
    if after is not None:
        out = [r for r in out if r.device_id > str(after[1])]
    return out[:limit]


# --- Observation: readings and detector scores -----------------------------------------------------


def observation_category(o: fhir.ObservationRecord) -> Category:
    """Anomaly scores are clinical (risk models); readings are sensor events.

    The same split as the REST API (``/vitals`` is sensor events, ``/scores`` clinical), so a
    caller can never read through FHIR what the REST API refuses, or the other way round.
    """
    return Category.CLINICAL if o.category == "score" else Category.SENSOR_EVENTS


def _reading_value(kind: str, value: Any) -> tuple[bool | float | str | None, str | None]:
    """Stored readings are numbers; booleans (motion, fall, alarm) go back to true/false, with units."""
    if value is None:
        return None, None
    if kind in {k.value for k in BOOL_KINDS}:
        return bool(value), None
    try:
        unit = NUMERIC_RANGES[Kind(kind)][2]
    except (ValueError, KeyError):
        unit = None
    return (float(value), unit) if isinstance(value, int | float) else (str(value), unit)


def _reading(r: Row) -> fhir.ObservationRecord:
    value, unit = _reading_value(str(r["kind"]), r.get("value"))
    return fhir.ObservationRecord(
        observation_id=f"ev-{r['event_id']}",
        resident_id=str(r["resident_id"]),
        category="reading",
        code=str(r["kind"]),
        ts=r["ts"],
        value=value,
        unit=unit,
        device_id=_str(r.get("device_id")),
    )


def _score_id(detector: str, ts: datetime) -> str:
    # Detector names are [a-z0-9_]: '.' stands in for '_' so the id stays a plain FHIR id.
    micros = int(ts.timestamp() * 1_000_000)
    return f"sc-{detector.replace('_', '.')}-{micros}"


def _score(r: Row) -> fhir.ObservationRecord:
    return fhir.ObservationRecord(
        observation_id=_score_id(str(r["detector"]), r["ts"]),
        resident_id=str(r["resident_id"]),
        category="score",
        code=str(r["detector"]),
        ts=r["ts"],
        value=float(r["score"]),
        detector_version=_str(r.get("detector_version")),
        threshold=r.get("threshold"),
    )


_READING_SQL = "SELECT * FROM observations WHERE kind NOT LIKE 'medication.%%'"


def observation(conn: Connection[Any], observation_id: str) -> fhir.ObservationRecord | None:
    if observation_id.startswith("ev-"):
        r = _one(conn, f"{_READING_SQL} AND event_id = %s", (observation_id[3:],))
        return _reading(r) if r else None
    if observation_id.startswith("sc-"):
        detector, _, micros = observation_id[3:].rpartition("-")
        if not micros.isdigit():
            return None
        ts = datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
        r = _one(
            conn,
            "SELECT * FROM detector_scores WHERE detector = %s AND ts >= %s AND ts < %s LIMIT 1",
            (detector.replace(".", "_"), ts - timedelta(microseconds=1), ts + timedelta(microseconds=1)),
        )
        return _score(r) if r else None
    return None


def observations(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.ObservationRecord]:
    """Readings (sensor events) and detector scores (clinical) merged newest first, only those allowed."""
    category = (params.get("category") or "").rpartition("|")[2]
    code = (params.get("code") or "").rpartition("|")[2] or None
    if code in ("8867-4", "59408-5", "8310-5"):
        code = {"8867-4": "heart_rate", "59408-5": "spo2", "8310-5": "temperature"}[code]
    want_scores = Category.CLINICAL in categories and category in ("", "score", "survey")
    want_readings = Category.SENSOR_EVENTS in categories and category in ("", "reading", "vital-signs", "activity")
    out: list[fhir.ObservationRecord] = []
    if want_readings:
        q_params: list[Any] = [resident_id]
        where = ["resident_id = %s"]
        if category == "vital-signs":
            where.append("kind IN ('heart_rate', 'spo2', 'temperature')")
        elif category == "activity":
            where.append("kind NOT IN ('heart_rate', 'spo2', 'temperature')")
        if code:
            where.append("kind = %s")
            q_params.append(code)
        where += _window("ts", "'ev-' || event_id", dates, after, q_params)
        q_params.append(limit)
        q = f'{_READING_SQL} AND {" AND ".join(where)} ORDER BY ts DESC, event_id COLLATE "C" DESC LIMIT %s'
        out += [_reading(r) for r in _rows(conn, q, q_params)]
    if want_scores:
        q_params = [resident_id]
        where = ["resident_id = %s"]
        if code:
            where.append("detector = %s")
            q_params.append(code)
        where += _window("ts", "'sc-' || replace(detector, '_', '.')", dates, after, q_params)
        q_params.append(limit)
        q = f"SELECT * FROM detector_scores WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT %s"
        out += [_score(r) for r in _rows(conn, q, q_params)]
    out.sort(key=lambda o: (o.ts, o.observation_id), reverse=True)
    return out[:limit]


# --- Alerts: Flag, DetectedIssue, CommunicationRequest, Task --------------------------------------

#: Alert kinds that stand for a lasting warning (Flag): technical trouble -> "monitoring degraded";
#: the slow-decline model -> a clinical warning.
MONITORING_KINDS = frozenset({"gateway_silent", "device_silent", "battery_low", "low_battery"})
CLINICAL_WARNING_KINDS = frozenset({"fall_risk", "decline"})

_ALERT_SQL = (
    "SELECT a.*,"
    " (SELECT e.actor FROM alert_events e WHERE e.alert_id = a.id AND e.type = 'acknowledged'"
    "  ORDER BY e.id DESC LIMIT 1) AS acknowledged_by,"
    " (SELECT e.detail ->> 'outcome' FROM alert_events e WHERE e.alert_id = a.id AND e.type = 'resolved'"
    "  ORDER BY e.id DESC LIMIT 1) AS outcome_from_event,"
    " (SELECT e.detail ->> 'reason' FROM alert_events e WHERE e.alert_id = a.id AND e.type = 'dismissed'"
    "  ORDER BY e.id DESC LIMIT 1) AS dismiss_from_event,"
    " (SELECT max(e.at) FROM alert_events e WHERE e.alert_id = a.id) AS last_event_at"
    " FROM alerts a"
)


def _alert(r: Row) -> fhir.AlertRecord:
    return fhir.AlertRecord(
        alert_id=str(r["id"]),
        resident_id=str(r["resident_id"]),
        kind=str(r["kind"]),
        family=str(r.get("family") or "welfare"),
        severity=str(r.get("severity") or "medium"),
        status="open" if r["status"] == "proposed" else str(r["status"]),
        detector=str(r.get("detector") or ""),
        detector_version=str(r.get("detector_version") or ""),
        reason=str(r.get("reason") or ""),
        reason_sv=str(r.get("reason_sv") or r.get("reason") or ""),
        created_at=r["created_at"],
        event_time=r.get("event_time"),
        org_id=_str(r.get("responsible_org_id")),
        owner_user=_str(r.get("acknowledged_by") or r.get("owner")),
        acknowledged_at=r.get("acknowledged_at"),
        resolved_at=r.get("resolved_at"),
        ack_deadline=r.get("ack_deadline") or r.get("escalate_at"),
        outcome=_str(r.get("outcome") or r.get("outcome_from_event")),
        dismiss_reason=_str(r.get("dismiss_reason") or r.get("dismiss_from_event")),
        updated_at=r.get("updated_at") or r.get("last_event_at"),
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


def _alert_by_id(conn: Connection[Any], alert_id: str, kinds: Sequence[str] | None = None) -> Row | None:
    if not alert_id.isdigit():
        return None
    if kinds is None:
        return _one(conn, f"{_ALERT_SQL} WHERE a.id = %s", (int(alert_id),))
    return _one(conn, f"{_ALERT_SQL} WHERE a.id = %s AND a.kind = ANY(%s)", (int(alert_id), list(kinds)))


def _alert_rows(
    conn: Connection[Any],
    resident_id: str,
    dates: DateRange,
    after: list[Any] | None,
    limit: int,
    kinds: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
) -> list[Row]:
    q_params: list[Any] = [resident_id]
    where = ["a.resident_id = %s"]
    if kinds is not None:
        where.append("a.kind = ANY(%s)")
        q_params.append(list(kinds))
    if states is not None:
        where.append("a.status = ANY(%s)")
        q_params.append(list(states))
    where += _window("a.created_at", "a.id", dates, after, q_params)
    q_params.append(limit)
    q = f'{_ALERT_SQL} WHERE {" AND ".join(where)} ORDER BY a.created_at DESC, a.id::text COLLATE "C" DESC LIMIT %s'
    return _rows(conn, q, q_params)


def alert(conn: Connection[Any], alert_id: str) -> fhir.AlertRecord | None:
    r = _alert_by_id(conn, alert_id)
    return _alert(r) if r else None


def alerts(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.AlertRecord]:
    status = params.get("status")
    states: list[str] | None = None
    if status:
        # FHIR Task/CommunicationRequest status -> our lifecycle states.
        states = [k for k, v in fhir.TASK_STATUS.items() if v == status] or [status]
        if "open" in states:
            states.append("proposed")
    return [_alert(r) for r in _alert_rows(conn, resident_id, dates, after, limit, states=states)]


def medication_alert(conn: Connection[Any], alert_id: str) -> fhir.AlertRecord | None:
    r = _alert_by_id(conn, alert_id, sorted(fhir.MEDICATION_ALERT_KINDS))
    return _alert(r) if r else None


def medication_alerts(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.AlertRecord]:
    rows = _alert_rows(conn, resident_id, dates, after, limit, kinds=sorted(fhir.MEDICATION_ALERT_KINDS))
    return [_alert(r) for r in rows]


def _warning(r: Row) -> fhir.WarningRecord:
    a = _alert(r)
    clinical = a.kind in CLINICAL_WARNING_KINDS
    active = a.status in ACTIVE_ALERT
    return fhir.WarningRecord(
        warning_id=a.alert_id,
        resident_id=a.resident_id,
        kind=a.kind if clinical else "monitoring_degraded",
        active=active,
        start=a.event_time or a.created_at,
        end=None if active else (a.resolved_at or a.updated_at or a.created_at),
        text=a.reason,
        text_sv=a.reason_sv,
        clinical=clinical,
    )


def warning(conn: Connection[Any], warning_id: str) -> fhir.WarningRecord | None:
    r = _alert_by_id(conn, warning_id, sorted(MONITORING_KINDS | CLINICAL_WARNING_KINDS))
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
    kinds: list[str] = []
    if Category.ALERTS in categories:
        kinds += sorted(MONITORING_KINDS)
    if Category.CLINICAL in categories:
        kinds += sorted(CLINICAL_WARNING_KINDS)
    status = params.get("status")
    rows = _alert_rows(conn, resident_id, dates, after, limit, kinds=kinds)
    out = [_warning(r) for r in rows]
    if status in ("active", "inactive"):
        out = [w for w in out if w.active == (status == "active")]
    return out


# --- MedicationAdministration ------------------------------------------------------------------------

_DOSE_KINDS = ("medication.dose_taken", "medication.dose_missed")


def _dose(r: Row) -> fhir.DoseRecord:
    value = r.get("value")
    slot = str(value) if isinstance(value, str) else r["ts"].astimezone(fhir_local()).strftime("%H:00")
    return fhir.DoseRecord(
        dose_id=f"ev-{r['event_id']}",
        resident_id=str(r["resident_id"]),
        slot=slot,
        status="taken" if r["kind"] == "medication.dose_taken" else "missed",
        ts=r["ts"],
        robot_device_id=_str(r.get("device_id")),
    )


def fhir_local() -> Any:
    """The zone dose slots are named in (Europe/Stockholm)."""
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Stockholm")


def dose(conn: Connection[Any], dose_id: str) -> fhir.DoseRecord | None:
    if not dose_id.startswith("ev-"):
        return None
    r = _one(
        conn, "SELECT * FROM observations WHERE event_id = %s AND kind = ANY(%s)", (dose_id[3:], list(_DOSE_KINDS))
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
    where += _window("ts", "'ev-' || event_id", dates, after, q_params)
    q_params.append(limit)
    q = f'SELECT * FROM observations WHERE {" AND ".join(where)} ORDER BY ts DESC, event_id COLLATE "C" DESC LIMIT %s'
    return [_dose(r) for r in _rows(conn, q, q_params)]


# --- Communication: deliveries of alert notifications ------------------------------------------------
# Live-stream deliveries are recorded one per subscriber in the audit log ("SSE deliver",
# resource alert_event/<id>); that record is the delivery.

_DELIVERY_SQL = (
    "SELECT l.id, l.at, l.user_id, l.org_id, l.resident_id, e.alert_id FROM audit_log l"
    " JOIN alert_events e ON l.resource = 'alert_event/' || e.id::text"
    " WHERE l.action = 'SSE deliver' AND l.outcome = 'allowed'"
)


def _delivery(r: Row) -> fhir.NotificationRecord:
    return fhir.NotificationRecord(
        notification_id=f"sse-{r['id']}",
        alert_id=str(r["alert_id"]),
        resident_id=str(r["resident_id"]),
        channel="sse",
        recipient_org=_str(r.get("org_id")),
        status="delivered",
        created_at=r["at"],
        sent_at=r["at"],
    )


def notification(conn: Connection[Any], notification_id: str) -> fhir.NotificationRecord | None:
    kind, _, num = notification_id.partition("-")
    if kind != "sse" or not num.isdigit():
        return None
    r = _one(conn, f"{_DELIVERY_SQL} AND l.id = %s", (int(num),))
    return _delivery(r) if r else None


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
    where = ["l.resident_id = %s", *_window("l.at", "'sse-' || l.id", dates, after, q_params)]
    q_params.append(limit)
    q = f"{_DELIVERY_SQL} AND {' AND '.join(where)} ORDER BY l.at DESC, l.id DESC LIMIT %s"
    return [_delivery(r) for r in _rows(conn, q, q_params)]


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
    out = [_relation(r) for r in store.relations_of(conn, resident_id)]
    out.sort(key=lambda c: (c.start.isoformat(), c.relation_id), reverse=True)
    if after is not None:
        out = [c for c in out if (c.start.isoformat(), c.relation_id) < (str(after[0]), str(after[1]))]
    return out[:limit]


# --- Consent: monitoring (sensor) consents, sharing consents, blocks -----------------------------------


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


def _monitoring(r: Row, resident_id: str) -> fhir.ConsentRecord:
    return fhir.ConsentRecord(
        consent_id=f"sensor-{r['id']}",
        resident_id=resident_id,
        kind="sensor",
        active=r.get("withdrawn_at") is None,
        recorded_at=r["recorded_at"],
        start=r["recorded_at"],
        end=r.get("valid_to"),
        recorded_by=r.get("recorded_by"),
        method=r.get("method"),
        categories=("sensor_events",),
        basis=r.get("basis"),
    )


def consent(conn: Connection[Any], consent_id: str) -> fhir.ConsentRecord | None:
    kind, _, num = consent_id.partition("-")
    if not num.isdigit():
        return None
    if kind == "sharing":
        r = _one(conn, "SELECT * FROM sharing_consents WHERE id = %s", (int(num),))
        return _sharing(r) if r else None
    if kind == "block":
        r = _one(conn, "SELECT * FROM blocks WHERE id = %s", (int(num),))
        return _block(r) if r else None
    if kind == "sensor":
        r = _one(
            conn,
            "SELECT m.*, coalesce(m.resident_id, (SELECT x.id FROM residents x WHERE x.home_id = m.home_id"
            " ORDER BY x.id LIMIT 1)) AS owner FROM monitoring_consents m WHERE m.id = %s",
            (int(num),),
        )
        return _monitoring(r, str(r["owner"])) if r and r["owner"] else None
    return None


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
    home = _one(conn, "SELECT home_id FROM residents WHERE id = %s", (resident_id,))
    if home and home["home_id"]:
        for r in store.monitoring_consents(conn, str(home["home_id"])):
            if r.get("resident_id") in (None, resident_id):
                out.append(_monitoring(r, resident_id))
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
