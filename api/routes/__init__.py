"""One route module per resource; ROUTERS is the order they are mounted in."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    ai_register,
    alerts,
    audit_log,
    care,
    consents,
    fhir,
    meta,
    observations,
    organisations,
    registry,
    residents,
    web,
)

#: Routes are matched in this order, one router after another: the busiest (the alert list, the timeline) come
#: first. No path matches two routers (tests/api/test_routes.py), so the order changes nothing else.
ROUTERS: tuple[APIRouter, ...] = (
    meta.router,
    alerts.router,
    observations.router,
    organisations.router,
    residents.router,
    registry.router,
    care.router,
    consents.router,
    audit_log.router,
    ai_register.router,
    fhir.router,  # FHIR R4 read for regional record systems (api/fhir*.py)
    web.router,  # the nurses' web page (api/web/)
)
