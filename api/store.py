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


#: organisations.kind as stored -> the policy's organisation kind.
ORG_KINDS: dict[str, str] = {"kommun": "municipality", "region": "region", "municipality": "municipality"}


def organisation_kinds(conn: Connection[Any]) -> dict[str, str]:
    """org id -> "municipality" | "region"."""
    return {
        r["org_id"]: ORG_KINDS.get(str(r["kind"]), str(r["kind"]))
        for r in _rows(conn, "SELECT org_id, kind FROM organisations")
    }


def organisations(conn: Connection[Any]) -> list[Row]:
    return _rows(conn, "SELECT org_id AS id, name, kind FROM organisations ORDER BY org_id")


# --- access facts -----------------------------------------------------------------------------


_CATEGORY_NAMES = frozenset(c.value for c in Category)


def _categories(values: Iterable[str]) -> frozenset[Category]:
    return frozenset(Category(v) for v in values if v in _CATEGORY_NAMES)


def resident_owner(conn: Connection[Any], resident_id: str) -> str | None:
    """The resident's municipality (None: no such resident)."""
    r = _row(conn, "SELECT kommun_org_id FROM residents WHERE resident_id = %s", (resident_id,))
    return r["kommun_org_id"] if r else None


_FACTS_SQL = """
SELECT r.resident_id AS id, r.kommun_org_id, r.region_org_id,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, user_id, org_id, unit, kind, valid_from, valid_to
     FROM care_relations WHERE resident_id = r.resident_id AND (valid_to IS NULL OR valid_to > now())) x) AS relations,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, owner_org_id, reader_org_id, reader_unit, categories, mode,
     legal_basis, valid_from, valid_to, withdrawn_at FROM sharing_consents
     WHERE resident_id = r.resident_id AND withdrawn_at IS NULL AND valid_to > now()) x) AS consents,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, category, org_id, unit, valid_from, valid_to FROM blocks
     WHERE resident_id = r.resident_id AND lifted_at IS NULL AND (valid_to IS NULL OR valid_to > now())) x) AS blocks,
  (SELECT coalesce(json_agg(x), '[]') FROM (SELECT id, user_id, opened_at, expires_at FROM emergency_access
     WHERE resident_id = r.resident_id AND expires_at > now()) x) AS emergencies
FROM residents r WHERE r.resident_id = ANY(%s)
"""


