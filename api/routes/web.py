"""The nurses' web page: static files served by the API (no build step, no CDN).

``GET /`` is the page, ``GET /static/...`` its script, style and translations.
``GET /demo/tokens`` lists ready-made tokens only when the embedded demo put
them on ``app.state.demo_tokens``; elsewhere it is 404, so production never
hands out credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

_MEDIA = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

#: Everything the page needs comes from this origin; no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _file(path: Path) -> FileResponse:
    media = _MEDIA.get(path.suffix)
    if media is None or not path.is_file():
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(path, media_type=media, headers=SECURITY_HEADERS)


@router.get("/")
def index() -> FileResponse:
    """The page itself."""
    return _file(WEB_DIR / "index.html")


@router.get("/static/{name:path}")
def static(name: str) -> FileResponse:
    """A static file of the page; paths outside api/web/ are refused."""
    target = (WEB_DIR / name).resolve()
    if not target.is_relative_to(WEB_DIR):
        raise HTTPException(status_code=404, detail="not found")
    return _file(target)


@router.get("/demo/tokens")
def demo_tokens(request: Request) -> JSONResponse:
    """Ready tokens of the embedded demo (``app.state.demo_tokens``); 404 outside the demo."""
    tokens: list[dict[str, Any]] | None = getattr(request.app.state, "demo_tokens", None)
    if not tokens:
        raise HTTPException(status_code=404, detail="no demo tokens")
    return JSONResponse({"items": tokens}, headers={"Cache-Control": "no-store"})
