"""The nurses' web page: static files served by the API (no build step, no CDN).

``GET /`` is the page, ``GET /static/...`` its script, style and translations.
``GET /v1/statistics/medication-robot`` is the one figure the coordinator
overview needs that no other route gives: doses handled by the robots, i.e.
nurse rounds saved (aggregated and pseudonymous, like the response statistics).
``GET /demo/tokens`` lists ready-made tokens only when the embedded demo put
them on ``app.state.demo_tokens``; elsewhere it is 404, so production never
hands out credentials.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from api import web_store
from api.access import AGGREGATE_ROLES, Purpose
from api.deps import CurrentUser, Db, audit_access
from api.problems import PROBLEM_RESPONSES, ProblemError

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

_MEDIA = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

#: Everything the page needs comes from this origin; no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter()


def _file(path: Path) -> FileResponse:
    media = _MEDIA.get(path.suffix)
    if media is None or not path.is_file():
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(path, media_type=media, headers=SECURITY_HEADERS)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page itself."""
    return _file(WEB_DIR / "index.html")


@router.get("/static/{name:path}", include_in_schema=False)
def static(name: str) -> FileResponse:
    """A static file of the page; paths outside api/web/ are refused."""
    target = (WEB_DIR / name).resolve()
    if not target.is_relative_to(WEB_DIR):
        raise HTTPException(status_code=404, detail="not found")
    return _file(target)


@router.get("/demo/tokens", include_in_schema=False)
def demo_tokens(request: Request) -> JSONResponse:
    """Ready tokens of the embedded demo (``app.state.demo_tokens``); 404 outside the demo."""
    tokens: list[dict[str, Any]] | None = getattr(request.app.state, "demo_tokens", None)
    if not tokens:
        raise HTTPException(status_code=404, detail="no demo tokens")
    return JSONResponse({"items": tokens}, headers={"Cache-Control": "no-store"})


class RobotDoses(BaseModel):
    """Medication doses the robots handled for the caller's organisation."""

    org_id: str = Field(examples=["kommun-a"])
    since: datetime
    until: datetime
    doses_taken: int = Field(examples=[1234], description="doses taken with the robot")
    doses_missed: int = Field(examples=[12], description="doses the robot reported not taken")
    residents: int = Field(examples=[40], description="residents with robot doses in the window")
    rounds_saved: int = Field(
        examples=[1234], description="nurse medication rounds not needed: one per dose the robot handled"
    )


@router.get(
    "/v1/statistics/medication-robot",
    response_model=RobotDoses,
    tags=["alerts"],
    summary="Doses handled by medication robots = nurse rounds saved (aggregated, pseudonymous)",
    responses=PROBLEM_RESPONSES,
)
def medication_robot(
    request: Request,
    ctx: CurrentUser,
    conn: Db,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
) -> RobotDoses:
    """Counts for the caller's own organisation; audited as a quality read without resident data."""
    if ctx.role not in AGGREGATE_ROLES:
        raise ProblemError(403, "Aggregated figures are for coordinators and care staff")
    hi = until or datetime.now(UTC)
    lo = since or hi - timedelta(days=28)
    if lo.tzinfo is None or hi.tzinfo is None:
        raise ProblemError(422, "since and until need a UTC offset", slug="validation")
    if lo >= hi or hi - lo > timedelta(days=400):
        raise ProblemError(422, "since must be before until, at most 400 days apart", slug="validation")
    figures = web_store.robot_doses(conn, ctx.org_id, lo, hi)
    audit_access(request, conn, ctx, resource="statistics/medication-robot", purpose=Purpose.QUALITY)
    return RobotDoses(org_id=ctx.org_id, since=lo, until=hi, rounds_saved=figures["doses_taken"], **figures)