def _ts(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def _period(d: dict[str, Any]) -> Period:
    start = _ts(d["valid_from"])
    assert start is not None
    return Period(start, _ts(d["valid_to"]))


def _facts(r: Row) -> ResidentFacts:
    rid = r["id"]
    return ResidentFacts(
        resident_id=rid,
        owner_org_id=r["kommun_org_id"],
        region_org_id=r["region_org_id"],
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


def resident_facts_many(conn: Connection[Any], resident_ids: Sequence[str]) -> dict[str, ResidentFacts]:
    """Everything the access policy needs about these residents, in one round trip."""
    if not resident_ids:
        return {}
    return {r["id"]: _facts(r) for r in _rows(conn, _FACTS_SQL, (list(dict.fromkeys(resident_ids)),))}


_CALLER_FACTS_SQL = """
SELECT r.resident_id AS id, r.kommun_org_id, r.region_org_id,
  (SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (SELECT id, user_id, org_id, unit, kind, valid_from, valid_to
     FROM care_relations WHERE resident_id = r.resident_id AND user_id = %(u)s AND org_id = %(o)s
       AND (valid_to IS NULL OR valid_to > now())) x) AS relations,
  (SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (SELECT id, owner_org_id, reader_org_id, reader_unit,
     categories, mode, legal_basis, valid_from, valid_to, withdrawn_at FROM sharing_consents
     WHERE resident_id = r.resident_id AND withdrawn_at IS NULL AND valid_to > now()) x) AS consents,
  (SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (SELECT id, category, org_id, unit, valid_from, valid_to
     FROM blocks WHERE resident_id = r.resident_id AND lifted_at IS NULL AND (valid_to IS NULL OR valid_to > now())) x)
     AS blocks,
  (SELECT coalesce(json_agg(x ORDER BY x.id), '[]') FROM (SELECT id, user_id, opened_at, expires_at
     FROM emergency_access WHERE resident_id = r.resident_id AND user_id = %(u)s
       AND expires_at > now()) x) AS emergencies
FROM residents r WHERE {}
"""
_CALLER_ONE = _CALLER_FACTS_SQL.format("r.resident_id = %(r)s")
_CALLER_REACH = _CALLER_FACTS_SQL.format(
    "r.resident_id IN (SELECT resident_id FROM care_relations WHERE user_id = %(u)s AND org_id = %(o)s"
    " AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now())"
    " UNION SELECT resident_id FROM emergency_access WHERE user_id = %(u)s AND expires_at > now())"
)
_CALLER_MANY = _CALLER_FACTS_SQL.format("r.resident_id = ANY(%(ids)s)")


def caller_facts(
    conn: Connection[Any], user_id: str, org_id: str, resident_ids: Sequence[str] | None = None
) -> dict[str, ResidentFacts]:
    """The facts :func:`api.access.decide` reads for this caller, in one round trip: the residents' consents and
    blocks, but only the caller's own care relations (this user at this organisation) and emergency accesses —
    decide never looks at another user's. ``resident_ids`` None: every resident in the caller's reach (an
    active relation or emergency access), as :func:`residents_in_reach` and :func:`resident_facts_many` together.

    Not for code that needs every relation (who holds data, consent rules): use :func:`resident_facts_many`.
    """
    if resident_ids is None:
        rows = _rows(conn, _CALLER_REACH, {"u": user_id, "o": org_id})
    elif len(resident_ids) == 1:
        rows = _rows(conn, _CALLER_ONE, {"u": user_id, "o": org_id, "r": resident_ids[0]})
    elif resident_ids:
        rows = _rows(conn, _CALLER_MANY, {"u": user_id, "o": org_id, "ids": list(dict.fromkeys(resident_ids))})
    else:
        return {}
    return {r["id"]: _facts(r) for r in rows}


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
        " FROM audit_log a LEFT JOIN organisations o ON o.org_id = a.org_id"
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


_RESIDENT = "SELECT resident_id AS id, home_id, kommun_org_id, region_org_id FROM residents"


def residents_by_ids(conn: Connection[Any], ids: Sequence[str]) -> list[Row]:
    if not ids:
        return []
    return _rows(conn, f"{_RESIDENT} WHERE resident_id = ANY(%s) ORDER BY resident_id", (list(ids),))


def residents_of_org(conn: Connection[Any], org_id: str, after_id: str | None, limit: int) -> list[Row]:
    """Residents of a municipality or region (pseudonymous), by id."""
    return _rows(
        conn,
        f"{_RESIDENT} WHERE (kommun_org_id = %s OR region_org_id = %s) AND (%s::text IS NULL OR resident_id > %s)"
        " ORDER BY resident_id LIMIT %s",
        (org_id, org_id, after_id, after_id, limit),
    )


def open_alert_counts(conn: Connection[Any], ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    return {
        r["resident_id"]: r["n"]
        for r in _rows(
            conn,
            "SELECT resident_id, count(*)::int AS n FROM alerts WHERE resident_id = ANY(%s)"
            f" AND status NOT IN {CLOSED_STATUSES} GROUP BY resident_id",
            (list(ids),),
        )
    }


def resident_identity(conn: Connection[Any], resident_id: str) -> Row | None:
    return _row(
        conn,
        "SELECT r.resident_id AS id, r.home_id, r.kommun_org_id, r.region_org_id, i.name, i.personnummer"
        " FROM residents r LEFT JOIN resident_identities i ON i.resident_id = r.resident_id"
        " WHERE r.resident_id = %s",
        (resident_id,),
    )


def create_resident(conn: Connection[Any], resident_id: str, home: Row, name: str, personnummer: str) -> bool:
    """A resident of this home (its municipality and region); False when the id or personnummer exists."""
    row = _row(
        conn,
        "INSERT INTO residents (resident_id, home_id, kommun_org_id, region_org_id) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING resident_id",
        (resident_id, home["id"], home["kommun_org_id"], home["region_org_id"]),
    )
    if row is None:
        return False
    ident = _row(
        conn,
        "INSERT INTO resident_identities (resident_id, name, personnummer) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING resident_id",
        (resident_id, name, personnummer),
    )
    return ident is not None


_HOME = "SELECT home_id AS id, kommun_org_id, region_org_id, area, cohabitants, timezone, created_at FROM homes"


def home(conn: Connection[Any], home_id: str) -> Row | None:
    return _row(conn, f"{_HOME} WHERE home_id = %s", (home_id,))


def homes_of_org(conn: Connection[Any], org_id: str, after_id: str | None, limit: int) -> list[Row]:
    return _rows(
        conn,
        f"{_HOME} WHERE (kommun_org_id = %s OR region_org_id = %s) AND (%s::text IS NULL OR home_id > %s)"
        " ORDER BY home_id LIMIT %s",
        (org_id, org_id, after_id, after_id, limit),
    )


def create_home(conn: Connection[Any], h: dict[str, Any]) -> Row | None:
    row = _row(
        conn,
        "INSERT INTO homes (home_id, kommun_org_id, region_org_id, area, cohabitants)"
        " VALUES (%(id)s, %(kommun_org_id)s, %(region_org_id)s, %(area)s, %(cohabitants)s)"
        " ON CONFLICT DO NOTHING RETURNING home_id",
        h,
    )
    return home(conn, row["home_id"]) if row else None


_CONSENT = (
    "SELECT id, home_id, subject, subject_ref, basis, basis_note, method, given_at, valid_from, valid_to,"
    " withdrawn_at, withdrawn_by, recorded_by FROM monitoring_consents"
)


def monitoring_consents(conn: Connection[Any], home_id: str) -> list[Row]:
    return _rows(conn, f"{_CONSENT} WHERE home_id = %s ORDER BY id", (home_id,))


def add_monitoring_consent(conn: Connection[Any], home_id: str, c: dict[str, Any]) -> Row:
    row = _row(
        conn,
        "INSERT INTO monitoring_consents (home_id, subject, subject_ref, basis, basis_note, method, valid_to,"
        " recorded_by) VALUES (%(home_id)s, %(subject)s, %(subject_ref)s, %(basis)s, %(basis_note)s, %(method)s,"
        " %(valid_to)s, %(recorded_by)s) RETURNING id",
        {**c, "home_id": home_id},
    )
    assert row is not None
    out = _row(conn, f"{_CONSENT} WHERE id = %s", (row["id"],))
    assert out is not None
    return out


def withdraw_monitoring_consent(conn: Connection[Any], home_id: str, consent_id: int, by: str) -> Row | None:
    row = _row(
        conn,
        "UPDATE monitoring_consents SET withdrawn_at = now(), withdrawn_by = %s"
        " WHERE id = %s AND home_id = %s AND withdrawn_at IS NULL RETURNING id",
        (by, consent_id, home_id),
    )
    return _row(conn, f"{_CONSENT} WHERE id = %s", (row["id"],)) if row else None


def monitoring_status(conn: Connection[Any], home_id: str) -> Row:
    """Whether the home's monitoring is active, and whose consent is still missing (storage's rule)."""
    h = home(conn, home_id)
    if h is None:
        return {"home_id": home_id, "active": False, "missing": ["(no such home)"]}
    valid = _rows(
        conn,
        "SELECT subject, subject_ref FROM monitoring_consents WHERE home_id = %s AND withdrawn_at IS NULL"
        " AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now())",
        (home_id,),
    )
    residents = [
        r["resident_id"]
        for r in _rows(conn, "SELECT resident_id FROM residents WHERE home_id = %s AND active", (home_id,))
    ]
    consented = {r["subject_ref"] for r in valid if r["subject"] == "resident"}
    missing = [f"resident {rid}" for rid in residents if rid not in consented]
    if not residents:
        missing.append("a resident (none registered)")
    cohabitants = len({r["subject_ref"] for r in valid if r["subject"] == "cohabitant"})
    need = int(h.get("cohabitants") or 0)
    if cohabitants < need:
        missing.append(f"{need - cohabitants} person(s) living with the resident")
    devices = _rows(
        conn,
        "SELECT count(*)::int AS n, count(*) FILTER (WHERE monitoring_active)::int AS active"
        " FROM device_registry WHERE home_id = %s",
        (home_id,),
    )[0]
    return {
        "home_id": home_id,
        "active": not missing,
        "missing": missing,
        "devices": devices["n"],
        "devices_monitored": devices["active"],
    }


_GATEWAY = (
    "SELECT g.gateway_id AS id, g.home_id, g.created_at, g.revoked_at, g.last_seen_at, h.kommun_org_id,"
    " h.region_org_id FROM gateways g JOIN homes h ON h.home_id = g.home_id"
)


def gateway(conn: Connection[Any], gateway_id: str) -> Row | None:
    return _row(conn, f"{_GATEWAY} WHERE g.gateway_id = %s", (gateway_id,))


def gateways_of_org(conn: Connection[Any], org_id: str, after_id: str | None, limit: int) -> list[Row]:
    return _rows(
        conn,
        f"{_GATEWAY} WHERE (h.kommun_org_id = %s OR h.region_org_id = %s)"
        " AND (%s::text IS NULL OR g.gateway_id > %s) ORDER BY g.gateway_id LIMIT %s",
        (org_id, org_id, after_id, after_id, limit),
    )


def create_gateway(conn: Connection[Any], gateway_id: str, home_id: str) -> Row | None:
    row = _row(
        conn,
        "INSERT INTO gateways (gateway_id, home_id) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING gateway_id",
        (gateway_id, home_id),
    )
    return gateway(conn, gateway_id) if row else None


def revoke_gateway(conn: Connection[Any], gateway_id: str) -> Row | None:
    conn.execute("UPDATE gateways SET revoked_at = coalesce(revoked_at, now()) WHERE gateway_id = %s", (gateway_id,))
    return gateway(conn, gateway_id)


_DEVICE = (
    "SELECT d.device_id AS id, d.gateway_id, d.home_id, d.device_kind AS kind, d.room, d.resident_id,"
    " d.created_at, d.removed_at FROM devices d JOIN homes h ON h.home_id = d.home_id"
)


def devices_of_org(
    conn: Connection[Any], org_id: str, gateway_id: str | None, after_id: str | None, limit: int
) -> list[Row]:
    return _rows(
        conn,
        f"{_DEVICE} WHERE (h.kommun_org_id = %s OR h.region_org_id = %s)"
        " AND (%s::text IS NULL OR d.gateway_id = %s) AND (%s::text IS NULL OR d.device_id > %s)"
        " ORDER BY d.device_id LIMIT %s",
        (org_id, org_id, gateway_id, gateway_id, after_id, after_id, limit),
    )


def create_device(conn: Connection[Any], d: dict[str, Any], home_id: str) -> Row | None:
    row = _row(
        conn,
        "INSERT INTO devices (device_id, gateway_id, home_id, device_kind, room, resident_id)"
        " VALUES (%(id)s, %(gateway_id)s, %(home_id)s, %(kind)s, %(room)s, %(resident_id)s)"
        " ON CONFLICT DO NOTHING RETURNING device_id",
        {**d, "home_id": home_id},
    )
    return _row(conn, f"{_DEVICE} WHERE d.device_id = %s", (d["id"],)) if row else None


def relations_of_org(conn: Connection[Any], org_id: str, after_id: int | None, limit: int) -> list[Row]:
    return _rows(
        conn,
        "SELECT id, user_id, org_id, unit, resident_id, kind, valid_from, valid_to, created_by, created_at"
        " FROM care_relations WHERE org_id = %s AND (%s::bigint IS NULL OR id > %s) ORDER BY id LIMIT %s",
        (org_id, after_id, after_id, limit),
    )


def care_plan(conn: Connection[Any], resident_id: str) -> Row | None:
    return _row(
        conn, "SELECT plan, version, updated_at, updated_by FROM care_plans WHERE resident_id = %s", (resident_id,)
    )


def put_care_plan(conn: Connection[Any], resident_id: str, plan: dict[str, Any], by: str) -> Row | None:
    from psycopg.types.json import Jsonb

    row = _row(
        conn,
        "INSERT INTO care_plans (resident_id, plan, updated_at, updated_by) VALUES (%s, %s, now(), %s)"
        " ON CONFLICT (resident_id) DO UPDATE SET plan = excluded.plan, updated_at = now(),"
        " updated_by = excluded.updated_by, version = care_plans.version + 1 RETURNING version, updated_at",
        (resident_id, Jsonb(plan), by),
    )
    conn.execute("SELECT pg_notify('carechain_registry', 'care_plans')")
    return row


def set_plan_pause(conn: Connection[Any], resident_id: str, detector: str, paused: bool, by: str) -> None:
    """Mirror a per-resident pause into the care plan's ``paused_detectors`` (what the monitor reads)."""
    from carechain.care_plan import CarePlan

    row = care_plan(conn, resident_id)
    plan = CarePlan.from_dict(resident_id, row["plan"] if row else None).to_dict()
    names = set(plan["paused_detectors"])
    names = names | {detector} if paused else names - {detector}
    plan["paused_detectors"] = sorted(names)
    put_care_plan(conn, resident_id, plan, by)


# --- observations -----------------------------------------------------------------------------

MEDICATION_PREFIX = "medication."


def _kinds(kind: str | None, medication: bool) -> list[str]:
    from carechain.events import Kind

    if kind is not None:
        return [kind] if kind.startswith(MEDICATION_PREFIX) == medication else []
    return [k.value for k in Kind if k.value.startswith(MEDICATION_PREFIX) == medication]


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
    """Raw readings, newest first (storage's ``queries.timeline``), medication events apart from the rest."""
    from carechain.db import queries

    kinds = _kinds(kind, medication)
    if not kinds:
        return []
    cursor = (datetime.fromisoformat(str(after[0])), str(after[1])) if after else None
    rows = queries.timeline(conn, resident_id, since, until, kinds=kinds, limit=limit, after=cursor)
    return [{k: r[k] for k in ("event_id", "ts", "kind", "value", "device_id", "room", "late")} for r in rows]


def observations_bucketed(
    conn: Connection[Any], resident_id: str, since: datetime, until: datetime, step: Any, kind: str | None, tz: str
) -> list[Row]:
    """Readings per bucket and kind (count, min/avg/max), buckets on the local wall clock (``queries.timeline``)."""
    from carechain.db import queries

    kinds = [kind] if kind else None
    return queries.timeline(conn, resident_id, since, until, bucket=step, kinds=kinds, limit=100_000, tz=tz)


def activity_summary(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    """Motion events per hour and room (``queries.activity_hourly``)."""
    from carechain.db import queries

    return queries.activity_hourly(conn, resident_id, since, until)


def vitals_summary(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    """Hourly min/avg/max per vital sign (``queries.vitals_trend``)."""
    from carechain.db import queries

    return queries.vitals_trend(conn, resident_id, since, until)


def device_status(conn: Connection[Any], home_id: str) -> Row:
    from carechain.db import queries

    return queries.device_status(conn, home_id)


def detector_scores(conn: Connection[Any], resident_id: str, since: datetime, until: datetime) -> list[Row]:
    return _rows(
        conn,
        "SELECT ts, detector, detector_version, score, threshold, features FROM scores"
        " WHERE resident_id = %s AND ts >= %s AND ts < %s ORDER BY ts LIMIT 10000",
        (resident_id, since, until),
    )


# --- alerts -----------------------------------------------------------------------------------

ALERT_TIME = "created_at"
CLOSED_STATUSES = "('resolved', 'dismissed')"


def _alert_doc(r: Row) -> Row:
    return r


def alert_columns(conn: Connection[Any]) -> list[tuple[str, str]]:
    """The ``alerts`` table's columns in order, with their types (``SELECT a.*`` gives them in this order)."""
    return [
        (r["name"], r["type"])
        for r in _rows(
            conn,
            "SELECT attname AS name, format_type(atttypid, NULL) AS type FROM pg_attribute"
            " WHERE attrelid = 'alerts'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
    ]


def _json_text(expr: str, sql_type: str) -> str:
    """SQL giving the JSON text pydantic-core writes for this column's Python value (psycopg's, session time
    zone): timestamps as ``2026-11-23T08:00:00Z`` / ``…08:00:00.120000+01:00`` (6 digits only when there are
    microseconds, ``Z`` for a zero offset), ``null`` for NULL, jsonb/json as stored, the rest as ``to_json``."""
    if sql_type == "timestamp with time zone":
        # One to_char; '.000000' can only be the fraction and '+00:00' only the offset.
        return (
            f"coalesce('\"' || replace(replace(to_char({expr}, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM'),"
            " '.000000', ''), '+00:00', 'Z') || '\"', 'null')"
        )
    if sql_type in ("jsonb", "json", "bigint", "integer", "smallint"):  # their text is their JSON
        return f"coalesce({expr}::text, 'null')"
    if sql_type == "boolean":
        return f"CASE WHEN {expr} THEN 'true' WHEN NOT {expr} THEN 'false' ELSE 'null' END"
    if sql_type == "uuid":
        return f"coalesce('\"' || {expr}::text || '\"', 'null')"
    return f"coalesce(to_json({expr})::text, 'null')"  # text: escaped


def _sql_text(value: str) -> str:
    """A constant string as SQL (the query also takes ``%s`` parameters: ``%`` doubled)."""
    return "'" + value.replace("'", "''").replace("%", "%%") + "'"


#: Column types whose ``to_json`` text is the JSON pydantic-core writes for psycopg's Python value (parsed the
#: same: jsonb keeps its key order and numbers; PostgreSQL writes ``, `` and ``: `` inside it).
JSON_SAME_TYPES = frozenset(
    {
        "bigint",
        "integer",
        "smallint",
        "text",
        "character varying",
        "boolean",
        "uuid",
        "jsonb",
        "json",
        "timestamp with time zone",
    }
)


def json_object_sql(fields: Sequence[tuple[str, str, str | None]]) -> str:
    """SQL text of one JSON object built by PostgreSQL, keys in this order: each field is (key as JSON, SQL
    expression, its SQL type) or (key as JSON, JSON text of a constant, None)."""
    parts: list[str] = []
    for i, (key, value, sql_type) in enumerate(fields):
        parts.append(_sql_text(("{" if i == 0 else ",") + key + ":"))
        parts.append(_sql_text(value) if sql_type is None else f"({_json_text(value, sql_type)})")
    parts.append(_sql_text("}") if fields else "'{}'")
    # concat() of every piece at once (a chain of || copies the growing string once per piece); at most 100
    # arguments a call, so nested in chunks
    while len(parts) > 1:
        parts = [f"concat({', '.join(parts[i : i + 90])})" for i in range(0, len(parts), 90)]
    return parts[0]


def alerts_for(
    conn: Connection[Any],
    resident_ids: Sequence[str],
    status: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    after: list[Any] | None,
    limit: int,
    select: str | None = None,
) -> list[Row]:
    """Alerts of these residents, newest first, keyset-paginated on (time, id). ``select``: the select list
    (default every column and ``sort_at``), e.g. the page items' JSON built by PostgreSQL."""
    if not resident_ids:
        return []
    q, params = _alerts_query(
        "a.resident_id = ANY(%s)", [list(resident_ids)], status, kind, severity, since, after, select
    )
    params.append(limit)
    return [_alert_doc(r) for r in _rows(conn, q, params)]


def caller_facts_and_alerts(
    conn: Connection[Any],
    user_id: str,
    org_id: str,
    status: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    after: list[Any] | None,
    limit: int,
    select: str | None = None,
) -> tuple[dict[str, ResidentFacts], list[Row]]:
    """:func:`caller_facts` of the caller's whole reach and :func:`alerts_for` of every resident in that reach,
    sent together (pipeline mode: one round trip instead of two).

    The alerts are of the reach, not yet of the residents the policy allows: a caller keeps them only when every
    row's resident is allowed (then they are exactly ``alerts_for`` of the allowed residents, who are a subset of
    the reach) and asks again with :func:`alerts_for` otherwise (a block, a withdrawn consent).
    """
    reach = (
        "a.resident_id IN (SELECT resident_id FROM care_relations WHERE user_id = %s AND org_id = %s"
        " AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now())"
        " UNION SELECT resident_id FROM emergency_access WHERE user_id = %s AND expires_at > now())"
    )
    q, params = _alerts_query(reach, [user_id, org_id, user_id], status, kind, severity, since, after, select)
    params.append(limit)
    with conn.pipeline():
        facts_cur = conn.cursor(row_factory=dict_row)
        alerts_cur = conn.cursor(row_factory=dict_row)
        facts_cur.execute(_CALLER_REACH, {"u": user_id, "o": org_id})
        alerts_cur.execute(q, params)
        facts = {r["id"]: _facts(r) for r in facts_cur.fetchall()}
        rows = [_alert_doc(r) for r in alerts_cur.fetchall()]
    return facts, rows


def _alerts_query(
    first: str,
    params: list[Any],
    status: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    after: list[Any] | None,
    select: str | None = None,
) -> tuple[str, list[Any]]:
    """The alerts query (its LIMIT parameter still to add) for the residents ``first`` selects; ``select`` is the
    select list (default: every column and ``sort_at``; it may only contain constant SQL, no parameters)."""
    where = [first]
    params = list(params)
    if status == "open":
        where.append(f"a.status NOT IN {CLOSED_STATUSES}")
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
        f"SELECT {select or f'a.*, a.{ALERT_TIME} AS sort_at'} FROM alerts a WHERE "
        + " AND ".join(where)
        + f" ORDER BY a.{ALERT_TIME} DESC, a.id DESC LIMIT %s"
    )
    return q, params


def alert(conn: Connection[Any], alert_id: int) -> Row | None:
    r = _row(
        conn,
        f"SELECT a.*, a.{ALERT_TIME} AS sort_at FROM alerts a WHERE a.id = %s",
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
    """Time to acknowledge and to resolve for the organisation (the alert service's ``response_stats``)."""
    from alerts.statistics import response_stats as alert_stats

    return alert_stats(conn, org_id=org_id, since=since)


def detector_site_figures(conn: Connection[Any], since: datetime) -> dict[str, list[Row]]:
    """Per detector and site (organisation): alerts per resident-week and dismiss rate."""
    rows = _rows(
        conn,
        "WITH per AS (SELECT a.detector, r.kommun_org_id AS org_id, count(*)::float AS alerts,"
        " count(*) FILTER (WHERE a.status = 'dismissed')::float AS dismissed"
        " FROM alerts a JOIN residents r ON r.resident_id = a.resident_id WHERE a.created_at >= %s"
        " GROUP BY a.detector, r.kommun_org_id),"
        " pop AS (SELECT kommun_org_id AS org_id, count(*)::float AS residents FROM residents GROUP BY 1)"
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
