"""FastAPI dependencies: who is asking (:func:`get_current_user`), the database (:func:`get_db`), and
:func:`resident_access` — the one gate every resident route passes, which decides and audits.

A route reads as: who is asking, may they, do it, log it — and the last two
cannot be forgotten because the dependency does them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio.to_thread
import psycopg
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import Connection
from psycopg_pool import ConnectionPool, PoolTimeout

from api import audit, store
from api.access import (
    AUDIT_ROLES,
    REGISTRY_ROLES,
    Category,
    Decision,
    OrgKind,
    Outcome,
    Purpose,
    Role,
    UserContext,
    decide,
)
from api.auth import AuthError
from api.problems import ProblemError
from carechain.settings import Settings

if TYPE_CHECKING:
    from api.app import ApiState

T = TypeVar("T")
_bearer = HTTPBearer(auto_error=False, description="OIDC/JWT bearer token (RS256/ES256)")
ORG_CACHE_S = 60.0
#: An idle pooled connection is handed over at once; waiting longer than this moves to a worker thread.
GETCONN_FAST_S = 0.0005


def get_state(request: Request) -> ApiState:
    """The app's state (settings, pool, validator, live stream)."""
    state: ApiState = request.app.state.api
    return state


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


def get_pool(request: Request) -> ConnectionPool:
    """The process's connection pool (autocommit connections)."""
    return get_state(request).pool


async def get_db(request: Request) -> AsyncIterator[Connection[Any]]:
    """A pooled connection in autocommit mode; use ``with conn.transaction():`` for writes.

    Async on purpose: a sync generator dependency needs a worker thread again to give the connection back,
    and with every worker thread waiting for a connection that return never comes (a pool deadlock under
    load). An idle connection is taken at once; only waiting for one uses a thread, with its own limiter.
    """
    state = get_state(request)
    pool = state.pool
    try:
        conn = pool.getconn(timeout=GETCONN_FAST_S)
    except PoolTimeout:
        assert state.getconn_limiter is not None, "the app's lifespan has not run"
        conn = await anyio.to_thread.run_sync(pool.getconn, limiter=state.getconn_limiter)
    try:
        yield conn
    finally:
        pool.putconn(conn)


Db = Annotated[Connection[Any], Depends(get_db)]


