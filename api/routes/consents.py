"""Consents: the home's monitoring consent (resident and everyone living there), sharing consent between
municipality and region per reading unit, and the resident's blocks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from api import audit, store
from api.access import Category, Decision, Outcome, UserContext, may_record_consent
from api.deps import AdminUser, CurrentUser, Db, ResidentGrant, action_name, resident_access
from api.models import (
    BlockIn,
    BlockOut,
    MonitoringConsentIn,
    MonitoringConsentOut,
    MonitoringStatus,
    SharingConsentIn,
    SharingConsentOut,
)
from api.problems import PROBLEM_RESPONSES, ProblemError

router = APIRouter(tags=["consents"], responses=PROBLEM_RESPONSES)

ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
HomeId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
RowId = Annotated[int, Path(ge=1, le=2**62)]


def _consent_gate(
    request: Request, ctx: UserContext, conn: Any, resident_id: str, resource: str, reader_org_id: str | None = None
) -> tuple[Decision, str]:
    """Decide who may record/withdraw consents and blocks, and audit it (denials included)."""
    facts = store.resident_facts(conn, resident_id)
    d = may_record_consent(ctx, facts, datetime.now(UTC), reader_org_id)
    audit.record(
        conn,
        ctx,
        action=action_name(request),
        resource=resource,
        resident_id=resident_id,
        outcome=d.outcome,
        purpose=d.purpose,
        basis=d.basis,
    )
    if not d.allowed:
        raise ProblemError(d.status, "Not found" if d.status == 404 else "Not permitted")
    assert facts is not None
    return d, facts.owner_org_id


@router.get(
    "/v1/residents/{resident_id}/sharing-consents",
    response_model=list[SharingConsentOut],
    summary="The resident's sharing consents and disclosures",
)
def list_sharing(
    conn: Db, grant: Annotated[ResidentGrant, Depends(resident_access(Category.IDENTITY))]
) -> list[SharingConsentOut]:
    return [SharingConsentOut(**r) for r in store.sharing_consents_of(conn, grant.resident_id)]


@router.post(
    "/v1/residents/{resident_id}/sharing-consents",
    response_model=SharingConsentOut,
    status_code=201,
    summary="Record the resident's consent to share with a reading organisation/unit (or a disclosure)",
    description="Time-limited, with who recorded it and how. When the resident cannot decide, legal_basis "
    "`documented_basis` with the basis written in basis_note.",
)
def add_sharing(
    request: Request, resident_id: ResidentId, body: SharingConsentIn, ctx: CurrentUser, conn: Db
) -> SharingConsentOut:
    if body.legal_basis == "documented_basis" and not body.basis_note:
        raise ProblemError(422, "documented_basis needs the basis in basis_note", slug="validation")
    if body.valid_from is not None and body.valid_to <= body.valid_from:
        raise ProblemError(422, "valid_to must be after valid_from", slug="validation")
    if body.valid_to <= datetime.now(UTC):
        raise ProblemError(422, "valid_to must be in the future", slug="validation")
    # The decision is audited on its own (a denial must not roll back with the write).
    _, owner = _consent_gate(request, ctx, conn, resident_id, "resident/sharing-consent", body.reader_org_id)
    with conn.transaction():
        row = store.add_sharing_consent(
            conn,
            {
                **body.model_dump(),
                "categories": list(body.categories),
                "resident_id": resident_id,
                "owner_org_id": owner,
                "recorded_by": ctx.user_id,
            },
        )
    return SharingConsentOut(**row)


@router.post(
    "/v1/residents/{resident_id}/sharing-consents/{consent_id}/withdraw",
    response_model=SharingConsentOut,
    summary="Withdraw a sharing consent (takes effect at once)",
)
def withdraw_sharing(
    request: Request, resident_id: ResidentId, consent_id: RowId, ctx: CurrentUser, conn: Db
) -> SharingConsentOut:
    _consent_gate(request, ctx, conn, resident_id, f"resident/sharing-consent/{consent_id}")
    with conn.transaction():
        row = store.withdraw_sharing_consent(conn, resident_id, consent_id, ctx.user_id)
    if row is None:
        raise ProblemError(404, "Not found")
    return SharingConsentOut(**row)


@router.get("/v1/residents/{resident_id}/blocks", response_model=list[BlockOut], summary="The resident's blocks")
def list_blocks(
    conn: Db, grant: Annotated[ResidentGrant, Depends(resident_access(Category.IDENTITY))]
) -> list[BlockOut]:
    return [BlockOut(**r) for r in store.blocks_of(conn, grant.resident_id)]


@router.post(
    "/v1/residents/{resident_id}/blocks",
    response_model=BlockOut,
    status_code=201,
    summary="Record a block: a category (for readers outside the owner) or an organisation/unit",
)
def add_block(request: Request, resident_id: ResidentId, body: BlockIn, ctx: CurrentUser, conn: Db) -> BlockOut:
    if body.category is None and body.org_id is None and body.unit is None:
        raise ProblemError(422, "a block needs a category, an organisation or a unit", slug="validation")
    _consent_gate(request, ctx, conn, resident_id, "resident/block")
    with conn.transaction():
        row = store.add_block(
            conn, {**body.model_dump(), "resident_id": resident_id, "valid_from": None, "created_by": ctx.user_id}
        )
    return BlockOut(**row)


@router.post(
    "/v1/residents/{resident_id}/blocks/{block_id}/lift",
    response_model=BlockOut,
    summary="Lift a block",
)
def lift_block(request: Request, resident_id: ResidentId, block_id: RowId, ctx: CurrentUser, conn: Db) -> BlockOut:
    _consent_gate(request, ctx, conn, resident_id, f"resident/block/{block_id}")
    with conn.transaction():
        row = store.lift_block(conn, resident_id, block_id, ctx.user_id)
    if row is None:
        raise ProblemError(404, "Not found")
    return BlockOut(**row)


# --- monitoring consent (the home) ------------------------------------------------------------


def _home_of_admin(conn: Any, ctx: UserContext, home_id: str) -> dict[str, Any]:
    home = store.home(conn, home_id)
    if home is None or ctx.org_id not in (home["kommun_org_id"], home["region_org_id"]):
        raise ProblemError(404, "Not found")
    return home


@router.get(
    "/v1/homes/{home_id}/monitoring-consents",
    response_model=list[MonitoringConsentOut],
    summary="Monitoring consents recorded for a home (administrator of the home's organisation)",
)
def list_monitoring_consents(home_id: HomeId, ctx: AdminUser, conn: Db) -> list[MonitoringConsentOut]:
    _home_of_admin(conn, ctx, home_id)
    return [MonitoringConsentOut(**r) for r in store.monitoring_consents(conn, home_id)]


@router.post(
    "/v1/homes/{home_id}/monitoring-consents",
    response_model=MonitoringConsentOut,
    status_code=201,
    summary="Record the monitoring consent of the resident or of a person living with them",
    description="The home's monitoring starts only when the resident and every person living there have a valid "
    "consent (or, for someone who cannot decide, a documented basis); see GET /v1/homes/{home_id}/monitoring.",
)
def add_monitoring_consent(
    request: Request, home_id: HomeId, body: MonitoringConsentIn, ctx: AdminUser, conn: Db
) -> MonitoringConsentOut:
    _home_of_admin(conn, ctx, home_id)
    if body.basis == "documented_basis" and not body.basis_note:
        raise ProblemError(422, "documented_basis needs the basis in basis_note", slug="validation")
    with conn.transaction():
        row = store.add_monitoring_consent(conn, home_id, {**body.model_dump(), "recorded_by": ctx.user_id})
        audit.record(
            conn,
            ctx,
            action=action_name(request),
            resource=f"home/{home_id}/monitoring-consent",
            resident_id=body.subject_ref if body.subject == "resident" else None,
            outcome=Outcome.ALLOWED,
            purpose="administration",
            basis=f"org:{ctx.org_id}",
        )
    return MonitoringConsentOut(**row)


@router.post(
    "/v1/homes/{home_id}/monitoring-consents/{consent_id}/withdraw",
    response_model=MonitoringConsentOut,
    summary="Withdraw a monitoring consent: the bridge discards the home's readings from now on (logged)",
)
def withdraw_monitoring_consent(
    request: Request, home_id: HomeId, consent_id: RowId, ctx: AdminUser, conn: Db
) -> MonitoringConsentOut:
    _home_of_admin(conn, ctx, home_id)
    with conn.transaction():
        row = store.withdraw_monitoring_consent(conn, home_id, consent_id, ctx.user_id)
        audit.record(
            conn,
            ctx,
            action=action_name(request),
            resource=f"home/{home_id}/monitoring-consent/{consent_id}/withdraw",
            resident_id=row["subject_ref"] if row and row["subject"] == "resident" else None,
            outcome=Outcome.ALLOWED if row else Outcome.DENIED,
            purpose="administration",
            basis=f"org:{ctx.org_id}",
        )
    if row is None:
        raise ProblemError(404, "Not found")
    return MonitoringConsentOut(**row)


@router.get(
    "/v1/homes/{home_id}/monitoring",
    response_model=MonitoringStatus,
    summary="Is the home monitored? Whose consent is still missing?",
)
def monitoring_status(home_id: HomeId, ctx: AdminUser, conn: Db) -> MonitoringStatus:
    _home_of_admin(conn, ctx, home_id)
    return MonitoringStatus(**store.monitoring_status(conn, home_id))
