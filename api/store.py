"""The API's SQL: access facts (relations, consents, blocks, emergencies), registry reads and writes,
the audit log's queries. Parameterised SQL only; psycopg lives here (and in the audit and stream adapters).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import dict_row

from api.access import (
    Block,
    CareRelation,
    Category,
    EmergencyAccess,
    Period,
    ResidentFacts,
    SharingConsent,
)

Row = dict[str, Any]


def _rows(conn: Connection[Any], query: str | sql.Composed, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def _row(conn: Connection[Any], query: str | sql.Composed, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


# --- organisations ----------------------------------------------------------------------------


def organisation_kinds(conn: Connection[Any]) -> dict[str, str]:
    return {r["id"]: r["kind"] for r in _rows(conn, "SELECT id, kind FROM organisations")}


def organisations(conn: Connection[Any]) -> list[Row]:
    return _rows(conn, "SELECT id, name, kind FROM organisations ORDER BY id")


# --- access facts -----------------------------------------------------------------------------


_CATEGORY_NAMES = frozenset(c.value for c in Category)


def _categories(values: Iterable[str]) -> frozenset[Category]:
    return frozenset(Category(v) for v in values if v in _CATEGORY_NAMES)


def resident_owner(conn: Connection[Any], resident_id: str) -> str | None:
    r = _row(conn, "SELECT org_id FROM residents WHERE id = %s", (resident_id,))
    return r["org_id"] if r else None


_FACTS_SQL = """
SELECT r.id, r.org_id,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, user_id, org_id, unit, kind, valid_from, valid_to
     FROM care_relations WHERE resident_id = r.id AND (valid_to IS NULL OR valid_to > now())) x) AS relations,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, owner_org_id, reader_org_id, reader_unit, categories, mode,
     legal_basis, valid_from, valid_to, withdrawn_at FROM sharing_consents
     WHERE resident_id = r.id AND withdrawn_at IS NULL AND valid_to > now()) x) AS consents,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, category, org_id, unit, valid_from, valid_to FROM blocks
     WHERE resident_id = r.id AND lifted_at IS NULL AND (valid_to IS NULL OR valid_to > now())) x) AS blocks,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, user_id, opened_at, expires_at FROM emergency_access
     WHERE resident_id = r.id AND expires_at > now()) x) AS emergencies