class OrgDirectory:
    """organisation id -> kind, cached briefly (the token's org_kind claim is never trusted over it)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._lock = threading.Lock()
        self._kinds: dict[str, OrgKind | None] = {}
        self._loaded_at = 0.0

    def cached(self, org_id: str) -> OrgKind | None:
        """The kind when known and fresh (no I/O)."""
        if time.monotonic() - self._loaded_at > ORG_CACHE_S:
            return None
        return self._kinds.get(org_id)

    def kind(self, org_id: str) -> OrgKind | None:
        """The kind, reloading when stale or for an organisation not seen yet (only validly signed tokens)."""
        if time.monotonic() - self._loaded_at > ORG_CACHE_S or org_id not in self._kinds:
            with self._lock:  # one reload at a time, not one per waiting request
                if time.monotonic() - self._loaded_at > ORG_CACHE_S or org_id not in self._kinds:
                    self.reload()
        return self._kinds.get(org_id)

    def reload(self) -> None:
        kinds = {k.value for k in OrgKind}
        # A connection of its own (rare: every minute): never wait for the request pool here.
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            self._kinds = {k: OrgKind(v) for k, v in store.organisation_kinds(conn).items() if v in kinds}
        self._loaded_at = time.monotonic()


async def get_current_user(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserContext:
    """The caller's context (user, organisation and its kind, unit, role, regime) from a valid bearer token.

    A call without that context is refused: 401 without a valid token, 403 for a role with no API
    access (gateways, unknown roles) or an organisation the registry does not know. Async, and without a
    worker thread when the token and the organisation are known already (the common case).
    """
    if creds is None or creds.scheme.lower() != "bearer":
        raise ProblemError(401, "A bearer token is required", extra={}) from None
    state = get_state(request)
    try:
        claims = state.validator.cached(creds.credentials)
        if claims is None and state.validator.local:
            claims = state.validator.validate(creds.credentials)  # a signature check, no I/O: inline
        elif claims is None:  # may fetch the identity provider's JWKS
            claims = await anyio.to_thread.run_sync(state.validator.validate, creds.credentials)
    except AuthError as e:
        raise ProblemError(e.status, e.detail) from None
    # No pooled connection is held for the request here (the live stream's requests last for hours).
    kind = state.orgs.cached(claims.org)
    if kind is None:
        kind = await anyio.to_thread.run_sync(state.orgs.kind, claims.org)
    if kind is None:
        raise ProblemError(403, "The token's organisation is not known: a call without context is refused")
    ctx = UserContext(
        user_id=claims.sub,
        org_id=claims.org,
        org_kind=kind,
        unit=claims.unit,
        role=Role(claims.role),
        client=claims.client,
        on_behalf_of=claims.on_behalf_of,
    )
    request.state.user = ctx
    return ctx


CurrentUser = Annotated[UserContext, Depends(get_current_user)]


def require_roles(*roles: Role) -> Callable[[UserContext], UserContext]:
    """A dependency admitting only these roles (403 otherwise)."""

    def dep(ctx: CurrentUser) -> UserContext:
        if ctx.role not in roles:
            raise ProblemError(403, f"This needs one of the roles: {', '.join(sorted(roles))}")
        return ctx

    return dep


AdminUser = Annotated[UserContext, Depends(require_roles(*REGISTRY_ROLES))]
AuditorUser = Annotated[UserContext, Depends(require_roles(*AUDIT_ROLES))]


@dataclass(frozen=True, slots=True)
class ResidentGrant:
    """What :func:`resident_access` hands a route: the allowed decision, already audited."""

    ctx: UserContext
    resident_id: str
    category: Category
    decision: Decision
    audit_id: int


def action_name(request: Request) -> str:
    """``GET /v1/residents/{resident_id}`` — the route template, never the ids."""
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


def resident_access(category: Category, *, write: bool = False) -> Callable[..., Awaitable[ResidentGrant]]:
    """The gate of every resident route: decide by the access policy and audit the outcome.

    Denied -> audit row (outcome denied) and 404 (no relation: existence is not leaked) or 403.
    Allowed -> audit row (outcome allowed, with the relation/consent/emergency basis) before any
    data leave the API.
    """

    async def dep(
        request: Request,
        ctx: CurrentUser,
        conn: Db,
        resident_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")],
    ) -> ResidentGrant:
        return await gate_async(request, ctx, conn, resident_id, category, write=write)

    return dep


def _decide_and_entry(
    request: Request,
    ctx: UserContext,
    conn: Connection[Any],
    resident_id: str | None,
    category: Category,
    write: bool,
    resource: str | None,
) -> tuple[Decision, audit.AuditEntry]:
    state = get_state(request)
    facts = store.caller_facts(conn, ctx.user_id, ctx.org_id, [resident_id]).get(resident_id) if resident_id else None
    decision = decide(
        ctx,
        facts,
        category,
        datetime.now(UTC),
        write=write,
        show_restricted_marker=state.settings_show_restricted_marker,
    )
    e = audit.entry(
        ctx,
        action=action_name(request),
        resource=resource or f"resident/{category.value}",
        resident_id=resident_id,
        outcome=decision.outcome,
        purpose=decision.purpose,
        basis=decision.basis,
        emergency=decision.emergency,
    )
    return decision, e


def _append_durably(request: Request, conn: Connection[Any], entries: list[audit.AuditEntry]) -> list[int]:
    """Append ``entries`` on the connection the request already holds and return once they are durable.

    On an idle autocommit connection the append is a short transaction of its own (one round trip, committed
    when it returns): no hand-over to the writer thread and back, and since 0360 no wait for another
    appender's commit. Inside a transaction (a write's) the rows would share its fate, so they go through
    the process's group-commit writer instead.
    """
    from psycopg.pq import TransactionStatus

    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        ids = audit.append_many(conn, entries)
    else:
        ids = get_state(request).audit_writer.write(entries)
    get_state(request).metrics.audit_rows.inc(len(ids))
    return ids


def _grant_or_raise(
    ctx: UserContext, resident_id: str | None, category: Category, decision: Decision, audit_id: int
) -> ResidentGrant:
    if not decision.allowed:
        if decision.restricted_marker:
            raise ProblemError(403, "Restricted data exist", slug="restricted-data", extra={"restricted": True})
        raise ProblemError(decision.status, "Not found" if decision.status == 404 else "Not permitted")
    assert resident_id is not None
    return ResidentGrant(ctx, resident_id, category, decision, audit_id)


def gate(
    request: Request,
    ctx: UserContext,
    conn: Connection[Any],
    resident_id: str | None,
    category: Category,
    *,
    write: bool = False,
    resource: str | None = None,
) -> ResidentGrant:
    """Decide and audit one access to one resident's ``category``; raise the problem when denied.

    ``resident_id`` None means "the thing asked for does not exist" (e.g. an unknown alert): it is
    answered and audited exactly like a resident the caller has no relation to. For sync code; the
    audit row is durable (group commit) before this returns.
    """
    decision, e = _decide_and_entry(request, ctx, conn, resident_id, category, write, resource)
    state = get_state(request)
    (audit_id,) = state.audit_writer.write([e])
    state.metrics.audit_rows.inc()
    return _grant_or_raise(ctx, resident_id, category, decision, audit_id)


async def gate_async(
    request: Request,
    ctx: UserContext,
    conn: Connection[Any],
    resident_id: str | None,
    category: Category,
    *,
    write: bool = False,
    resource: str | None = None,
) -> ResidentGrant:
    """:func:`gate` for async code: the facts query and the audit append in one worker-thread hop (a busy
    database must not stall the event loop), on the request's connection; the row is durable when it returns."""

    def work() -> tuple[Decision, int]:
        decision, e = _decide_and_entry(request, ctx, conn, resident_id, category, write, resource)
        return decision, _append_durably(request, conn, [e])[0]

    decision, audit_id = await anyio.to_thread.run_sync(work)
    return _grant_or_raise(ctx, resident_id, category, decision, audit_id)


ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]


