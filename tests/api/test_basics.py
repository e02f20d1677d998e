"""The app's frame on a real server: health and readiness, metrics, JWKS, authentication, problem+json for
every kind of error, the size limit, cursor pagination."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def seeded(db: psycopg.Connection[Any]) -> None:
    seed.organisations(db)
    seed.resident(db, "r-basic-1", "h-basic-1")
    seed.relation(db, "nurse-basic", seed.KOMMUN_A, "hc-1", "r-basic-1")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_ready_metrics_jwks(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as c:
        assert c.get("/health").json() == {"status": "ok"}
        r = c.get("/ready")
        assert r.status_code == 200, r.text
        assert r.json()["database"] == "ok"
        m = c.get("/metrics")
        assert m.status_code == 200 and "carechain_api_requests_total" in m.text
        keys = c.get("/.well-known/jwks.json").json()["keys"]
        assert keys[0]["kty"] == "EC" and keys[0]["alg"] == "ES256"


def test_tokens_are_validated(live: LiveServer, mint: Any, seeded: None) -> None:
    good = mint("nurse-basic", seed.KOMMUN_A, "nurse", "hc-1")
    with httpx.Client(base_url=live.url) as c:
        assert c.get("/v1/organisations", headers=_auth(good)).status_code == 200
        for bad in (
            None,
            "not-a-jwt",
            mint("u", seed.KOMMUN_A, "nurse", ttl_s=-120),  # expired
            mint("u", seed.KOMMUN_A, "nurse", extra={"aud": "someone-else"}),
            mint("u", seed.KOMMUN_A, "nurse", extra={"iss": "https://evil.example"}),
            jwt.encode({"sub": "u", "org": seed.KOMMUN_A, "role": "nurse"}, "s" * 32, algorithm="HS256"),
        ):
            r = c.get("/v1/organisations", headers=_auth(bad) if bad else {})
            assert r.status_code == 401, (bad, r.text)
            assert r.headers["content-type"] == PROBLEM
        # Gateways and unknown roles have no API access; an unknown organisation is no context.
        for token in (mint("gw-1", seed.KOMMUN_A, "gateway"), mint("u", seed.KOMMUN_A, "superuser")):
            assert c.get("/v1/organisations", headers=_auth(token)).status_code == 403
        assert c.get("/v1/organisations", headers=_auth(mint("u", "no-such-org", "nurse"))).status_code == 403


def test_problem_json_everywhere(live: LiveServer, mint: Any, seeded: None) -> None:
    token = mint("nurse-basic", seed.KOMMUN_A, "nurse", "hc-1")
    with httpx.Client(base_url=live.url, headers=_auth(token)) as c:
        cases = [
            c.get("/v1/no-such-path"),  # 404
            c.delete("/v1/organisations"),  # 405
            c.get("/v1/alerts", params={"limit": "many"}),  # 422
            c.get("/v1/alerts", params={"cursor": "%%%"}),  # 400
            c.post(
                "/v1/residents/r-basic-1/blocks", content=b"{not json", headers={"content-type": "application/json"}
            ),
        ]
        expected = [404, 405, 422, 400, 422]
        for r, status in zip(cases, expected, strict=True):
            assert r.status_code == status, (r.request.url, r.text)
            assert r.headers["content-type"] == PROBLEM
            body = r.json()
            assert body["status"] == status and body["type"].startswith("https://") and body["title"]
            assert body["request_id"] == r.headers["x-request-id"]


def test_declared_body_over_the_limit_is_413_before_reading(live: LiveServer, mint: Any, seeded: None) -> None:
    admin = mint("admin-basic", seed.KOMMUN_A, "admin")
    request = (
        f"POST /v1/homes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {admin}\r\n"
        "Content-Type: application/json\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"application/problem+json" in head
    assert json.loads(body)["status"] == 413


def test_streamed_body_over_the_limit_is_413(live: LiveServer, mint: Any, seeded: None) -> None:
    admin = mint("admin-basic", seed.KOMMUN_A, "admin")

    def chunks() -> Any:
        for _ in range(40):
            yield b" " * 32768  # 1.25 MiB in total, no content-length

    with httpx.Client(base_url=live.url) as c:
        r = c.post("/v1/homes", content=chunks(), headers=_auth(admin) | {"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM


def test_personnummer_is_validated(live: LiveServer, mint: Any, db: psycopg.Connection[Any], seeded: None) -> None:
    admin = mint("admin-basic", seed.KOMMUN_A, "admin")
    with httpx.Client(base_url=live.url, headers=_auth(admin)) as c:
        bad = c.post("/v1/residents", json={"home_id": "h-basic-1", "name": "X Y", "personnummer": "19121212-1213"})
        assert bad.status_code == 422 and "1213" not in bad.text
        ok = c.post("/v1/residents", json={"home_id": "h-basic-1", "name": "X Y", "personnummer": "121212+1212"})
        assert ok.status_code == 201, ok.text
        rid = ok.json()["id"]
        assert "personnummer" not in ok.json() and "name" not in ok.json()
    row = db.execute("SELECT personnummer FROM resident_identities WHERE resident_id = %s", (rid,)).fetchone()
    assert row is not None and row[0] == "19121212-1212"


def test_cursor_pagination_walks_every_row(live: LiveServer, mint: Any, db: psycopg.Connection[Any]) -> None:
    seed.organisations(db)
    for i in range(7):
        seed.resident(db, f"r-page-{i}", "h-page")
    coord = mint("coord-page", seed.KOMMUN_A, "coordinator")
    seen: list[str] = []
    cursor = None
    with httpx.Client(base_url=live.url, headers=_auth(coord)) as c:
        for _ in range(20):
            r = c.get("/v1/residents", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            seen += [i["id"] for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    page_ids = [s for s in seen if s.startswith("r-page-")]
    assert page_ids == sorted(page_ids) and len(page_ids) == 7 and len(seen) == len(set(seen))
