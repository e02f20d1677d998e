"""Alerts: the list the caller may see, one alert, the nurse's actions (acknowledge, accept, dismiss with a
reason, resolve with an outcome, comment), the live stream (SSE) and response statistics."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic_core import to_json

from api import store
from api.access import (
    AGGREGATE_ROLES,
    Category,
    Decision,
    Purpose,
    Role,
    UserContext,
    alert_view,
    decide,
    read_scope,
)
from api.audit import REQUEST_ID
from api.deps import CurrentUser, Db, audit_access, audit_access_async, audit_shown, gate, gate_async, get_state
from api.models import ActionResult, Alert, CommentIn, DismissIn, ResolveIn
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, next_cursor
from api.problems import PROBLEM_RESPONSES, ProblemError

router = APIRouter(tags=["alerts"], responses=PROBLEM_RESPONSES)

AlertId = Annotated[int, Path(ge=1, le=2**62, examples=[1042])]
Status = Literal["proposed", "acknowledged", "accepted", "dismissed", "resolved", "open"]


#: Alert's optional fields and their defaults (what the model adds to a row that lacks them).
_ALERT_DEFAULTS: dict[str, Any] = {name: f.default for name, f in Alert.model_fields.items() if not f.is_required()}


def alert_item(ctx: UserContext, row: dict[str, Any]) -> dict[str, Any]:
    """The alert as ``Alert(**alert_view(ctx, row))`` serialises, without building the model (a page of 50
    models cost more CPU than the rest of the request's Python together)."""
    return {**_ALERT_DEFAULTS, **alert_view(ctx, row)}


def _page_response(items: list[dict[str, Any]], cursor: str | None, restricted: bool = False) -> Response:
    """A ``Page[Alert]`` as JSON, serialised once by pydantic-core."""
    return Response(
        to_json({"items": items, "next_cursor": cursor, "restricted": restricted}), media_type="application/json"
    )


def _rows_response(rows: list[dict[str, Any]], ctx: UserContext, limit: int, restricted: bool = False) -> Response:
    """The page of these rows: their items' JSON as PostgreSQL built it (``ITEM``), passed through as they are;
    rows of the default select list (every column) serialised by :func:`_page_response`."""
    cursor = next_cursor(rows, limit, lambda r: [str(r["sort_at"]), int(r["id"])])
    if rows and ITEM not in rows[0]:
        return _page_response([alert_item(ctx, r) for r in rows[:limit]], cursor, restricted)
    body = (
        '{"items":['
        + ",".join(r[ITEM] for r in rows[:limit])
        + '],"next_cursor":'
        + ("null" if cursor is None else to_json(cursor).decode())
        + ',"restricted":'
        + ("true" if restricted else "false")
        + "}"
    )
    return Response(body.encode(), media_type="application/json")


#: The column of the item's JSON text in a row of :func:`_item_select`'s select list.
ITEM = "item_json"


class _Column:
    """A placeholder for a column's value, to see where :func:`alert_item` puts it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _item_fields(ctx: UserContext, types: dict[str, str], clinical_family: bool) -> list[Any] | None:
    """The fields of the item :func:`alert_item` makes for ``ctx`` of a row of these columns, in its order: a
    column's value as (key, SQL expression, type), a constant as (key, its JSON, None). None when a column's type
    has no JSON of PostgreSQL's equal to pydantic-core's (then the list serialises in Python)."""
    row: dict[str, Any] = {name: _Column(name) for name in types}
    if clinical_family:
        row["family"] = "clinical"
    fields: list[Any] = []
    for key, value in alert_item(ctx, row).items():
        if isinstance(value, _Column):
            if types[value.name] not in store.JSON_SAME_TYPES:
                return None
            expr = f"a.{store.ALERT_TIME}" if value.name == "sort_at" else 'a."' + value.name.replace('"', '""') + '"'
            fields.append((to_json(key).decode(), expr, types[value.name]))
        elif key == "family" and value == "clinical":
            return None  # the view did not hide this clinical alert: not the two views this module knows
        else:
            fields.append((to_json(key).decode(), to_json(value).decode(), None))
    return fields


#: Per process: the select list of the page's rows (id, resident, sort key and the item's JSON), by whether the
#: caller has CLINICAL scope (None: serialise in Python).
_ITEM_SELECT: dict[bool, str | None] = {}


def _item_select(conn: Any, ctx: UserContext) -> str | None:
    """The select list that lets PostgreSQL build each item's JSON exactly as :func:`alert_item` and pydantic-core
    would (same keys in the same order, same values; the clinical family's "needs a visit" view without CLINICAL
    scope, as :func:`api.access.alert_view`). Built once per process from the ``alerts`` table's columns."""
    clinical = Category.CLINICAL in read_scope(ctx)
    if clinical in _ITEM_SELECT:
        return _ITEM_SELECT[clinical]
    types = dict(store.alert_columns(conn))
    types["sort_at"] = types.get(store.ALERT_TIME, "")
    full = _item_fields(ctx, types, clinical_family=False)
    summary = None if clinical else _item_fields(ctx, types, clinical_family=True)
    select: str | None = None
    if full is not None and (clinical or summary is not None):
        item = store.json_object_sql(full)
        if summary is not None:
            item = (
                "CASE WHEN a.family IS DISTINCT FROM 'clinical' THEN "
                + item
                + " ELSE "
                + store.json_object_sql(summary)
                + " END"
            )
        select = f"a.id, a.resident_id, a.{store.ALERT_TIME} AS sort_at, ({item}) AS {ITEM}"
    _ITEM_SELECT[clinical] = select
    return select


def _load_page(
    request: Request,
    ctx: UserContext,
    candidates: list[str] | None,
    status: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    after: list[Any] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """The page's rows, audited (blocking database work: run in a worker thread).

    One pooled connection, held only for the two queries and the audit append (one row per resident shown, a
    short transaction of its own, durable when this returns; not while the request serialises and sends), all
    in one worker-thread hop."""
    with get_state(request).pool.connection() as conn:
        rows, allowed, restricted = _query_page(
            request, conn, ctx, candidates, status, kind, severity, since, after, limit, _item_select(conn, ctx)
        )
        shown = sorted({str(r["resident_id"]) for r in rows[:limit]})
        audit_shown(
            request,
            conn,
            ctx,
            resource="alerts/list",
            resident_ids=shown,
            purpose=Purpose.TREATMENT,
            bases={rid: allowed[rid].basis for rid in shown},
            emergency_ids={rid for rid in shown if allowed[rid].emergency},
        )
    return rows, restricted


def _query_page(
    request: Request,
    conn: Any,
    ctx: UserContext,
    candidates: list[str] | None,
    status: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    after: list[Any] | None,
    limit: int,
    select: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Decision], bool]:
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] | None = None
    if candidates is None:
        # One round trip: the caller's reach with the facts the policy reads for this caller, and the alerts of
        # that whole reach (kept below only if the policy allows every resident they are of).
        facts, rows = store.caller_facts_and_alerts(
            conn, ctx.user_id, ctx.org_id, status, kind, severity, since, after, limit + 1, select
        )
    else:
        facts = store.caller_facts(conn, ctx.user_id, ctx.org_id, candidates)
    allowed: dict[str, Decision] = {}
    restricted = False
    show_marker = get_state(request).settings.api_restricted_marker
    for rid, f in facts.items():
        d = decide(ctx, f, Category.ALERTS, now, show_restricted_marker=show_marker)
        if d.allowed:
            allowed[rid] = d
        restricted = restricted or d.restricted_marker
    if rows is None or any(str(r["resident_id"]) not in allowed for r in rows):
        rows = store.alerts_for(conn, list(allowed), status, kind, severity, since, after, limit + 1, select)
    return rows, allowed, restricted


