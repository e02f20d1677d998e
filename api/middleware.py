"""ASGI middleware: request id, request size limit (413), Prometheus metrics.

Plain ASGI (not BaseHTTPMiddleware) so the live stream's long responses pass
through untouched.
"""

from __future__ import annotations

import itertools
import os
import time

from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import REQUEST_ID
from api.problems import problem_response

#: Default largest request body (bytes).
MAX_BODY_BYTES = 1024 * 1024


class RequestIds:
    """Request ids unique across processes without a system call each (``uuid4`` reads ``os.urandom`` and builds a
    UUID: 4 % of the API's CPU under load): 32 hex digits, a random 64-bit prefix per process and a counter. A
    forked child draws a prefix of its own."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


request_ids = RequestIds()


class Metrics:
    """The API's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "carechain_api_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "carechain_api_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.sse_subscribers = Gauge(
            "carechain_api_sse_subscribers", "live alert stream subscribers", registry=self.registry
        )
        self.sse_deliveries = Counter(
            "carechain_api_sse_deliveries_total", "alert events delivered on the live stream", registry=self.registry
        )
        self.audit_rows = Counter("carechain_api_audit_rows_total", "audit rows written", registry=self.registry)


class BodyTooLarge(HTTPException):
    """Raised while reading a body that outgrows the limit; FastAPI turns it into a 413 problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes")


class RequestMiddleware:
    """Gives each request an id (``X-Request-ID``), refuses big bodies with 413, and counts."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable() else None
        rid = rid or request_ids.next()
        token = REQUEST_ID.set(rid)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await self._too_large(scope, receive, send_wrapper)
                return
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise BodyTooLarge(self.max_body)
                return message

            try:
                await self.app(scope, receive_limited, send_wrapper)
            except BodyTooLarge:
                if not status["sent"]:
                    await self._too_large(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], path, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], path).observe(time.perf_counter() - started)
            REQUEST_ID.reset(token)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, f"The request body is larger than {self.max_body} bytes", scope.get("path"), headers=None
        )
        await response(scope, receive, send)
