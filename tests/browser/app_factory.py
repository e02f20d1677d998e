"""The app the browser test serves: ``create_app`` from the environment, with the web and FHIR routers.

``create_app`` mounts every router listed in ``api.routes.ROUTERS``; this adds
the page's router only if that list does not have it yet, so the test serves
exactly what ``carechain api`` serves once it does.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from api.routes import fhir, web
from carechain.settings import Settings


def app() -> FastAPI:
    """uvicorn factory."""
    application = create_app(Settings(), sse_heartbeat_s=1.0)
    paths = {getattr(r, "path", "") for r in application.routes}
    if "/" not in paths:
        application.include_router(web.router)
    if "/fhir/R4/metadata" not in paths:
        application.include_router(fhir.router)
    return application