async def _page(
    request: Request,
    ctx: UserContext,
    candidates: list[str] | None,
    *,
    status: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    cursor: str | None,
    limit: int,
) -> Any:
    after = decode_cursor(cursor, 2)
    # One worker-thread hop for the queries and the audit rows (they may wait on a busy database without
    # stalling the event loop); the rows are durable when it returns.
    rows, restricted = await anyio.to_thread.run_sync(
        _load_page, request, ctx, candidates, status, kind, severity, since, after, limit
    )
    return _rows_response(rows, ctx, limit, restricted)


@router.get(
    "/v1/alerts",
    response_model=Page[Alert],
    summary="Alerts of the residents the caller may see (newest first)",
    description="Clinical-family alerts appear to users without the clinical scope (home care) as a neutral "
    "'needs a visit'. `restricted` is true when blocked data exist that are not shown.",
)
async def list_alerts(
    request: Request,
    ctx: CurrentUser,
    status: Annotated[Status | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    severity: Annotated[Literal["critical", "high", "medium", "low"] | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Any:
    if ctx.role is Role.AUDITOR or ctx.role is Role.ADMIN:
        raise ProblemError(403, "This role reads no resident data")
    return await _page(
        request,
        ctx,
        None,
        status=status,
        kind=kind,
        severity=severity,
        since=since,
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/v1/alerts/stream",
    summary="The live alert stream (Server-Sent Events), filtered to what the caller may see",
    description="`id:` is the alert_events id; reconnect with `Last-Event-ID` to resume. Heartbeat comments "
    "keep the connection open. The subscription and every delivery are audited.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"example": 'id: 17\nevent: alert\ndata: {"alert": {}}\n\n'}}}},
)
async def alert_stream(
    request: Request,
    ctx: CurrentUser,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    if ctx.role is Role.AUDITOR or ctx.role is Role.ADMIN:
        raise ProblemError(403, "This role reads no resident data")
    resume: int | None = None
    if last_event_id:
        if not last_event_id.isdigit():
            raise ProblemError(400, "Last-Event-ID must be an alert event id")
        resume = int(last_event_id)
    state = get_state(request)
    await _audit_subscription(request, ctx)
    body = state.stream.subscribe(ctx, REQUEST_ID.get(), resume)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _audit_subscription(request: Request, ctx: UserContext) -> None:
    await audit_access_async(request, ctx, resource="alerts/stream/subscribe", purpose=Purpose.TREATMENT)


@router.get(
    "/v1/statistics/response",
    response_model=list[dict[str, Any]],
    summary="Response times per organisation, kind and severity (aggregated, pseudonymous)",
)
def response_statistics(
    request: Request,
    ctx: CurrentUser,
    conn: Db,
    since: Annotated[datetime | None, Query()] = None,
) -> list[dict[str, Any]]:
    if ctx.role not in AGGREGATE_ROLES:
        raise ProblemError(403, "Aggregated figures are for coordinators and care staff")
    rows = store.response_stats(conn, ctx.org_id, since)
    audit_access(request, conn, ctx, resource="statistics/response", purpose=Purpose.QUALITY)
    return rows


@router.get(
    "/v1/residents/{resident_id}/alerts",
    response_model=Page[Alert],
    summary="One resident's alerts (newest first)",
)
async def resident_alerts(
    request: Request,
    ctx: CurrentUser,
    conn: Db,
    resident_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")],
    status: Annotated[Status | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Any:
    grant = await gate_async(request, ctx, conn, resident_id, Category.ALERTS)
    after = decode_cursor(cursor, 2)

    def load() -> list[dict[str, Any]]:
        return store.alerts_for(
            conn, [grant.resident_id], status, None, None, None, after, limit + 1, _item_select(conn, ctx)
        )

    return _rows_response(await anyio.to_thread.run_sync(load), ctx, limit)


@router.get("/v1/alerts/{alert_id}", response_model=Alert, summary="One alert, with its lifecycle history")
def get_alert(request: Request, alert_id: AlertId, ctx: CurrentUser, conn: Db) -> Alert:
    alert = store.alert(conn, alert_id)
    gate(request, ctx, conn, alert["resident_id"] if alert else None, Category.ALERTS, resource=f"alert/{alert_id}")
    assert alert is not None
    view = alert_view(ctx, alert)
    if not view.get("summary_only"):
        view["history"] = store.alert_history(conn, alert_id)
    return Alert(**view)


def _act(request: Request, ctx: UserContext, conn: Any, alert_id: int, action: str, *args: Any) -> ActionResult:
    """Gate (write on the alert's resident, audited), then the alert service's action function."""
    alert = store.alert(conn, alert_id)
    category = Category.NOTES if action == "comment" else Category.ALERTS
    gate(
        request,
        ctx,
        conn,
        alert["resident_id"] if alert else None,
        category,
        write=True,
        resource=f"alert/{alert_id}/{action}",
    )
    try:
        # The alert service owns the lifecycle: one transaction writes the alert, its event and any feedback.
        actions: Any = importlib.import_module("alerts.actions")
    except ImportError:
        raise ProblemError(503, "The alert service's actions are not installed") from None
    actor = actions.Actor(user_id=ctx.user_id, org_id=ctx.org_id, role=str(ctx.role))
    try:
        getattr(actions, action)(conn, alert_id, actor, *args)
    except actions.AlertNotFound:
        raise ProblemError(404, "Not found") from None
    except actions.InvalidTransition as e:
        raise ProblemError(409, f"Not possible in the alert's current state: {e}", slug="invalid-transition") from None
    after = store.alert(conn, alert_id) or {}
    return ActionResult(alert_id=alert_id, status=after.get("status"))


@router.post("/v1/alerts/{alert_id}/acknowledge", response_model=ActionResult, summary="Acknowledge: I am on it")
def acknowledge(request: Request, alert_id: AlertId, ctx: CurrentUser, conn: Db) -> ActionResult:
    return _act(request, ctx, conn, alert_id, "acknowledge")


@router.post("/v1/alerts/{alert_id}/accept", response_model=ActionResult, summary="Accept: the alert is right")
def accept(request: Request, alert_id: AlertId, ctx: CurrentUser, conn: Db) -> ActionResult:
    return _act(request, ctx, conn, alert_id, "accept")


@router.post("/v1/alerts/{alert_id}/dismiss", response_model=ActionResult, summary="Dismiss with a reason")
def dismiss(request: Request, alert_id: AlertId, body: DismissIn, ctx: CurrentUser, conn: Db) -> ActionResult:
    return _act(request, ctx, conn, alert_id, "dismiss", body.reason)


@router.post(
    "/v1/alerts/{alert_id}/resolve",
    response_model=ActionResult,
    summary="Resolve with an outcome (true incident, false alarm, no action needed)",
    description="The outcome goes back to the stream worker as feedback (through the alert service's outbox).",
)
def resolve(request: Request, alert_id: AlertId, body: ResolveIn, ctx: CurrentUser, conn: Db) -> ActionResult:
    return _act(request, ctx, conn, alert_id, "resolve", body.outcome, body.comment)


@router.post("/v1/alerts/{alert_id}/comments", response_model=ActionResult, status_code=201, summary="Comment")
def comment(request: Request, alert_id: AlertId, body: CommentIn, ctx: CurrentUser, conn: Db) -> ActionResult:
    return _act(request, ctx, conn, alert_id, "comment", body.text)
