"""Care plans (per-resident limits) and care relations (who may see a resident, for how long)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from api import audit, store
from api.access import Category, Outcome, Purpose
from api.deps import AdminUser, Db, ResidentGrant, audit_access, resident_access
from api.models import CarePlanBody, CarePlanOut, CareRelationIn, CareRelationOut
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, next_cursor
from api.problems import PROBLEM_RESPONSES, ProblemError
from carechain.care_plan import CarePlan

router = APIRouter(tags=["care"], responses=PROBLEM_RESPONSES)


@router.get(
    "/v1/residents/{resident_id}/care-plan",
    response_model=CarePlanOut,
    summary="The resident's care plan (defaults where the plan is silent)",
)
def get_care_plan(conn: Db, grant: Annotated[ResidentGrant, Depends(resident_access(Category.NOTES))]) -> CarePlanOut:
    row = store.care_plan(conn, grant.resident_id)
    stored: dict[str, Any] | None = row["plan"] if row else None
    plan = CarePlan.from_dict(grant.resident_id, stored).to_dict()
    meta = {k: row[k] for k in ("version", "updated_at", "updated_by")} if row else {}
    return CarePlanOut(resident_id=grant.resident_id, plan=plan, **meta)


@router.put(
    "/v1/residents/{resident_id}/care-plan",
    response_model=CarePlanOut,
    summary="Replace the resident's care plan",
    description="Stored as `CarePlan.to_dict()`; omitted fields take the product defaults.",
)
def put_care_plan(
    body: CarePlanBody,
    conn: Db,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.NOTES, write=True))],
) -> CarePlanOut:
    given = body.model_dump(exclude_none=True)
    try:
        plan = CarePlan.from_dict(grant.resident_id, given)
        doc = plan.to_dict()
    except (ValueError, TypeError, KeyError) as e:
        raise ProblemError(422, f"invalid care plan: {type(e).__name__}: {e}", slug="validation") from None
    row = store.put_care_plan(conn, grant.resident_id, doc, grant.ctx.user_id)
    return CarePlanOut(
        resident_id=grant.resident_id,
        plan=doc,
        version=row["version"] if row else None,
        updated_at=row["updated_at"] if row else None,
        updated_by=grant.ctx.user_id,
    )


@router.get(
    "/v1/residents/{resident_id}/care-relations",
    response_model=list[CareRelationOut],
    summary="The resident's care relations (care team)",
)
def resident_relations(
    conn: Db, grant: Annotated[ResidentGrant, Depends(resident_access(Category.IDENTITY))]
) -> list[CareRelationOut]:
    return [CareRelationOut(**r) for r in store.relations_of(conn, grant.resident_id)]


@router.get(
    "/v1/care-relations",
    response_model=Page[CareRelationOut],
    summary="Care relations of the administrator's organisation",
)
def org_relations(
    request: Request,
    ctx: AdminUser,
    conn: Db,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[CareRelationOut]:
    after = decode_cursor(cursor, 1)
    rows = store.relations_of_org(conn, ctx.org_id, int(after[0]) if after else None, limit + 1)
    items = [CareRelationOut(**r) for r in rows[:limit]]
    audit_access(
        request,
        conn,
        ctx,
        resource="care-relations/list",
        resident_ids=sorted({i.resident_id for i in items}),
        purpose=Purpose.ADMINISTRATION,
    )
    return Page[CareRelationOut](items=items, next_cursor=next_cursor(rows, limit, lambda r: [r["id"]]))


@router.post(
    "/v1/care-relations",
    response_model=CareRelationOut,
    status_code=201,
    summary="Give a user a care relation to a resident (administrator of the user's organisation)",
)
def create_relation(body: CareRelationIn, ctx: AdminUser, conn: Db) -> CareRelationOut:
    if body.org_id != ctx.org_id:
        raise ProblemError(403, "Administrators create care relations for their own organisation only")
    if body.valid_to is not None and body.valid_from is not None and body.valid_to <= body.valid_from:
        raise ProblemError(422, "valid_to must be after valid_from", slug="validation")
    exists = store.resident_owner(conn, body.resident_id) is not None
    with conn.transaction():
        row = store.add_relation(conn, {**body.model_dump(), "created_by": ctx.user_id}) if exists else None
        audit.record(
            conn,
            ctx,
            action="POST /v1/care-relations",
            resource="care-relation",
            resident_id=body.resident_id,
            outcome=Outcome.ALLOWED if row else Outcome.DENIED,
            purpose=Purpose.ADMINISTRATION,
            basis=f"org:{ctx.org_id}",
        )
    if row is None:
        raise ProblemError(404, "Not found")
    return CareRelationOut(**row)


@router.delete(
    "/v1/care-relations/{relation_id}",
    response_model=CareRelationOut,
    summary="End a care relation now (it stays in the record)",
)
def end_relation(relation_id: Annotated[int, Path(ge=1, le=2**62)], ctx: AdminUser, conn: Db) -> CareRelationOut:
    with conn.transaction():
        row = store.end_relation(conn, relation_id, ctx.org_id)
        audit.record(
            conn,
            ctx,
            action="DELETE /v1/care-relations/{relation_id}",
            resource=f"care-relation/{relation_id}",
            resident_id=row["resident_id"] if row else None,
            outcome=Outcome.ALLOWED if row else Outcome.DENIED,
            purpose=Purpose.ADMINISTRATION,
            basis=f"org:{ctx.org_id}",
        )
    if row is None:
        raise ProblemError(404, "Not found")
    return CareRelationOut(**row)
