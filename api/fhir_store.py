"""SQL for the FHIR read API: stored rows -> the domain records of :mod:`api.fhir`.

The API core's queries (:mod:`api.store`) are reused wherever one exists
(identity, relations, consents, blocks, monitoring consents, alerts and their
history, the audit log); the few queries only FHIR needs are here. The mapping
(:mod:`api.fhir`) stays pure and the route (:mod:`api.routes.fhir`) decides
and audits. Searches are keyset-paginated on ``(time, id)``, newest first;
callers ask for ``limit + 1`` rows to know whether a next page exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import Connection
from psycopg.rows import dict_row

from api import fhir, store
from api.access import NEEDS_VISIT_KIND, NEEDS_VISIT_REASON, NEEDS_VISIT_REASON_SV, Category, ResidentFacts
from carechain.events import BOOL_KINDS, NUMERIC_RANGES, Kind

if TYPE_CHECKING:
    from api.routes.fhir import DateRange

Row = dict[str, Any]
_T = TypeVar("_T")
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
    r = _one(
        conn,
        "SELECT r.resident_id, r.kommun_org_id, r.active, i.name, i.personnummer FROM residents r"
        " LEFT JOIN resident_identities i ON i.resident_id = r.resident_id WHERE r.resident_id = %s",
        (resident_id,),
    )
    if r is None:
        return None
    given, family = None, None
    if r.get("name"):
        parts = str(r["name"]).rsplit(" ", 1)
        given, family = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return fhir.ResidentRecord(
        resident_id=str(r["resident_id"]),
        org_id=_str(r.get("kommun_org_id")),
        active=bool(r.get("active", True)),
        given_name=given,
        family_name=family,
        personnummer=_str(r.get("personnummer")),
    )


# --- Device: gateways and the sensors/robots under them ------------------------------------------


#: A gateway heartbeats every 15 s; silent for longer than this counts as offline (care plan default + slack).
GATEWAY_SILENCE = timedelta(seconds=60)


def _gateway_online(conn: Connection[Any], g: Row, now: datetime) -> bool:
    """Offline while revoked, silent, or while a "gateway silent" alert of its home is open."""
    if g.get("revoked_at") is not None:
        return False
    if g.get("last_seen_at") is not None:
        return bool(now - g["last_seen_at"] <= GATEWAY_SILENCE)
    open_silent = _one(
        conn,
        "SELECT 1 FROM alerts a JOIN residents r ON r.resident_id = a.resident_id WHERE r.home_id = %s"
        " AND a.kind = 'gateway_silent' AND a.status = ANY(%s) LIMIT 1",
        (g["home_id"], list(ACTIVE_ALERT)),
    )
    return open_silent is None


def _gateway_record(conn: Connection[Any], g: Row, resident_id: str | None, now: datetime) -> fhir.DeviceRecord:
    return fhir.DeviceRecord(
        device_id=str(g["gateway_id"]),
        device_kind="gateway",
        resident_id=resident_id,
        home_id=_str(g.get("home_id")),
        online=_gateway_online(conn, g, now),
        last_seen=g.get("last_seen_at"),
        active=g.get("revoked_at") is None,
    )


def _sensor_record(conn: Connection[Any], d: Row, now: datetime) -> fhir.DeviceRecord:
    seen = _one(
        conn,
        "SELECT max(ts) AS last_seen FROM observations WHERE resident_id = %s AND device_id = %s AND ts >= %s",
        (d["owner"], d["device_id"], now - SENSOR_SILENCE),
    )
    last_seen = seen["last_seen"] if seen else None
    return fhir.DeviceRecord(
        device_id=str(d["device_id"]),
        device_kind=str(d.get("device_kind") or "sensor"),
        resident_id=_str(d.get("owner")),
        gateway_id=_str(d.get("gateway_id")),
        home_id=_str(d.get("home_id")),
        room=d.get("room"),
        online=last_seen is not None and d.get("removed_at") is None,
        last_seen=last_seen,
        active=d.get("removed_at") is None,
    )


#: The home's (first active) resident: whose data a shared gateway or an unassigned sensor is.
_OWNER = (
    "(SELECT x.resident_id FROM residents x WHERE x.home_id = {home} AND x.active"
    " ORDER BY x.created_at, x.resident_id LIMIT 1)"
)


def device(conn: Connection[Any], device_id: str) -> fhir.DeviceRecord | None:
    """A sensor/robot, or a gateway (attributed to its home's resident for the access check)."""
    now = datetime.now(UTC)
    d = _one(
        conn,
        f"SELECT d.*, coalesce(d.resident_id, {_OWNER.format(home='d.home_id')}) AS owner FROM devices d"
        " WHERE d.device_id = %s",
        (device_id,),
    )
    if d is not None:
        return _sensor_record(conn, d, now)
    g = _one(
        conn,
        f"SELECT g.*, {_OWNER.format(home='g.home_id')} AS owner FROM gateways g WHERE g.gateway_id = %s",
        (device_id,),
    )
    if g is None:
        return None
    return _gateway_record(conn, g, _str(g["owner"]), now)


def devices(
    conn: Connection[Any],
    resident_id: str,
    categories: Sequence[Category],
    dates: DateRange,
    params: Mapping[str, str],
    limit: int,
    after: list[Any] | None,
) -> list[fhir.DeviceRecord]:
    """The resident's home gateway(s) and the devices of the resident (or of the home, unassigned), by id."""
    now = datetime.now(UTC)
    home = _one(conn, "SELECT home_id FROM residents WHERE resident_id = %s", (resident_id,))
    if home is None:
        return []
    out = [
        _gateway_record(conn, g, resident_id, now)
        for g in _rows(conn, "SELECT * FROM gateways WHERE home_id = %s", (home["home_id"],))
    ]
    out += [
        _sensor_record(conn, {**d, "owner": resident_id}, now)
        for d in _rows(
            conn,
            "SELECT * FROM devices WHERE home_id = %s AND (resident_id IS NULL OR resident_id = %s)",
            (home["home_id"], resident_id),
        )
    ]
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


def _reading_value(r: Row) -> tuple[bool | float | str | None, str | None]:
    """A stored reading back to its type: booleans (motion, fall, alarm) true/false, numbers with units."""
    kind, num, text = str(r["kind"]), r.get("value_num"), r.get("value_text")
    if kind in {k.value for k in BOOL_KINDS}:
        return (bool(num) if num is not None else None), None
    if text is not None:
        return str(text), None
    if num is None:
        return None, None
    try:
        unit: str | None = NUMERIC_RANGES[Kind(kind)][2]
    except (ValueError, KeyError):
        unit = None
    return float(num), unit


def _reading(r: Row) -> fhir.ObservationRecord:
    value, unit = _reading_value(r)
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


def _score_id(detector: str, ts: datetime, resident_id: str) -> str:
    # Detector names are [a-z0-9_]: '.' stands in for '_' so the id stays a plain FHIR id when the
    # resident's pseudonym is one; the resident comes last because it may itself contain '-'.
    micros = int(ts.timestamp() * 1_000_000)
    return f"sc-{detector.replace('_', '.')}-{micros}-{resident_id}"


def _score(r: Row) -> fhir.ObservationRecord:
    return fhir.ObservationRecord(
        observation_id=_score_id(str(r["detector"]), r["ts"], str(r["resident_id"])),
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
        parts = observation_id.split("-", 3)
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        _, detector, micros, rid = parts
        ts = datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
        r = _one(
            conn,
            "SELECT * FROM scores WHERE resident_id = %s AND detector = %s AND ts >= %s AND ts < %s LIMIT 1",
            (rid, detector.replace(".", "_"), ts - timedelta(microseconds=1), ts + timedelta(microseconds=1)),
        )
        return _score(r) if r else None
    if observation_id.startswith("df-"):
        parts = observation_id.split("-", 3)
        if len(parts) != 4:
            return None
        _, day, feature, rid = parts
        feature = feature.replace(".", "_")
        if not (day.isdigit() and len(day) == 8 and feature in DAILY_FEATURES):
            return None
        start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
        rows = [f for f in _daily(conn, rid, feature, start, start + timedelta(days=1)) if f.ts == start]
        return rows[0] if rows else None
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
        where += _window(
            "ts",
            "'sc-' || replace(detector, '_', '.') || '-' || (extract(epoch FROM ts) * 1000000)::bigint"
            " || '-' || resident_id",
            dates,
            after,
            q_params,
        )
        q_params.append(limit)
        q = f"SELECT * FROM scores WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT %s"
        out += [_score(r) for r in _rows(conn, q, q_params)]
    want_features = Category.SENSOR_EVENTS in categories and category in ("", "feature", "activity")
    if want_features and (code is None or code in DAILY_FEATURES):
        features = _daily(conn, resident_id, code, dates.since, dates.until)
        if after is not None:
            key = (str(after[0]), str(after[1]))
            features = [f for f in features if (f.ts.isoformat(), f.observation_id) < key]
        out += features
    out.sort(key=lambda o: (o.ts, o.observation_id), reverse=True)
    return out[:limit]


#: Daily features (the storage's daily_summary), as Observations of category "feature".
DAILY_FEATURES: dict[str, str | None] = {
    "motion_events": "1",
    "bathroom_events": "1",
    "door_openings": "1",
    "doses_taken": "1",
    "doses_missed": "1",
    "heart_rate_avg": "bpm",
}


def _daily(
    conn: Connection[Any], resident_id: str | None, feature: str | None, since: datetime | None, until: datetime | None
) -> list[fhir.ObservationRecord]:
    """Daily features, one Observation per day and feature (newest first)."""
    q_params: list[Any] = []
    where = ["true"]
    if resident_id is not None:
        where.append("resident_id = %s")
        q_params.append(resident_id)
    if since is not None:
        where.append("day >= %s")
        q_params.append(since - timedelta(days=1))
    if until is not None:
        where.append("day < %s")
        q_params.append(until)
    rows = _rows(conn, f"SELECT * FROM daily_summary WHERE {' AND '.join(where)} ORDER BY day DESC", q_params)
    out = []
    for r in rows:
        day: datetime = r["day"]
        if since is not None and day + timedelta(days=1) <= since:
            continue
        for name, unit in DAILY_FEATURES.items():
            if (feature is not None and name != feature) or r.get(name) is None:
                continue
            out.append(
                fhir.ObservationRecord(
                    observation_id=f"df-{day:%Y%m%d}-{name.replace('_', '.')}-{r['resident_id']}",
                    resident_id=str(r["resident_id"]),
                    category="feature",
                    code=name,
                    ts=day,
                    value=float(r[name]),
                    unit=unit,
                    period_end=day + timedelta(days=1),
                )
            )
    return out


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
    " (SELECT max(e.at) FROM alert_events e WHERE e.alert_id = a.id) AS last_event_at,"
    # The next escalation step: acknowledge before it, or the alert goes to the next tier.
    " (SELECT min(d.due_at) FROM escalation_deadlines d WHERE d.alert_id = a.id AND d.done_at IS NULL)"
    "  AS next_escalation_at"
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
        ack_deadline=r.get("next_escalation_at") if r["status"] == "proposed" else None,
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
    text = r.get("value_text")
    slot = str(text) if text else r["ts"].astimezone(fhir_local()).strftime("%H:00")
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
# Two sources: the live stream records each delivery in the audit log ("SSE deliver", resource
# alert_event/<id>, one row per subscriber), and the alert service's outbox holds webhook and e-mail
# notifications with their sending state. Ids: sse-<audit id>, out-<outbox id>.

_DELIVERY_SQL = (
    "SELECT l.id, l.at, l.user_id, l.org_id, l.resident_id, e.alert_id FROM audit_log l"
    " JOIN alert_events e ON l.resource = 'alert_event/' || e.id::text"
    " WHERE l.action = 'SSE deliver' AND l.outcome = 'allowed'"
)
#: Outbox channels that notify carers (feedback and operator messages are not alert notifications).
_CARER_CHANNELS = ["webhook", "email"]
_OUTBOX_SQL = (
    "SELECT o.id, o.alert_id, o.channel, o.created_at, o.sent_at, o.dead_at, o.last_error, a.resident_id,"
    " a.responsible_org_id FROM notification_outbox o JOIN alerts a ON a.id = o.alert_id"
    " WHERE o.channel = ANY(%s)"
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


def _outboxed(r: Row) -> fhir.NotificationRecord:
    status = "sent" if r.get("sent_at") else "failed" if r.get("dead_at") else "pending"
    return fhir.NotificationRecord(
        notification_id=f"out-{r['id']}",
        alert_id=str(r["alert_id"]),
        resident_id=str(r["resident_id"]),
        channel=str(r["channel"]),
        # The organisation, not the target: an e-mail address is the carer's personal data.
        recipient_org=_str(r.get("responsible_org_id")),
        status=status,
        created_at=r["created_at"],
        sent_at=r.get("sent_at"),
        error=_str(r.get("last_error")) if status == "failed" else None,
    )


def notification(conn: Connection[Any], notification_id: str) -> fhir.NotificationRecord | None:
    kind, _, num = notification_id.partition("-")
    if not num.isdigit():
        return None
    if kind == "sse":
        r = _one(conn, f"{_DELIVERY_SQL} AND l.id = %s", (int(num),))
        return _delivery(r) if r else None
    if kind == "out":
        r = _one(conn, f"{_OUTBOX_SQL} AND o.id = %s", (_CARER_CHANNELS, int(num)))
        return _outboxed(r) if r else None
    return None


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
    out = [_delivery(r) for r in _rows(conn, q, q_params)]
    o_params: list[Any] = [_CARER_CHANNELS, resident_id]
    o_where = ["a.resident_id = %s", *_window("o.created_at", "'out-' || o.id", dates, after, o_params)]
    o_params.append(limit)
    q = f"{_OUTBOX_SQL} AND {' AND '.join(o_where)} ORDER BY o.created_at DESC, o.id DESC LIMIT %s"
    out += [_outboxed(r) for r in _rows(conn, q, o_params)]
    out.sort(key=lambda n: (n.created_at, n.notification_id), reverse=True)
    return out[:limit]


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
    return _newest_first_page(out, lambda c: (c.start.isoformat(), str(c.relation_id)), after, limit)


def _newest_first_page(
    items: list[_T], key: Callable[[_T], tuple[str, str]], after: list[Any] | None, limit: int
) -> list[_T]:
    """Records assembled in Python (several sources), newest first, keyset-paged like the SQL searches."""
    out = sorted(items, key=key, reverse=True)
    if after is not None:
        cursor = (str(after[0]), str(after[1]))
        out = [x for x in out if key(x) < cursor]
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


def _monitoring(r: Row) -> fhir.ConsentRecord:
    return fhir.ConsentRecord(
        consent_id=f"sensor-{r['id']}",
        resident_id=str(r["subject_ref"]),
        kind="sensor",
        active=r.get("withdrawn_at") is None,
        recorded_at=r["given_at"],
        start=r.get("valid_from"),
        end=r.get("valid_to"),
        recorded_by=r.get("recorded_by"),
        method=r.get("method"),
        categories=("sensor_events",),
        basis=r.get("basis"),
    )


# Only the resident's own monitoring consent: a cohabitant's consent is the cohabitant's data.
_MONITORING_SQL = "SELECT * FROM monitoring_consents WHERE subject = 'resident'"


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
        r = _one(conn, f"{_MONITORING_SQL} AND id = %s", (int(num),))
        return _monitoring(r) if r else None
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
    out += [_monitoring(r) for r in _rows(conn, f"{_MONITORING_SQL} AND subject_ref = %s", (resident_id,))]
    return _newest_first_page(out, lambda c: (c.recorded_at.isoformat(), str(c.consent_id)), after, limit)


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
