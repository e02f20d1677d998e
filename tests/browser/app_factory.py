"""The app the browser test serves: ``create_app`` from the environment, with the web and FHIR routers.

``create_app`` mounts every router listed in ``api.routes.ROUTERS``; this adds
the page's router only if that list does not have it yet, so the test serves
exactly what ``carechain api`` serves once it does.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from api.app import create_app
from api.routes import fhir, web
from carechain.settings import Settings


def is_mounted(application: FastAPI, router: APIRouter) -> bool:
    """Whether ``router`` is already included (FastAPI keeps included routers as a whole, not route by route)."""
    return any(getattr(r, "original_router", None) is router for r in application.routes)


def mount_page_and_fhir(application: FastAPI) -> FastAPI:
    """Include the web and FHIR routers unless ``create_app`` already did."""
    for router in (web.router, fhir.router):
        if not is_mounted(application, router):
            application.include_router(router)
            application.openapi_schema = None
    return application


def app() -> FastAPI:
    """uvicorn factory."""
    return mount_page_and_fhir(create_app(Settings(), sse_heartbeat_s=1.0))
