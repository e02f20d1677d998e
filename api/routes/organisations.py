"""Organisations: municipalities (kommun) and regions. No resident data."""

from __future__ import annotations

from fastapi import APIRouter

from api import store
from api.deps import CurrentUser, Db
from api.models import Organisation
from api.problems import PROBLEM_RESPONSES, ProblemError

router = APIRouter(prefix="/v1/organisations", tags=["organisations"], responses=PROBLEM_RESPONSES)


@router.get("", response_model=list[Organisation], summary="All organisations in the care chain")
def list_organisations(ctx: CurrentUser, conn: Db) -> list[Organisation]:
    return [Organisation(**r) for r in store.organisations(conn)]


@router.get("/{org_id}", response_model=Organisation, summary="One organisation")
def get_organisation(org_id: str, ctx: CurrentUser, conn: Db) -> Organisation:
    for r in store.organisations(conn):
        if r["id"] == org_id:
            return Organisation(**r)
    raise ProblemError(404, "Not found")