async def gate_and_load(
    request: Request,
    ctx: UserContext,
    resident_id: str,
    category: Category,
    load: Callable[[Connection[Any]], T],
) -> tuple[ResidentGrant, T]:
    """Decide, audit and (when allowed) load, in one worker-thread hop with a pooled connection held only for
    the queries (not while the request serialises or sends: under load, requests holding connections through
    their waits starved the pool).

    The audit row is appended on that connection right after the decision (one short transaction: durable
    before anything is loaded, so before any data leave). Denied -> the problem, and ``load`` is not called. An
    error of ``load`` (e.g. a 422) is raised as it is (the access is audited already).
    """
    state = get_state(request)

    def work() -> tuple[Decision, int, T | None]:
        with state.pool.connection() as conn:
            decision, e = _decide_and_entry(request, ctx, conn, resident_id, category, False, None)
            (audit_id,) = _append_durably(request, conn, [e])
            return decision, audit_id, (load(conn) if decision.allowed else None)

    decision, audit_id, data = await anyio.to_thread.run_sync(work)
    grant = _grant_or_raise(ctx, resident_id, category, decision, audit_id)
    return grant, data  # type: ignore[return-value]  # allowed: load's result


def audit_access(
    request: Request,
    conn: Connection[Any],
    ctx: UserContext,
    *,
    resource: str,
    resident_ids: list[str] | None = None,
    outcome: Outcome = Outcome.ALLOWED,
    purpose: Purpose = Purpose.TREATMENT,
    bases: dict[str, str | None] | None = None,
    emergency_ids: set[str] | None = None,
) -> None:
    """Audit a list/dashboard/registry access: one row per resident shown (one row when none)."""
    entries = _list_entries(request, ctx, resource, resident_ids, outcome, purpose, bases, emergency_ids)
    get_state(request).audit_writer.write(entries)
    get_state(request).metrics.audit_rows.inc(len(entries))


def _list_entries(
    request: Request,
    ctx: UserContext,
    resource: str,
    resident_ids: list[str] | None,
    outcome: Outcome,
    purpose: Purpose,
    bases: dict[str, str | None] | None,
    emergency_ids: set[str] | None,
) -> list[audit.AuditEntry]:
    action = action_name(request)
    ids: list[str | None] = list(resident_ids) if resident_ids else [None]
    return [
        audit.entry(
            ctx,
            action=action,
            resource=resource,
            outcome=outcome,
            purpose=Purpose.EMERGENCY if emergency_ids and rid in emergency_ids else purpose,
            resident_id=rid,
            basis=(bases or {}).get(rid) if rid else None,
            emergency=bool(emergency_ids and rid in emergency_ids),
        )
        for rid in ids
    ]


def audit_shown(
    request: Request,
    conn: Connection[Any],
    ctx: UserContext,
    *,
    resource: str,
    resident_ids: list[str] | None = None,
    purpose: Purpose = Purpose.TREATMENT,
    bases: dict[str, str | None] | None = None,
    emergency_ids: set[str] | None = None,
) -> None:
    """:func:`audit_access` on the connection the caller holds (sync, for a worker thread that has just run the
    list's queries on it): one row per resident shown, durable when it returns, in the same thread hop."""
    entries = _list_entries(request, ctx, resource, resident_ids, Outcome.ALLOWED, purpose, bases, emergency_ids)
    _append_durably(request, conn, entries)


async def audit_access_async(
    request: Request,
    ctx: UserContext,
    *,
    resource: str,
    resident_ids: list[str] | None = None,
    purpose: Purpose = Purpose.TREATMENT,
    bases: dict[str, str | None] | None = None,
    emergency_ids: set[str] | None = None,
) -> None:
    """:func:`audit_access` for async code (the flush is awaited, no worker thread waits)."""
    entries = _list_entries(request, ctx, resource, resident_ids, Outcome.ALLOWED, purpose, bases, emergency_ids)
    await asyncio.wrap_future(get_state(request).audit_writer.submit(entries))
    get_state(request).metrics.audit_rows.inc(len(entries))
