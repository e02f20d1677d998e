"""RFC 9457 problem details: every error the API gives is ``application/problem+json``.

Handlers for HTTP errors, validation errors and unexpected exceptions (the
last never shows internals: only a request id to quote to the operator).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.audit import REQUEST_ID

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://carechain.local/problems/"
MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal server error",
    503: "Service unavailable",
}
SLUGS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "validation",
    500: "internal",
    503: "unavailable",
}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=[PROBLEM_BASE + "not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str | None = Field(default=None, examples=["No such resident"])
    instance: str | None = Field(default=None, examples=["/v1/residents/r-123"])
    request_id: str | None = Field(default=None, examples=["3f2c0d7e9a4b4c1d"])
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    """Raise from anywhere in a request to answer with a problem document."""

    def __init__(
        self, status: int, detail: str | None = None, slug: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail or TITLES.get(status, ""))
        self.status = status
        self.detail = detail
        self.slug = slug
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str | None,
    instance: str | None,
    slug: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or SLUGS.get(status, "error")),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "instance": instance,
        "request_id": REQUEST_ID.get(),
    }
    if detail:
        body["detail"] = detail
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


#: Responses every route may give, for the OpenAPI document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": TITLES[s]}
    for s in (400, 401, 403, 404, 405, 409, 413, 422, 503)
}


def install(app: FastAPI) -> None:
    """Register the problem handlers on the app."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(exc.status, exc.detail, request.url.path, exc.slug, exc.extra)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != TITLES.get(exc.status_code) else None
        return problem_response(exc.status_code, detail, request.url.path, headers=dict(exc.headers or {}))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return problem_response(
            422, "The request does not match the schema", request.url.path, extra={"errors": errors}
        )

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable in %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(503, "The database is unavailable; try again", request.url.path)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        # Never show internals (they may hold resident data); the request id finds the log line.
        log.error("unhandled error in %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return problem_response(500, "An internal error occurred; quote the request id", request.url.path)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(PoolTimeout, on_unavailable)
    app.add_exception_handler(psycopg.OperationalError, on_unavailable)
    app.add_exception_handler(Exception, on_error)
