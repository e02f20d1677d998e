"""Residents: a pseudonymous list for the caller's scope, identity only with a care relation, registration
(admin), and two-step emergency access."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from api import audit, store
from api.access import (
    EMERGENCY_REASON_CODES,
    Category,
    Outcome,
    Purpose,
    Role,
    list_scope,
    may_open_emergency,
    units_holding_data,
)
from api.deps import AdminUser, CurrentUser, Db, ResidentGrant, audit_access, get_state, resident_access
from api.models import (
    EmergencyAccessOut,
    EmergencyOpen,
    EmergencyUnits,
    ResidentCreate,
    ResidentIdentity,
    ResidentSummary,
)
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, next_cursor
from api.problems import PROBLEM_RESPONSES, ProblemError
from carechain.personnummer import InvalidPersonnummer, parse

router = APIRouter(prefix="/v1/residents", tags=["residents"], responses=PROBLEM_RESPONSES)

ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]


@router.get(
    "",
    response_model=Page[ResidentSummary],
    summary="Residents in the caller's scope (pseudonymous)",
    description="Care staff: residents with an active care relation (or emergency access). Coordinators and "
    "administrators: every resident of their organisation, pseudonymous, with aggregated figures only. "
    "Every resident listed is audited.",
)
def list_residents(
    request: Request,
    ctx: CurrentUser,
    conn: Db,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[ResidentSummary]:
    after = decode_cursor(cursor, 1)
    after_id = str(after[0]) if after else None
    bases: dict[str, str | None] = {}
    if ctx.role in (Role.COORDINATOR, Role.ADMIN):
        rows = store.residents_of_org(conn, ctx.org_id, after_id, limit + 1)
        purpose = Purpose.QUALITY if ctx.role is Role.COORDINATOR else Purpose.ADMINISTRATION
        emergency_ids: set[str] = set()
    elif ctx.role is Role.AUDITOR:
        raise ProblemError(403, "Auditors read the audit log, not resident data")
    else:
        candidates = store.residents_in_reach(conn, ctx.user_id, ctx.org_id)
        facts = store.resident_facts_many(conn, candidates)
        scope = list_scope(ctx, facts.values(), Category.ALERTS, datetime.now(UTC))
        ids = sorted(i for i in scope.resident_ids if after_id is None or i > after_id)[: limit + 1]
        rows = store.residents_by_ids(conn, ids)
        bases = {i: d.basis for i, d in scope.bases.items()}
        emergency_ids = {i for i, d in scope.bases.items() if d.emergency}
        purpose = Purpose.TREATMENT
    counts = store.open_alert_counts(conn, [r["id"] for r in rows[:limit]])
    items = [ResidentSummary(**r, open_alerts=counts.get(r["id"], 0)) for r in rows[:limit]]
    audit_access(
        request,
        conn,
        ctx,
        resource="residents/list",
        resident_ids=[i.id for i in items],
        purpose=purpose,
        bases=bases,
        emergency_ids=emergency_ids,
    )
    return Page[ResidentSummary](items=items, next_cursor=next_cursor(rows, limit, lambda r: [r["id"]]))


@router.post(
    "",
    response_model=ResidentSummary,
    status_code=201,
    summary="Register a resident (administrator of the home's municipality)",
    description="The personnummer is validated (date part and check digit) and stored apart from the "
    "pseudonymous id; it is never logged.",
)
def create_resident(request: Request, body: ResidentCreate, ctx: AdminUser, conn: Db) -> ResidentSummary:
    try:
        pnr = parse(body.personnummer)
    except InvalidPersonnummer as e:
        raise ProblemError(422, f"personnummer: {e}", slug="validation") from None
    home = store.home(conn, body.home_id)
    if home is None or home["kommun_org_id"] != ctx.org_id:
        raise ProblemError(404, "Not found")
    rid = body.id or f"r-{uuid.uuid4().hex[:12]}"
    with conn.transaction():
        if not store.create_resident(conn, rid, home, body.name, f"{pnr.canonical[:8]}-{pnr.canonical[8:]}"):
            raise ProblemError(409, "A resident with this id or personnummer exists")
        audit.record(
            conn,
            ctx,
            action="POST /v1/residents",
            resource="resident/identity",
            resident_id=rid,
            outcome=Outcome.ALLOWED,
            purpose=Purpose.ADMINISTRATION,
            basis=f"org:{ctx.org_id}",
        )
    return ResidentSummary(
        id=rid, home_id=body.home_id, kommun_org_id=home["kommun_org_id"], region_org_id=home["region_org_id"]
    )


@router.get(
    "/{resident_id}",
    response_model=ResidentIdentity,
    summary="A resident with identity (needs a care relation)",
    responses={404: {"description": "No such resident, or none the caller has a relation to"}},
)
def get_resident(
    conn: Db, grant: Annotated[ResidentGrant, Depends(resident_access(Category.IDENTITY))]
) -> ResidentIdentity:
    row = store.resident_identity(conn, grant.resident_id)
    if row is None:
        raise ProblemError(404, "Not found")
    return ResidentIdentity(**row, basis=grant.decision.basis)


@router.get(
    "/{resident_id}/emergency",
    response_model=EmergencyUnits,
    summary="Emergency access, step 1: which organisations and units hold data (no content)",
)
def emergency_units(ctx: CurrentUser, conn: Db, resident_id: ResidentId) -> EmergencyUnits:
    allowed = may_open_emergency(ctx)
    facts = store.resident_facts(conn, resident_id) if allowed else None
    audit.record(
        conn,
        ctx,
        action="GET /v1/residents/{resident_id}/emergency",
        resource="resident/emergency-units",
        resident_id=resident_id,
        outcome=Outcome.ALLOWED if facts is not None else Outcome.DENIED,
        purpose=Purpose.EMERGENCY,
        emergency=True,
    )
    if not allowed:
        raise ProblemError(403, "Only nurses and clinicians may use emergency access")
    if facts is None:
        raise ProblemError(404, "Not found")
    return EmergencyUnits(
        resident_id=resident_id,
        units=units_holding_data(facts, datetime.now(UTC)),
        reason_codes=EMERGENCY_REASON_CODES,
    )


@router.post(
    "/{resident_id}/emergency",
    response_model=EmergencyAccessOut,
    status_code=201,
    summary="Emergency access, step 2: open with a mandatory reason and reason code",
    description="Time-boxed (Settings.api_emergency_hours, default 4 h), every use flagged as emergency in the "
    "audit log, and the access enters the review queue automatically.",
)
def emergency_open(
    request: Request, body: EmergencyOpen, ctx: CurrentUser, conn: Db, resident_id: ResidentId
) -> EmergencyAccessOut:
    allowed = may_open_emergency(ctx)
    exists = allowed and store.resident_owner(conn, resident_id) is not None
    with conn.transaction():
        row = None
        if exists:
            ttl_s = get_state(request).settings.api_emergency_hours * 3600
            row = store.open_emergency(
                conn,
                {
                    "user_id": ctx.user_id,
                    "org_id": ctx.org_id,
                    "unit": ctx.unit,
                    "resident_id": resident_id,
                    "reason": body.reason,
                    "reason_code": body.reason_code,
                    "ttl_s": ttl_s,
                },
            )
        audit.record(
            conn,
            ctx,
            action="POST /v1/residents/{resident_id}/emergency",
            resource="resident/emergency-access",
            resident_id=resident_id,
            outcome=Outcome.ALLOWED if row else Outcome.DENIED,
            purpose=Purpose.EMERGENCY,
            basis=f"emergency:{row['id']}" if row else None,
            emergency=True,
        )
    if not allowed:
        raise ProblemError(403, "Only nurses and clinicians may use emergency access")
    if row is None:
        raise ProblemError(404, "Not found")
    return EmergencyAccessOut(**{k: row[k] for k in EmergencyAccessOut.model_fields})
