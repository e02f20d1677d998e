"""FastAPI dependencies: who is asking (:func:`get_current_user`), the database (:func:`get_db`), and
:func:`resident_access` — the one gate every resident route passes, which decides and audits.

A route reads as: who is asking, may they, do it, log it — and the last two
cannot be forgotten because the dependency does them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import Connection
from psycopg_pool import ConnectionPool

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
from api.auth import AuthError, TokenValidator
from api.problems import ProblemError
from carechain.settings import Settings

if TYPE_CHECKING:
    from api.app import ApiState

_bearer = HTTPBearer(auto_error=False, description="OIDC/JWT bearer token (RS256/ES256)")
ORG_CACHE_S = 60.0


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
    load). Here only the wait for a connection uses a thread; the return is immediate.
    """
    pool = get_pool(request)
    conn = await run_in_threadpool(pool.getconn)
    try:
        yield conn
    finally:
        pool.putconn(conn)


Db = Annotated[Connection[Any], Depends(get_db)]


class OrgDirectory:
    """organisation id -> kind, cached briefly (the token's org_kind claim is never trusted over it)."""

    def __init__(self) -> None:
        self._kinds: dict[str, OrgKind | None] = {}
        self._loaded_at = 0.0

    def kind(self, pool: ConnectionPool, org_id: str) -> OrgKind | None:
        now = time.monotonic()
        # Reload when stale or for an organisation not seen yet (only validly signed tokens get here).
        if now - self._loaded_at > ORG_CACHE_S or org_id not in self._kinds:
            kinds = {k.value for k in OrgKind}
            with pool.connection() as conn:
                self._kinds = {k: OrgKind(v) for k, v in store.organisation_kinds(conn).items() if v in kinds}
            self._loaded_at = now
        return self._kinds.get(org_id)


def get_current_user(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserContext:
    """The caller's context (user, organisation and its kind, unit, role, regime) from a valid bearer token.

    A call without that context is refused: 401 without a valid token, 403 for a role with no API
    access (gateways, unknown roles) or an organisation the registry does not know.
    """
    if creds is None or creds.scheme.lower() != "bearer":
        raise ProblemError(401, "A bearer token is required", extra={}) from None
    state = get_state(request)
    try:
        claims = state.validator.validate(creds.credentials)
    except AuthError as e:
        raise ProblemError(e.status, e.detail) from None
    # No pooled connection is held for the request here (the live stream's requests last for hours).
    kind = state.orgs.kind(state.pool, claims.org)
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


def resident_access(category: Category, *, write: bool = False) -> Callable[..., ResidentGrant]:
    """The gate of every resident route: decide by the access policy and audit the outcome.

    Denied -> audit row (outcome denied) and 404 (no relation: existence is not leaked) or 403.
    Allowed -> audit row (outcome allowed, with the relation/consent/emergency basis) before any
    data leave the API.
    """

    def dep(
        request: Request,
        ctx: CurrentUser,
        conn: Db,
        resident_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")],
    ) -> ResidentGrant:
        return gate(request, ctx, conn, resident_id, category, write=write)

    return dep


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
    answered and audited exactly like a resident the caller has no relation to.
    """
    state = get_state(request)
    now = datetime.now(UTC)
    facts = store.resident_facts(conn, resident_id) if resident_id else None
    decision = decide(
        ctx, facts, category, now, write=write, show_restricted_marker=state.settings_show_restricted_marker
    )
    # Through the group-commit writer: durable before any data leave, one WAL flush for many requests.
    (audit_id,) = state.audit_writer.write(
        [
            audit.entry(
                ctx,
                action=action_name(request),
                resource=resource or f"resident/{category.value}",
                resident_id=resident_id,
                outcome=decision.outcome,
                purpose=decision.purpose,
                basis=decision.basis,
                emergency=decision.emergency,
            )
        ]
    )
    state.metrics.audit_rows.inc()
    if not decision.allowed:
        if decision.restricted_marker:
            raise ProblemError(403, "Restricted data exist", slug="restricted-data", extra={"restricted": True})
        raise ProblemError(decision.status, "Not found" if decision.status == 404 else "Not permitted")
    assert resident_id is not None
    return ResidentGrant(ctx, resident_id, category, decision, audit_id)


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
    action = action_name(request)
    ids = resident_ids or [None]  # type: ignore[list-item]
    entries = [
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
    get_state(request).audit_writer.write(entries)
    get_state(request).metrics.audit_rows.inc(len(entries))


def validator_for(settings: Settings) -> TokenValidator:
    return TokenValidator(settings)
