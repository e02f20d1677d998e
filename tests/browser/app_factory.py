"""The app the browser test serves: ``create_app`` from the environment (as ``carechain api`` builds it),
with a short live-stream heartbeat so the page sees its stream open at once."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from carechain.settings import Settings


def app() -> FastAPI:
    """uvicorn factory."""
    return create_app(Settings(), sse_heartbeat_s=1.0)