FROM residents r WHERE r.id = ANY(%s)
"""


def _ts(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def _period(d: dict[str, Any]) -> Period:
    start = _ts(d["valid_from"])
    assert start is not None
    return Period(start, _ts(d["valid_to"]))


def resident_facts_many(conn: Connection[Any], resident_ids: Sequence[str]) -> dict[str, ResidentFacts]:
    """Everything the access policy needs about these residents, in one round trip."""
    if not resident_ids:
        return {}
    out: dict[str, ResidentFacts] = {}
    for r in _rows(conn, _FACTS_SQL, (list(dict.fromkeys(resident_ids)),)):
        rid = r["id"]
        out[rid] = ResidentFacts(
            resident_id=rid,
            owner_org_id=r["org_id"],
            relations=tuple(
                CareRelation(x["id"], x["user_id"], x["org_id"], x["unit"], rid, x["kind"], _period(x))
                for x in r["relations"]
            ),
            consents=tuple(
                SharingConsent(
                    id=x["id"],
                    resident_id=rid,
                    owner_org_id=x["owner_org_id"],
                    reader_org_id=x["reader_org_id"],
                    reader_unit=x["reader_unit"],
                    categories=_categories(x["categories"]),
                    mode=x["mode"],
                    legal_basis=x["legal_basis"],
                    period=_period(x),
                    withdrawn_at=_ts(x["withdrawn_at"]),
                )
                for x in r["consents"]
            ),
            blocks=tuple(
                Block(
                    x["id"],
                    rid,
                    Category(x["category"]) if x["category"] in _CATEGORY_NAMES else None,
                    x["org_id"],
                    x["unit"],
                    _period(x),
                )
                for x in r["blocks"]
            ),
            emergencies=tuple(
                EmergencyAccess(x["id"], x["user_id"], rid, _ts(x["opened_at"]), _ts(x["expires_at"]))  # type: ignore[arg-type]
                for x in r["emergencies"]
            ),
        )
    return out


def resident_facts(conn: Connection[Any], resident_id: str) -> ResidentFacts | None:
    return resident_facts_many(conn, [resident_id]).get(resident_id)


def residents_in_reach(conn: Connection[Any], user_id: str, org_id: str) -> list[str]:
    """Residents this user has an active care relation or emergency access to (candidates for lists)."""
    return [
        r["resident_id"]
        for r in _rows(
            conn,
            "SELECT resident_id FROM care_relations WHERE user_id = %s AND org_id = %s"
            " AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now())"
            " UNION SELECT resident_id FROM emergency_access WHERE user_id = %s AND expires_at > now()",
            (user_id, org_id, user_id),
        )
    ]


# --- care relations ---------------------------------------------------------------------------


def relations_of(conn: Connection[Any], resident_id: str) -> list[Row]:
    return _rows(
        conn,
        "SELECT id, user_id, org_id, unit, resident_id, kind, valid_from, valid_to, created_by, created_at"
        " FROM care_relations WHERE resident_id = %s ORDER BY id",
        (resident_id,),
    )


def add_relation(conn: Connection[Any], r: dict[str, Any]) -> Row:
    row = _row(
        conn,
        "INSERT INTO care_relations (user_id, org_id, unit, resident_id, kind, valid_from, valid_to, created_by)"
        " VALUES (%(user_id)s, %(org_id)s, %(unit)s, %(resident_id)s, %(kind)s, coalesce(%(valid_from)s, now()),"
        " %(valid_to)s, %(created_by)s)"
        " RETURNING id, user_id, org_id, unit, resident_id, kind, valid_from, valid_to, created_by, created_at",
        r,
    )
    assert row is not None
    return row


def end_relation(conn: Connection[Any], relation_id: int, org_id: str) -> Row | None:
    return _row(
        conn,
        "UPDATE care_relations SET valid_to = greatest(now(), valid_from + interval '1 microsecond')"
        " WHERE id = %s AND org_id = %s"
        " RETURNING id, user_id, org_id, unit, resident_id, kind, valid_from, valid_to, created_by, created_at",
        (relation_id, org_id),
    )


# --- sharing consents, blocks, emergency ------------------------------------------------------


def sharing_consents_of(conn: Connection[Any], resident_id: str) -> list[Row]:
    return _rows(conn, "SELECT * FROM sharing_consents WHERE resident_id = %s ORDER BY id", (resident_id,))


def add_sharing_consent(conn: Connection[Any], c: dict[str, Any]) -> Row:
    row = _row(
        conn,
        "INSERT INTO sharing_consents (resident_id, owner_org_id, reader_org_id, reader_unit, categories, mode,"
        " legal_basis, basis_note, valid_from, valid_to, recorded_by, method)"
        " VALUES (%(resident_id)s, %(owner_org_id)s, %(reader_org_id)s, %(reader_unit)s, %(categories)s, %(mode)s,"
        " %(legal_basis)s, %(basis_note)s, coalesce(%(valid_from)s, now()), %(valid_to)s, %(recorded_by)s,"
        " %(method)s) RETURNING *",
        c,
    )
    assert row is not None
    return row


def withdraw_sharing_consent(conn: Connection[Any], resident_id: str, consent_id: int, by: str) -> Row | None:
    return _row(
        conn,
        "UPDATE sharing_consents SET withdrawn_at = now(), withdrawn_by = %s"
        " WHERE id = %s AND resident_id = %s AND withdrawn_at IS NULL RETURNING *",
        (by, consent_id, resident_id),
    )


def blocks_of(conn: Connection[Any], resident_id: str) -> list[Row]:
    return _rows(conn, "SELECT * FROM blocks WHERE resident_id = %s ORDER BY id", (resident_id,))


def add_block(conn: Connection[Any], b: dict[str, Any]) -> Row:
    row = _row(
        conn,
        "INSERT INTO blocks (resident_id, category, org_id, unit, valid_from, valid_to, created_by)"
        " VALUES (%(resident_id)s, %(category)s, %(org_id)s, %(unit)s, coalesce(%(valid_from)s, now()),"
        " %(valid_to)s, %(created_by)s) RETURNING *",
        b,
    )
    assert row is not None
    return row


def lift_block(conn: Connection[Any], resident_id: str, block_id: int, by: str) -> Row | None:
    return _row(
        conn,
        "UPDATE blocks SET lifted_at = now(), lifted_by = %s WHERE id = %s AND resident_id = %s"
        " AND lifted_at IS NULL RETURNING *",
        (by, block_id, resident_id),
    )


def open_emergency(conn: Connection[Any], e: dict[str, Any]) -> Row:
    row = _row(
        conn,
        "INSERT INTO emergency_access (user_id, org_id, unit, resident_id, reason, reason_code, expires_at)"
        " VALUES (%(user_id)s, %(org_id)s, %(unit)s, %(resident_id)s, %(reason)s, %(reason_code)s,"
        " now() + make_interval(secs => %(ttl_s)s)) RETURNING *",
        e,
    )
    assert row is not None
    return row


def emergency_queue(conn: Connection[Any], status: str | None, limit: int) -> list[Row]:
    if status:
        return _rows(
            conn, "SELECT * FROM emergency_access WHERE review_status = %s ORDER BY id DESC LIMIT %s", (status, limit)
        )
    return _rows(conn, "SELECT * FROM emergency_access ORDER BY id DESC LIMIT %s", (limit,))


def set_emergency_review(conn: Connection[Any], emergency_id: int, status: str) -> Row | None:
    return _row(
        conn, "UPDATE emergency_access SET review_status = %s WHERE id = %s RETURNING *", (status, emergency_id)
    )


# --- audit log queries ------------------------------------------------------------------------

AUDIT_COLUMNS = (
    "id, at, at_local, user_id, org_id, unit, role, client, on_behalf_of, action, resource, resident_id,"
    " purpose, outcome, basis, emergency, request_id, prev_hash, hash"
)


def audit_query(
    conn: Connection[Any],
    *,
    user_id: str | None = None,
    org_id: str | None = None,
    resident_id: str | None = None,
    outcome: str | None = None,
    purpose: str | None = None,
    emergency: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[Row]:
    """Filtered audit rows, newest first (keyset on id)."""
    where = []
    params: list[Any] = []
    for col, val in (
        ("user_id", user_id),
        ("org_id", org_id),
        ("resident_id", resident_id),
        ("outcome", outcome),
        ("purpose", purpose),
        ("emergency", emergency),
    ):
        if val is not None:
            where.append(f"{col} = %s")
            params.append(val)
    if since is not None:
        where.append("at >= %s")
        params.append(since)
    if until is not None:
        where.append("at < %s")
        params.append(until)
    if before_id is not None:
        where.append("id < %s")
        params.append(before_id)
    q = f"SELECT {AUDIT_COLUMNS} FROM audit_log"
    if where:
        q += " WHERE " + " AND ".join(where)
    q += " ORDER BY id DESC LIMIT %s"
    params.append(limit)
    return _rows(conn, q, params)


def audit_random_sample(conn: Connection[Any], n: int, since: datetime) -> list[Row]:
    return _rows(
        conn,
        f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE at >= %s AND resident_id IS NOT NULL ORDER BY random() LIMIT %s",
        (since, n),
    )


def audit_rule_pick(conn: Connection[Any], rule: str, since: datetime, limit: int, tz: str) -> list[Row]:
    """Rule-based picks for review: emergency access, access without a relation (denied), bulk reads at night."""
    if rule == "emergency":
        q = f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE at >= %s AND emergency ORDER BY id DESC LIMIT %s"
        return _rows(conn, q, (since, limit))
    if rule == "without_relation":
        q = (
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE at >= %s AND resident_id IS NOT NULL"
            " AND (outcome = 'denied' OR basis IS NULL OR basis NOT LIKE 'relation:%%') ORDER BY id DESC LIMIT %s"
        )
        return _rows(conn, q, (since, limit))
    if rule == "night_bulk":
        # A user who read >= 20 distinct residents within one night hour (22-06 local time).
        q = (
            f"WITH night AS (SELECT *, date_trunc('hour', at AT TIME ZONE %s) AS h FROM audit_log"
            " WHERE at >= %s AND resident_id IS NOT NULL AND outcome = 'allowed'"
            " AND (extract(hour FROM at AT TIME ZONE %s) >= 22 OR extract(hour FROM at AT TIME ZONE %s) < 6)),"
            " bulk AS (SELECT user_id, h FROM night GROUP BY user_id, h HAVING count(DISTINCT resident_id) >= 20)"
            f" SELECT {AUDIT_COLUMNS} FROM night JOIN bulk USING (user_id, h) ORDER BY id DESC LIMIT %s"
        )
        return _rows(conn, q, (tz, since, tz, tz, limit))
    raise ValueError(rule)


def add_review(conn: Connection[Any], r: dict[str, Any]) -> Row:
    row = _row(
        conn,
        "INSERT INTO audit_reviews (reviewer, picked_by, audit_ids, verdict, note)"
        " VALUES (%(reviewer)s, %(picked_by)s, %(audit_ids)s, %(verdict)s, %(note)s) RETURNING *",
        r,
    )
    assert row is not None
    return row


def reviews(conn: Connection[Any], limit: int) -> list[Row]:
    return _rows(conn, "SELECT * FROM audit_reviews ORDER BY id DESC LIMIT %s", (limit,))


def who_looked(conn: Connection[Any], resident_id: str, since: datetime) -> list[Row]:
    """The resident's extract: organisation, unit and time of every allowed access (no user names)."""
    return _rows(
        conn,
        "SELECT a.at, a.at_local, a.org_id, o.name AS org_name, a.unit, a.purpose, a.action, a.emergency"
        " FROM audit_log a LEFT JOIN organisations o ON o.id = a.org_id"
        " WHERE a.resident_id = %s AND a.at >= %s AND a.outcome = 'allowed' ORDER BY a.id",
        (resident_id, since),
    )


