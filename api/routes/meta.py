"""Liveness, readiness, Prometheus metrics and the local issuer's JWKS (no resident data here)."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from api import store
from api.deps import get_state
from api.problems import ProblemError, problem_response

router = APIRouter(tags=["meta"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    database: str = Field(examples=["ok"])
    migrations: str = Field(examples=["current (0300)"])
    live_stream: str = Field(examples=["listening"])


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: the database is reachable and its migrations are current",
    responses={503: {"description": "Not ready (problem+json)"}},
)
def ready(request: Request) -> Any:
    state = get_state(request)
    try:
        with state.pool.connection(timeout=2.0) as conn:
            current, detail = store.migrations_current(conn)
    except psycopg.errors.UndefinedTable:
        return problem_response(503, "migrations not applied: run `carechain db migrate`", request.url.path)
    except Exception as e:
        return problem_response(503, f"database unreachable ({type(e).__name__})", request.url.path)
    if not current:
        return problem_response(503, f"migrations not current: {detail}", request.url.path)
    listening = "listening" if state.stream.listening.is_set() else "connecting"
    return Ready(status="ready", database="ok", migrations=detail, live_stream=listening)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "carechain_api_requests_total{...} 1.0"}}}},
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(get_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/.well-known/jwks.json",
    summary="The local issuer's public keys (only when no external JWKS is configured)",
    responses={404: {"description": "An external identity provider is configured"}},
)
def jwks(request: Request) -> JSONResponse:
    issuer = get_state(request).issuer
    if issuer is None:
        raise ProblemError(404, "An external identity provider is configured; its JWKS is authoritative")
    return JSONResponse(issuer.jwks())
