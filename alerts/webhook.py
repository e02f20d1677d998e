"""Webhook delivery (httpx): a JSON POST signed with HMAC-SHA256 over ``timestamp.body``.

Headers: ``X-CareChain-Timestamp`` (Unix seconds), ``X-CareChain-Signature`` (``sha256=<hex>``),
``Idempotency-Key`` (the outbox row's dedup key: the same notification always carries the same key, so a
receiver drops the rare second delivery after a crash between sending and marking it sent).
A receiver should reject timestamps older than a few minutes (replay protection).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import httpx

SIGNATURE_HEADER = "X-CareChain-Signature"
TIMESTAMP_HEADER = "X-CareChain-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` with the endpoint's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    """Receiver side: constant-time comparison of the signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    status: int | None
    detail: str


class WebhookSender:
    """One pooled HTTP client; a 2xx answer is a delivery, anything else (or no answer) a failure."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._client = httpx.Client(timeout=timeout_s)

    def send(
        self, url: str, secret: str, payload: dict[str, Any], idempotency_key: str, timestamp: int
    ) -> DeliveryResult:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            IDEMPOTENCY_HEADER: idempotency_key,
        }
        try:
            r = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return DeliveryResult(False, None, f"{type(e).__name__}: {e}")
        return DeliveryResult(200 <= r.status_code < 300, r.status_code, r.text[:200])

    def close(self) -> None:
        self._client.close()