# --- detector pauses --------------------------------------------------------------------------


def pause_state(conn: Connection[Any]) -> list[Row]:
    """The latest switch per (detector, resident)."""
    return _rows(
        conn,
        "SELECT DISTINCT ON (detector, resident_id) detector, resident_id, paused, reason, changed_by, changed_at"
        " FROM detector_pauses ORDER BY detector, resident_id, changed_at DESC, id DESC",
    )


def set_pause(conn: Connection[Any], detector: str, resident_id: str | None, paused: bool, reason: str, by: str) -> Row:
    row = _row(
        conn,
        "INSERT INTO detector_pauses (detector, resident_id, paused, reason, changed_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING *",
        (detector, resident_id, paused, reason, by),
    )
    assert row is not None
    return row


# --- registry: residents, homes, gateways, devices, care plans, monitoring consents -------------
# (tables of the storage migrations 0001-0199; this is the only place the API names their columns)


def residents_by_ids(conn: Connection[Any], ids: Sequence[str]) -> list[Row]:
    if not ids:
        return []
    return _rows(conn, "SELECT id, home_id, org_id FROM residents WHERE id = ANY(%s) ORDER BY id", (list(ids),))


def residents_of_org(conn: Connection[Any], org_id: str, after_id: str | None, limit: int) -> list[Row]:
    return _rows(
        conn,
        "SELECT id, home_id, org_id FROM residents WHERE org_id = %s AND (%s::text IS NULL OR id > %s)"
        " ORDER BY id LIMIT %s",
        (org_id, after_id, after_id, limit),
    )


