"""The care-chain API: ``create_app(settings)`` builds the FastAPI app; settings are passed down, never imported.

Versioned paths (``/v1/...``), RFC 9457 problem+json for every error, opaque
cursor pagination, a request size limit, ``/health`` and ``/ready``,
Prometheus ``/metrics``, the local issuer's JWKS, and the live alert stream.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from api import problems
from api.audit import AuditWriter
from api.auth import LocalIssuer, TokenValidator, local_issuer
from api.deps import OrgDirectory
from api.middleware import Metrics as ApiMetrics
from api.middleware import RequestMiddleware
from api.stream import AlertStream
from api.timeline import TimelineCache
from carechain.settings import Settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
#: The API process's cyclic-GC thresholds after start-up (CPython's default is 700, 10, 10).
GC_THRESHOLD = (50_000, 20, 10)
DESCRIPTION = """
The shared care-chain API of CareChain: residents, homes and devices, care plans,
care relations and consents, observations, alerts and their live stream, response
statistics, the audit log and the AI register.

**Authentication:** an OIDC/JWT bearer token (RS256/ES256) with the claims `sub`,
`org`, `role` (nurse, clinician, coordinator, admin, auditor) and optionally `unit`.

**Access:** resident data need an active care relation at the caller's unit; across
municipality and region also the resident's sharing consent (or an emergency access,
which is time-boxed, flagged and reviewed). A resident the caller has no relation to
answers 404, exactly as one that does not exist. Every read and write of resident
data is audited (docs/access.md).

**Errors** are RFC 9457 `application/problem+json`. **Lists** are cursor-paginated:
pass `next_cursor` back as `cursor`.
"""

TAGS = [
    {"name": "meta", "description": "health, readiness, metrics, keys"},
    {"name": "organisations", "description": "municipalities and regions"},
    {"name": "residents", "description": "residents (pseudonymous; identity only with a care relation), emergency"},
    {"name": "registry", "description": "homes, gateways and devices (admin)"},
    {"name": "care", "description": "care plans and care relations"},
    {"name": "consents", "description": "monitoring consent, sharing consent, blocks"},
    {"name": "observations", "description": "readings raw and bucketed, activity and vitals summaries"},
    {"name": "alerts", "description": "alerts, nurse actions, the live stream, response statistics"},
    {"name": "audit", "description": "the audit log, reviews, a resident's extract of who looked"},
    {"name": "ai-register", "description": "every rule and model in use, with pause switches"},
]


@dataclass
class ApiState:
    """Everything a request needs, built once per app."""

    settings: Settings
    pool: ConnectionPool
    validator: TokenValidator
    issuer: LocalIssuer | None
    metrics: ApiMetrics
    stream: AlertStream
    audit_writer: AuditWriter
    orgs: OrgDirectory
    timelines: TimelineCache = field(default_factory=TimelineCache)
    getconn_limiter: anyio.CapacityLimiter | None = None  # made in the lifespan (needs the event loop)

    @property
    def settings_show_restricted_marker(self) -> bool:
        return self.settings.api_restricted_marker


def create_app(settings: Settings, *, pool_max_size: int | None = None, sse_heartbeat_s: float = 15.0) -> FastAPI:
    """Build the API for these settings (one pool, one validator, one live-stream listener per app)."""
    issuer = local_issuer(settings) if settings.jwks_url is None else None
    validator = TokenValidator(settings, issuer)
    max_size = pool_max_size or settings.api_db_pool_max
    pool = ConnectionPool(
        settings.database_url,
        # Every connection opened up front: growing under load, one connection at a time, starves requests.
        min_size=max_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        open=False,
        timeout=10.0,
        name="carechain-api",
    )
    metrics = ApiMetrics()
    stream = AlertStream(settings, metrics, heartbeat_s=sse_heartbeat_s)
    audit_writer = AuditWriter(settings.database_url)
    state = ApiState(
        settings,
        pool,
        validator,
        issuer,
        metrics,
        stream,
        audit_writer,
        OrgDirectory(settings.database_url),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=False)
        state.getconn_limiter = anyio.CapacityLimiter(max_size + 8)
        try:
            await anyio.to_thread.run_sync(state.orgs.reload)
        except Exception as e:  # the database may come later: /ready says so, requests retry the lookup
            log.warning("organisations not loaded at start-up: %s", type(e).__name__)
        audit_writer.start()
        await stream.start(pool, audit_writer)
        # Everything built so far (app, routes, models, modules) lives as long as the process: keep it out of the
        # cyclic collector's full passes, which otherwise walk it again and again under load.
        gc.collect()
        gc.freeze()
        # And collect the young generation every 50,000 net allocations, not 700: a request's objects die by
        # reference counting, yet with 700 each worker ran ~15 young collections a second under the benchmark's
        # load, each walking the objects of every request in flight and promoting them to the older generations,
        # ~1 s of pauses per worker in 40 s, single pauses up to 82 ms; with 50,000 one collection (docs/api.md,
        # round 4).
        gc_before = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLD)
        try:
            yield
        finally:
            await stream.stop()
            audit_writer.stop()
            pool.close()
            # An app run inside another process (the tests) leaves its collector as it found it.
            gc.set_threshold(*gc_before)
            gc.unfreeze()

    app = FastAPI(
        title="CareChain care-chain API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        responses={500: {"model": problems.Problem, "description": "Internal error (no details shown)"}},
    )
    app.state.api = state
    problems.install(app)
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        max_body_bytes=settings.api_max_body_bytes,
    )

    from api.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory for multi-worker serving: settings from the environment, built once per worker."""
    return create_app(Settings())
