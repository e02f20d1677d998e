"""A resident's readings: raw and bucketed timelines, medication events, activity and vitals summaries, and
detector scores (clinical). Each route passes the resident gate for its data category."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api import store
from api.access import Category
from api.deps import CurrentUser, Db, ResidentGrant, ResidentId, gate_and_load, get_state, resident_access
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, next_cursor
from api.problems import PROBLEM_RESPONSES, ProblemError

router = APIRouter(prefix="/v1/residents/{resident_id}", tags=["observations"], responses=PROBLEM_RESPONSES)

INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
}
MAX_BUCKETS = 20_000
Since = Annotated[datetime | None, Query(description="from (default: 24 h ago; 30 days for summaries)")]
Until = Annotated[datetime | None, Query(description="until (default: now)")]
Kind = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$", examples=["heart_rate"])]


def _window(since: datetime | None, until: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC)
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    since = since or until - default
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if since >= until:
        raise ProblemError(422, "since must be before until", slug="validation")
    if until - since > timedelta(days=400):
        raise ProblemError(422, "the window may span at most 400 days", slug="validation")
    return since, until


def _raw(
    conn: Any,
    resident_id: str,
    since: datetime | None,
    until: datetime | None,
    kind: str | None,
    medication: bool,
    cursor: str | None,
    limit: int,
) -> Page[dict[str, Any]]:
    lo, hi = _window(since, until, timedelta(days=1))
    after = decode_cursor(cursor, 2)
    rows = store.observations_raw(conn, resident_id, lo, hi, kind, medication, after, limit + 1)
    return Page[dict[str, Any]](
        items=rows[:limit], next_cursor=next_cursor(rows, limit, lambda r: [r["ts"].isoformat(), str(r["event_id"])])
    )


@router.get(
    "/observations",
    response_model=Page[dict[str, Any]],
    summary="Raw sensor readings (newest first), excluding medication events",
)
def raw_observations(
    conn: Db,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.SENSOR_EVENTS))],
    since: Since = None,
    until: Until = None,
    kind: Kind = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[dict[str, Any]]:
    if kind and kind.startswith("medication"):
        raise ProblemError(422, "medication events are at /medication", slug="validation")
    return _raw(conn, grant.resident_id, since, until, kind, False, cursor, limit)


@router.get(
    "/medication",
    response_model=Page[dict[str, Any]],
    summary="Medication-robot events: doses due, dispensed, taken, missed; faults; refills",
)
def medication_events(
    conn: Db,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.MEDICATION))],
    since: Since = None,
    until: Until = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[dict[str, Any]]:
    return _raw(conn, grant.resident_id, since, until, None, True, cursor, limit)


@router.get(
    "/timeline",
    response_model=list[dict[str, Any]],
    summary="Readings bucketed by an interval (count, min, avg, max per kind and bucket), local wall clock",
)
async def timeline(
    request: Request,
    ctx: CurrentUser,
    resident_id: ResidentId,
    interval: Annotated[str, Query(pattern=r"^(1m|5m|15m|1h|6h|1d)$")] = "1h",
    since: Since = None,
    until: Until = None,
    kind: Kind = None,
) -> Any:
    state = get_state(request)
    step = INTERVALS[interval]

    def load(conn: Any) -> bytes:
        lo, hi = _window(since, until, timedelta(days=30))
        if (hi - lo) / step > MAX_BUCKETS:
            raise ProblemError(422, f"too many buckets; at most {MAX_BUCKETS}", slug="validation")
        # Closed buckets come from the process's cache, the edges from PostgreSQL (api/timeline.py).
        return state.timelines.bucketed_json(conn, resident_id, lo, hi, step, kind, state.settings.timezone)

    # The gate's decision, its audit row and the query in one worker-thread hop; no connection held meanwhile.
    _, body = await gate_and_load(request, ctx, resident_id, Category.SENSOR_EVENTS, load)
    return Response(body, media_type="application/json")


@router.get(
    "/activity",
    response_model=list[dict[str, Any]],
    summary="Activity per hour and room (motion, door, bed events)",
)
def activity(
    conn: Db,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.SENSOR_EVENTS))],
    since: Since = None,
    until: Until = None,
) -> list[dict[str, Any]]:
    lo, hi = _window(since, until, timedelta(days=7))
    return store.activity_summary(conn, grant.resident_id, lo, hi)


@router.get(
    "/vitals",
    response_model=list[dict[str, Any]],
    summary="Vitals over time: hourly min, avg and max of heart rate, SpO2 and temperature",
)
def vitals(
    conn: Db,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.SENSOR_EVENTS))],
    since: Since = None,
    until: Until = None,
) -> list[dict[str, Any]]:
    lo, hi = _window(since, until, timedelta(days=7))
    return store.vitals_summary(conn, grant.resident_id, lo, hi)


@router.get(
    "/scores",
    response_model=list[dict[str, Any]],
    summary="Detector scores (clinical risk models; not for home care)",
)
def scores(
    conn: Db,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.CLINICAL))],
    since: Since = None,
    until: Until = None,
) -> list[dict[str, Any]]:
    lo, hi = _window(since, until, timedelta(days=7))
    return store.detector_scores(conn, grant.resident_id, lo, hi)