def open_alert_counts(conn: Connection[Any], ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    return {
        r["resident_id"]: r["n"]
        for r in _rows(
            conn,
            "SELECT resident_id, count(*)::int AS n FROM alerts WHERE resident_id = ANY(%s)"
            " AND status NOT IN ('resolved', 'dismissed') GROUP BY resident_id",
            (list(ids),),
        )
    }


def resident_identity(conn: Connection[Any], resident_id: str) -> Row | None:
    return _row(
        conn,
        "SELECT r.id, r.home_id, r.org_id, i.name, i.personnummer FROM residents r"
        " LEFT JOIN resident_identities i ON i.resident_id = r.id WHERE r.id = %s",
        (resident_id,),
    )


def create_resident(
    conn: Connection[Any], resident_id: str, home_id: str, org_id: str, name: str, personnummer: str
) -> bool:
    row = _row(
        conn,
        "INSERT INTO residents (id, home_id, org_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
        (resident_id, home_id, org_id),
    )
    if row is None:
        return False
    conn.execute(
        "INSERT INTO resident_identities (resident_id, name, personnummer) VALUES (%s, %s, %s)",
        (resident_id, name, personnummer),
    )
    return True


def home(conn: Connection[Any], home_id: str) -> Row | None:
    return _row(conn, "SELECT * FROM homes WHERE id = %s", (home_id,))


def homes_of_org(conn: Connection[Any], org_id: str, after_id: str | None, limit: int) -> list[Row]:
    return _rows(
        conn,
        "SELECT * FROM homes WHERE org_id = %s AND (%s::text IS NULL OR id > %s) ORDER BY id LIMIT %s",
        (org_id, after_id, after_id, limit),
    )


def create_home(conn: Connection[Any], home_id: str, org_id: str, cohabitants: int, area: str | None) -> Row | None:
    return _row(
        conn,
        "INSERT INTO homes (id, org_id, cohabitants, area) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING *",
        (home_id, org_id, cohabitants, area),
    )


def set_monitoring(conn: Connection[Any], home_id: str, active: bool) -> Row:
    row = _row(conn, "UPDATE homes SET monitoring_active = %s WHERE id = %s RETURNING *", (active, home_id))
    assert row is not None
    conn.execute("SELECT pg_notify('carechain_registry', 'homes')")
    return row


def monitoring_consents(conn: Connection[Any], home_id: str) -> list[Row]:
    return _rows(conn, "SELECT * FROM monitoring_consents WHERE home_id = %s ORDER BY id", (home_id,))


def add_monitoring_consent(conn: Connection[Any], home_id: str, c: dict[str, Any]) -> Row:
    row = _row(
        conn,
        "INSERT INTO monitoring_consents (home_id, resident_id, person, basis, basis_note, method, valid_to,"
        " recorded_by) VALUES (%(home_id)s, %(resident_id)s, %(person)s, %(basis)s, %(basis_note)s, %(method)s,"
        " %(valid_to)s, %(recorded_by)s) RETURNING *",
        {**c, "home_id": home_id},
    )
    assert row is not None
    return row


def withdraw_monitoring_consent(conn: Connection[Any], home_id: str, consent_id: int, by: str) -> Row | None:
    row = _row(
        conn,
        "UPDATE monitoring_consents SET withdrawn_at = now(), withdrawn_by = %s"
        " WHERE id = %s AND home_id = %s AND withdrawn_at IS NULL RETURNING *",
        (by, consent_id, home_id),
    )
    if row is not None:
        conn.execute("SELECT pg_notify('carechain_registry', 'monitoring_consents')")
    return row


def monitoring_consent_missing(conn: Connection[Any], home_id: str) -> list[str]:
    """Who still has to consent before the home's monitoring may start (empty: nobody)."""
    h = home(conn, home_id)
    if h is None:
        return ["(no such home)"]
    valid = _rows(
        conn,
        "SELECT resident_id, person FROM monitoring_consents WHERE home_id = %s AND withdrawn_at IS NULL"
        " AND (valid_to IS NULL OR valid_to > now())",
        (home_id,),
    )
    consented_residents = {r["resident_id"] for r in valid if r["resident_id"]}
    residents = [r["id"] for r in _rows(conn, "SELECT id FROM residents WHERE home_id = %s", (home_id,))]
    missing = [f"resident {rid}" for rid in residents if rid not in consented_residents]
    if not residents:
        missing.append("a resident (none registered)")
    cohabitant_consents = len({r["person"] for r in valid if not r["resident_id"]})
    need = int(h.get("cohabitants") or 0)
    if cohabitant_consents < need:
        missing.append(f"{need - cohabitant_consents} person(s) living with them")
    return missing


def gateway(conn: Connection[Any], gateway_id: str) -> Row | None:
    return _row(
        conn,
        "SELECT g.*, h.org_id FROM gateways g JOIN homes h ON h.id = g.home_id WHERE g.id = %s",
        (gateway_id,),
    )


def gateways_of_org(conn: Connection[Any], org_id: str, after_id: str | None, limit: int) -> list[Row]:
    return _rows(
        conn,
        "SELECT g.* FROM gateways g JOIN homes h ON h.id = g.home_id WHERE h.org_id = %s"
        " AND (%s::text IS NULL OR g.id > %s) ORDER BY g.id LIMIT %s",
        (org_id, after_id, after_id, limit),
    )


def create_gateway(conn: Connection[Any], gateway_id: str, home_id: str) -> Row | None:
    row = _row(
        conn,
        "INSERT INTO gateways (id, home_id) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING *",
        (gateway_id, home_id),
    )
    if row is not None:
        conn.execute("SELECT pg_notify('carechain_registry', 'gateways')")
    return row


def revoke_gateway(conn: Connection[Any], gateway_id: str) -> Row | None:
    row = _row(conn, "UPDATE gateways SET revoked_at = now() WHERE id = %s RETURNING *", (gateway_id,))
    conn.execute("SELECT pg_notify('carechain_registry', 'gateways')")
    return row


def devices_of_org(
    conn: Connection[Any], org_id: str, gateway_id: str | None, after_id: str | None, limit: int
) -> list[Row]:
    return _rows(
        conn,
        "SELECT d.* FROM devices d JOIN gateways g ON g.id = d.gateway_id JOIN homes h ON h.id = g.home_id"
        " WHERE h.org_id = %s AND (%s::text IS NULL OR d.gateway_id = %s) AND (%s::text IS NULL OR d.id > %s)"
        " ORDER BY d.id LIMIT %s",
        (org_id, gateway_id, gateway_id, after_id, after_id, limit),
    )


def create_device(conn: Connection[Any], d: dict[str, Any]) -> Row | None:
    row = _row(
        conn,
        "INSERT INTO devices (id, gateway_id, kind, room, resident_id)"
        " VALUES (%(id)s, %(gateway_id)s, %(kind)s, %(room)s, %(resident_id)s) ON CONFLICT DO NOTHING RETURNING *",
        d,
    )
    if row is not None:
        conn.execute("SELECT pg_notify('carechain_registry', 'devices')")
    return row


def relations_of_org(conn: Connection[Any], org_id: str, after_id: int | None, limit: int) -> list[Row]:
    return _rows(
        conn,
        "SELECT id, user_id, org_id, unit, resident_id, kind, valid_from, valid_to, created_by, created_at"
        " FROM care_relations WHERE org_id = %s AND (%s::bigint IS NULL OR id > %s) ORDER BY id LIMIT %s",
        (org_id, after_id, after_id, limit),
    )


def care_plan(conn: Connection[Any], resident_id: str) -> Row | None:
    return _row(conn, "SELECT plan, updated_at FROM care_plans WHERE resident_id = %s", (resident_id,))


def put_care_plan(conn: Connection[Any], resident_id: str, plan: dict[str, Any]) -> Row | None:
    from psycopg.types.json import Jsonb

    row = _row(
        conn,
        "INSERT INTO care_plans (resident_id, plan, updated_at) VALUES (%s, %s, now())"
        " ON CONFLICT (resident_id) DO UPDATE SET plan = excluded.plan, updated_at = now() RETURNING updated_at",
        (resident_id, Jsonb(plan)),
    )
    conn.execute("SELECT pg_notify('carechain_registry', 'care_plans')")
    return row


def set_plan_pause(conn: Connection[Any], resident_id: str, detector: str, paused: bool) -> None:
    """Mirror a per-resident pause into the care plan's ``paused_detectors`` (what the monitor reads)."""
    from psycopg.types.json import Jsonb

    from carechain.care_plan import CarePlan

    row = care_plan(conn, resident_id)
    plan = CarePlan.from_dict(resident_id, row["plan"] if row else None).to_dict()
    names = set(plan["paused_detectors"])
    names = names | {detector} if paused else names - {detector}
    plan["paused_detectors"] = sorted(names)
    conn.execute(
        "INSERT INTO care_plans (resident_id, plan, updated_at) VALUES (%s, %s, now())"
        " ON CONFLICT (resident_id) DO UPDATE SET plan = excluded.plan, updated_at = now()",
        (resident_id, Jsonb(plan)),
    )
    conn.execute("SELECT pg_notify('carechain_registry', 'care_plans')")


# --- observations -----------------------------------------------------------------------------

MEDICATION_PREFIX = "medication."


def observations_raw(
    conn: Connection[Any],
    resident_id: str,
    since: datetime,
    until: datetime,
    kind: str | None,
    medication: bool,
    after: list[Any] | None,
    limit: int,
) -> list[Row]:
    q = (
        "SELECT event_id, ts, kind, value, device_id FROM observations WHERE resident_id = %s"
        " AND ts >= %s AND ts < %s AND (kind LIKE 'medication.%%') = %s AND (%s::text IS NULL OR kind = %s)"
    )
    params: list[Any] = [resident_id, since, until, medication, kind, kind]
    if after:
        q += " AND (ts, event_id) < (%s::timestamptz, %s)"
        params += [after[0], after[1]]
    q += " ORDER BY ts DESC, event_id DESC LIMIT %s"
    params.append(limit)
    return _rows(conn, q, params)


def observations_bucketed(
    conn: Connection[Any], resident_id: str, since: datetime, until: datetime, step: Any, kind: str | None
) -> list[Row]:
    return _rows(
        conn,
        "SELECT date_bin(%s, ts, '2000-01-01'::timestamptz) AS bucket, kind, count(*)::int AS n,"
        " min(value) AS min, avg(value) AS avg, max(value) AS max FROM observations"
        " WHERE resident_id = %s AND ts >= %s AND ts < %s AND (%s::text IS NULL OR kind = %s)"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        (step, resident_id, since, until, kind, kind),
    )


ACTIVITY_KINDS = ["motion", "door", "bed"]
VITAL_KINDS = ["heart_rate", "spo2", "temperature"]


def activity_summary(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    return _rows(
        conn,
        "SELECT date_trunc('hour', ts) AS hour, coalesce(room, '') AS room, count(*)::int AS events"
        " FROM observations WHERE resident_id = %s AND ts >= %s AND ts < %s AND kind = ANY(%s)"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        (resident_id, since, until, ACTIVITY_KINDS),
    )


def vitals_summary(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    return _rows(
        conn,
        "SELECT date_trunc('hour', ts) AS hour, kind, min(value) AS min, avg(value) AS avg, max(value) AS max,"
        " count(*)::int AS n FROM observations WHERE resident_id = %s AND ts >= %s AND ts < %s"
        " AND kind = ANY(%s) GROUP BY 1, 2 ORDER BY 1, 2",
        (resident_id, since, until, VITAL_KINDS),
    )


def detector_scores(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    return _rows(
        conn,
        "SELECT * FROM detector_scores WHERE resident_id = %s AND ts >= %s AND ts < %s ORDER BY ts LIMIT 10000",
        (resident_id, since, until),
    )


# --- alerts -----------------------------------------------------------------------------------

ALERT_TIME = "created_at"


def _alert_doc(r: Row) -> Row:
    doc = dict(r["alert"])
    doc["sort_at"] = r["sort_at"]
    return doc


def alerts_for(
    conn: Connection[Any],
    resident_ids: Sequence[str],
    status: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    after: list[Any] | None,
    limit: int,
) -> list[Row]:
    """Alerts of these residents, newest first, keyset-paginated on (time, id)."""
    if not resident_ids:
        return []
    where = ["a.resident_id = ANY(%s)"]
    params: list[Any] = [list(resident_ids)]
    if status == "open":
        where.append("a.status NOT IN ('resolved', 'dismissed')")
    elif status:
        where.append("a.status = %s")
        params.append(status)
    if kind:
        where.append("a.kind = %s")
        params.append(kind)
    if severity:
        where.append("a.severity = %s")
        params.append(severity)
    if since:
        where.append(f"a.{ALERT_TIME} >= %s")
        params.append(since)
    if after:
        where.append(f"(a.{ALERT_TIME}, a.id) < (%s::timestamptz, %s)")
        params += [after[0], after[1]]
    q = (
        f"SELECT row_to_json(a)::jsonb AS alert, a.{ALERT_TIME} AS sort_at FROM alerts a WHERE "
        + " AND ".join(where)
        + f" ORDER BY a.{ALERT_TIME} DESC, a.id DESC LIMIT %s"
    )
    params.append(limit)
    return [_alert_doc(r) for r in _rows(conn, q, params)]


def alert(conn: Connection[Any], alert_id: int) -> Row | None:
    r = _row(
        conn,
        f"SELECT row_to_json(a)::jsonb AS alert, a.{ALERT_TIME} AS sort_at FROM alerts a WHERE a.id = %s",
        (alert_id,),
    )
    return _alert_doc(r) if r else None


def alert_history(conn: Connection[Any], alert_id: int) -> list[Row]:
    return [
        r["e"]
        for r in _rows(
            conn,
            "SELECT row_to_json(e)::jsonb AS e FROM alert_events e WHERE e.alert_id = %s ORDER BY e.id",
            (alert_id,),
        )
    ]


def response_stats(conn: Connection[Any], org_id: str, since: datetime | None) -> list[Row]:
    """Response times for the organisation (the alert service's statistics when present)."""
    try:
        from alerts.statistics import response_stats as alert_stats
    except ImportError:
        alert_stats = None
    if alert_stats is not None:
        result = alert_stats(conn, org_id=org_id, since=since)
        return [dict(r) if not isinstance(r, dict) else r for r in result]
    return _rows(
        conn,
        "SELECT kind, severity, count(*)::int AS alerts,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - created_at))"
        " AS ack_p50_s,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM resolved_at - created_at))"
        " AS resolve_p50_s"
        " FROM alerts WHERE responsible_org_id = %s AND (%s::timestamptz IS NULL OR created_at >= %s)"
        " GROUP BY kind, severity ORDER BY kind, severity",
        (org_id, since, since),
    )


def detector_site_figures(conn: Connection[Any], since: datetime) -> dict[str, list[Row]]:
    """Per detector and site (organisation): alerts per resident-week and dismiss rate."""
    rows = _rows(
        conn,
        "WITH per AS (SELECT a.detector, r.org_id, count(*)::float AS alerts,"
        " count(*) FILTER (WHERE a.status = 'dismissed')::float AS dismissed"
        " FROM alerts a JOIN residents r ON r.id = a.resident_id WHERE a.created_at >= %s"
        " GROUP BY a.detector, r.org_id),"
        " pop AS (SELECT org_id, count(*)::float AS residents FROM residents GROUP BY org_id)"
        " SELECT per.detector, per.org_id,"
        " round((per.alerts / greatest(pop.residents, 1) / greatest(extract(epoch FROM now() - %s) / 604800.0,"
        " 1e-9))::numeric, 4)::float AS alerts_per_resident_week,"
        " round((per.dismissed / greatest(per.alerts, 1))::numeric, 4)::float AS dismiss_rate"
        " FROM per JOIN pop USING (org_id) ORDER BY 1, 2",
        (since, since),
    )
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.pop("detector"), []).append(r)
    return out


def migrations_current(conn: Connection[Any]) -> tuple[bool, str]:
    """Is every migration file applied? (The storage runner records versions in ``schema_migrations``.)"""
    from importlib import resources

    files = sorted(
        p.name
        for p in resources.files("carechain.db").joinpath("migrations").iterdir()
        if p.name.endswith(".sql") and p.name[:4].isdigit()
    )
    newest = max((int(f[:4]) for f in files), default=0)
    row = _row(conn, "SELECT max(version)::int AS v FROM schema_migrations")
    applied = int(row["v"]) if row and row["v"] is not None else 0
    return applied >= newest, f"applied {applied:04d}, newest {newest:04d}"
