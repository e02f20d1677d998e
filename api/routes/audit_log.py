"""The audit log for auditors (query, review tooling, the emergency review queue) and a resident's extract
of who looked. Reading the log is itself logged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from api import store
from api.access import Category, Outcome, Purpose
from api.deps import AuditorUser, Db, ResidentGrant, audit_access, resident_access
from api.models import AuditRow, EmergencyAccessOut, ReviewIn, ReviewOut, WhoLooked
from api.pagination import MAX_LIMIT, Page, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES, ProblemError

router = APIRouter(tags=["audit"], responses=PROBLEM_RESPONSES)

#: A resident's extract covers at least this far back (CARE-RULES: >= 3 years).
EXTRACT_YEARS = 3
Rule = Literal["emergency", "without_relation", "night_bulk"]


@router.get(
    "/v1/audit",
    response_model=Page[AuditRow],
    summary="Query the audit log (auditors), newest first",
)
def query_audit(
    request: Request,
    ctx: AuditorUser,
    conn: Db,
    user_id: Annotated[str | None, Query(max_length=128)] = None,
    org_id: Annotated[str | None, Query(max_length=64)] = None,
    resident_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[Literal["allowed", "denied"] | None, Query()] = None,
    purpose: Annotated[Literal["treatment", "emergency", "quality", "administration"] | None, Query()] = None,
    emergency: Annotated[bool | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> Page[AuditRow]:
    after = decode_cursor(cursor, 1)
    rows = store.audit_query(
        conn,
        user_id=user_id,
        org_id=org_id,
        resident_id=resident_id,
        outcome=outcome,
        purpose=purpose,
        emergency=emergency,
        since=since,
        until=until,
        before_id=int(after[0]) if after else None,
        limit=limit + 1,
    )
    audit_access(request, conn, ctx, resource="audit/query", resident_ids=None, purpose=Purpose.QUALITY)
    nxt = encode_cursor([rows[limit - 1]["id"]]) if len(rows) > limit else None
    return Page[AuditRow](items=[AuditRow(**r) for r in rows[:limit]], next_cursor=nxt)


@router.get(
    "/v1/audit/review/sample",
    response_model=list[AuditRow],
    summary="A random sample of resident accesses to review",
)
def review_sample(
    request: Request,
    ctx: AuditorUser,
    conn: Db,
    n: Annotated[int, Query(ge=1, le=200)] = 20,
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
) -> list[AuditRow]:
    rows = store.audit_random_sample(conn, n, datetime.now(UTC) - timedelta(days=days))
    audit_access(request, conn, ctx, resource="audit/review/sample", purpose=Purpose.QUALITY)
    return [AuditRow(**r) for r in rows]


@router.get(
    "/v1/audit/review/picks",
    response_model=list[AuditRow],
    summary="Rule-based picks: emergency access, access without a relation, bulk reads at night",
)
def review_picks(
    request: Request,
    ctx: AuditorUser,
    conn: Db,
    rule: Annotated[Rule, Query()],
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[AuditRow]:
    since = datetime.now(UTC) - timedelta(days=days)
    rows = store.audit_rule_pick(conn, rule, since, limit, "Europe/Stockholm")
    audit_access(request, conn, ctx, resource=f"audit/review/picks/{rule}", purpose=Purpose.QUALITY)
    return [AuditRow(**r) for r in rows]


@router.post("/v1/audit/reviews", response_model=ReviewOut, status_code=201, summary="Record a review")
def add_review(request: Request, body: ReviewIn, ctx: AuditorUser, conn: Db) -> ReviewOut:
    row = store.add_review(conn, {**body.model_dump(), "reviewer": ctx.user_id})
    audit_access(request, conn, ctx, resource=f"audit/review/{row['id']}", purpose=Purpose.QUALITY)
    return ReviewOut(**row)


@router.get("/v1/audit/reviews", response_model=list[ReviewOut], summary="Recorded reviews, newest first")
def list_reviews(
    request: Request, ctx: AuditorUser, conn: Db, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100
) -> list[ReviewOut]:
    rows = store.reviews(conn, limit)
    audit_access(request, conn, ctx, resource="audit/reviews", purpose=Purpose.QUALITY)
    return [ReviewOut(**r) for r in rows]


@router.get(
    "/v1/audit/emergency-queue",
    response_model=list[EmergencyAccessOut],
    summary="Emergency accesses awaiting review (entered automatically)",
)
def emergency_queue(
    request: Request,
    ctx: AuditorUser,
    conn: Db,
    status: Annotated[Literal["pending", "approved", "flagged"] | None, Query()] = "pending",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[EmergencyAccessOut]:
    rows = store.emergency_queue(conn, status, limit)
    audit_access(request, conn, ctx, resource="audit/emergency-queue", resident_ids=None, purpose=Purpose.QUALITY)
    return [EmergencyAccessOut(**r) for r in rows]


@router.post(
    "/v1/audit/emergency-queue/{emergency_id}",
    response_model=EmergencyAccessOut,
    summary="Close an emergency access's review (approved or flagged)",
)
def review_emergency(
    request: Request,
    emergency_id: Annotated[int, Path(ge=1, le=2**62)],
    verdict: Annotated[Literal["approved", "flagged"], Query()],
    ctx: AuditorUser,
    conn: Db,
) -> EmergencyAccessOut:
    row = store.set_emergency_review(conn, emergency_id, verdict)
    audit_access(
        request,
        conn,
        ctx,
        resource=f"audit/emergency/{emergency_id}",
        outcome=Outcome.ALLOWED if row else Outcome.DENIED,
        purpose=Purpose.QUALITY,
    )
    if row is None:
        raise ProblemError(404, "Not found")
    store.add_review(
        conn,
        {
            "reviewer": ctx.user_id,
            "picked_by": "rule:emergency",
            "audit_ids": [],
            "verdict": "ok" if verdict == "approved" else "unjustified",
            "note": f"emergency access {emergency_id} {verdict}",
        },
    )
    return EmergencyAccessOut(**row)


@router.get(
    "/v1/residents/{resident_id}/audit-extract",
    response_model=list[WhoLooked],
    summary="The resident's extract of who looked: organisation, unit and time (at least 3 years)",
    description="For the resident or their representative, handed out by staff with a care relation.",
)
def who_looked(
    conn: Db,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.IDENTITY))],
    years: Annotated[int, Query(ge=1, le=10)] = EXTRACT_YEARS,
) -> list[WhoLooked]:
    since = datetime.now(UTC) - timedelta(days=365 * max(years, EXTRACT_YEARS) + 1)
    return [WhoLooked(**r) for r in store.who_looked(conn, grant.resident_id, since)]
