"""The web page's static serving and its translations (no database, no browser)."""

from __future__ import annotations

import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes.web import WEB_DIR, router


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_index_is_served_with_a_strict_policy(client: TestClient) -> None:
    res = client.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp  # no inline script, no CDN
    assert res.headers["x-content-type-options"] == "nosniff"
    assert '<html lang="sv">' in res.text  # Swedish first


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/i18n/sv.json", "application/json"),
        ("/static/i18n/en.json", "application/json"),
    ],
)
def test_static_files(client: TestClient, path: str, media: str) -> None:
    res = client.get(path)
    assert res.status_code == 200
    assert res.headers["content-type"].startswith(media)


@pytest.mark.parametrize("path", ["/static/../routes/web.py", "/static/%2e%2e/fhir.py", "/static/nope.js", "/static/"])
def test_static_refuses_other_paths(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_demo_tokens_only_in_the_demo(client: TestClient) -> None:
    assert client.get("/demo/tokens").status_code == 404
    client.app.state.demo_tokens = [{"label": "Nurse", "user": "n1", "role": "nurse", "org": "k1", "token": "x.y.z"}]  # type: ignore[attr-defined]
    res = client.get("/demo/tokens")
    assert res.status_code == 200
    assert res.json()["items"][0]["user"] == "n1"
    assert res.headers["cache-control"] == "no-store"


def _dict(lang: str) -> dict[str, str]:
    return json.loads((WEB_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def test_translations_have_the_same_keys() -> None:
    sv, en = _dict("sv"), _dict("en")
    assert set(sv) == set(en)
    assert all(v.strip() for v in [*sv.values(), *en.values()])
    assert sv["alert.ack"] == "Kvittera"
    assert en["alert.ack"] == "Acknowledge"


def test_every_key_the_page_uses_is_translated() -> None:
    sv = _dict("sv")
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    js = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-aria|-placeholder)?="([^"]+)"', html))
    used |= set(re.findall(r'\bt\("([a-z_.0-9]+)"', js))
    missing = sorted(k for k in used if k not in sv)
    assert not missing, missing
    assert len(used) > 50


def test_page_loads_nothing_from_elsewhere() -> None:
    for name in ("index.html", "app.js", "style.css"):
        text = (WEB_DIR / name).read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"https?://", text), name
        assert 'fetch("http' not in text
        assert "@import" not in text
