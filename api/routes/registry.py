"""Homes, gateways and devices (administrators of the owning organisation).

Provisioning a gateway creates its broker account on the real Mosquitto (dynamic security: a client and a
role that may publish only under its own topic); revoking deletes it, which locks the gateway out at once.
A home's monitoring runs only with the stored consent of every resident and every person living there
(see the consents routes).
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api import audit, store
from api.access import OrgKind, Outcome, Purpose, UserContext
from api.deps import AdminUser, Db, action_name, get_state
from api.models import ID_PATTERN
from api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, next_cursor
from api.problems import PROBLEM_RESPONSES, ProblemError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["registry"], responses=PROBLEM_RESPONSES)
ThingId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class HomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN, examples=["h-0012"])
    region_org_id: str = Field(pattern=ID_PATTERN, description="the resident's region", examples=["region-uppsala"])
    cohabitants: int = Field(default=0, ge=0, le=20, description="people living with the resident(s)")
    area: str | None = Field(default=None, max_length=128, examples=["Gottsunda"])


class Home(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(examples=["h-0012"])
    kommun_org_id: str = Field(examples=["kommun-uppsala"])
    region_org_id: str = Field(examples=["region-uppsala"])
    cohabitants: int = 0


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["gw-0042"])
    home_id: str = Field(pattern=ID_PATTERN, examples=["h-0012"])


class Gateway(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(examples=["gw-0042"])
    home_id: str = Field(examples=["h-0012"])


class GatewayProvisioned(Gateway):
    mqtt_username: str = Field(examples=["gw-0042"])
    mqtt_password: str = Field(description="shown once; store it on the gateway", examples=["Zq3...k8"])
    topic_prefix: str = Field(examples=["carechain/v1/gw/gw-0042/"])


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN, examples=["d-pir-kitchen"])
    gateway_id: str = Field(pattern=ID_PATTERN, examples=["gw-0042"])
    kind: str = Field(min_length=1, max_length=64, examples=["motion"])
    room: str | None = Field(default=None, max_length=64, examples=["kitchen"])
    resident_id: str | None = Field(default=None, pattern=ID_PATTERN, description="for a wearable")


class Device(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(examples=["d-pir-kitchen"])
    gateway_id: str = Field(examples=["gw-0042"])


def _log(request: Request, conn: Any, ctx: UserContext, resource: str, ok: bool = True) -> None:
    audit.record(
        conn,
        ctx,
        action=action_name(request),
        resource=resource,
        outcome=Outcome.ALLOWED if ok else Outcome.DENIED,
        purpose=Purpose.ADMINISTRATION,
        basis=f"org:{ctx.org_id}",
    )


def _own_home(conn: Any, ctx: UserContext, home_id: str) -> dict[str, Any]:
    home = store.home(conn, home_id)
    if home is None or ctx.org_id not in (home["kommun_org_id"], home["region_org_id"]):
        raise ProblemError(404, "Not found")
    return home


@router.get("/homes", response_model=Page[Home], summary="Homes of the administrator's organisation")
def list_homes(
    ctx: AdminUser,
    conn: Db,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[Home]:
    after = decode_cursor(cursor, 1)
    rows = store.homes_of_org(conn, ctx.org_id, str(after[0]) if after else None, limit + 1)
    return Page[Home](
        items=[Home(**r) for r in rows[:limit]], next_cursor=next_cursor(rows, limit, lambda r: [r["id"]])
    )


@router.post(
    "/homes",
    response_model=Home,
    status_code=201,
    summary="Register a home of the administrator's municipality (monitored only after everyone's consent)",
)
def create_home(request: Request, body: HomeIn, ctx: AdminUser, conn: Db) -> Home:
    if ctx.org_kind is not OrgKind.MUNICIPALITY:
        raise ProblemError(403, "Homes are registered by their municipality")
    if store.organisation_kinds(conn).get(body.region_org_id) != "region":
        raise ProblemError(422, "region_org_id is not a region", slug="validation")
    with conn.transaction():
        row = store.create_home(conn, {**body.model_dump(), "kommun_org_id": ctx.org_id})
        if row is None:
            raise ProblemError(409, "A home with this id exists")
        _log(request, conn, ctx, f"home/{body.id}")
    return Home(**row)


@router.get("/homes/{home_id}", response_model=Home, summary="One home")
def get_home(home_id: ThingId, ctx: AdminUser, conn: Db) -> Home:
    return Home(**_own_home(conn, ctx, home_id))


@router.get(
    "/homes/{home_id}/device-status",
    response_model=dict[str, Any],
    summary="The home's gateways (last seen, revoked) and devices (last reading, battery)",
)
def device_status(home_id: ThingId, ctx: AdminUser, conn: Db) -> dict[str, Any]:
    _own_home(conn, ctx, home_id)
    return store.device_status(conn, home_id)


@router.get("/gateways", response_model=Page[Gateway], summary="Gateways of the organisation's homes")
def list_gateways(
    ctx: AdminUser,
    conn: Db,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[Gateway]:
    after = decode_cursor(cursor, 1)
    rows = store.gateways_of_org(conn, ctx.org_id, str(after[0]) if after else None, limit + 1)
    return Page[Gateway](
        items=[Gateway(**r) for r in rows[:limit]], next_cursor=next_cursor(rows, limit, lambda r: [r["id"]])
    )


@router.post(
    "/gateways",
    response_model=GatewayProvisioned,
    status_code=201,
    summary="Provision a gateway: registry row and broker account (publish only under its own id)",
    responses={503: {"description": "The broker could not be reached; nothing was provisioned"}},
)
def provision_gateway(request: Request, body: GatewayIn, ctx: AdminUser, conn: Db) -> GatewayProvisioned:
    from carechain.services.broker_accounts import BrokerAccountError, BrokerAccounts, gateway_topic_prefix

    _own_home(conn, ctx, body.home_id)
    password = secrets.token_urlsafe(24)
    accounts = BrokerAccounts.from_settings(get_state(request).settings)
    with conn.transaction():
        row = store.create_gateway(conn, body.id, body.home_id)
        if row is None:
            raise ProblemError(409, "A gateway with this id exists")
        try:
            # Inside the transaction: no registry row without a broker account, and the reverse.
            accounts.create_gateway(body.id, password)
        except (BrokerAccountError, OSError) as e:
            log.warning("broker refused gateway account: %s", type(e).__name__)
            raise ProblemError(503, "The broker could not create the gateway's account") from None
        _log(request, conn, ctx, f"gateway/{body.id}")
    return GatewayProvisioned(
        **row, mqtt_username=body.id, mqtt_password=password, topic_prefix=gateway_topic_prefix(body.id)
    )


@router.delete(
    "/gateways/{gateway_id}",
    response_model=Gateway,
    summary="Revoke a gateway: its broker account is deleted and any open session dropped at once",
    responses={503: {"description": "The broker could not be reached"}},
)
def revoke_gateway(request: Request, gateway_id: ThingId, ctx: AdminUser, conn: Db) -> Gateway:
    from carechain.services.broker_accounts import BrokerAccountError, BrokerAccounts

    gw = store.gateway(conn, gateway_id)
    if gw is None or ctx.org_id not in (gw["kommun_org_id"], gw["region_org_id"]):
        raise ProblemError(404, "Not found")
    try:
        BrokerAccounts.from_settings(get_state(request).settings).revoke_gateway(gateway_id)
    except (BrokerAccountError, OSError) as e:
        log.warning("broker refused revoking a gateway: %s", type(e).__name__)
        raise ProblemError(503, "The broker could not revoke the gateway's account") from None
    with conn.transaction():
        row = store.revoke_gateway(conn, gateway_id)
        _log(request, conn, ctx, f"gateway/{gateway_id}/revoke")
    return Gateway(**(row or gw))


@router.get("/devices", response_model=Page[Device], summary="Devices of the organisation's gateways")
def list_devices(
    ctx: AdminUser,
    conn: Db,
    gateway_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[Device]:
    after = decode_cursor(cursor, 1)
    rows = store.devices_of_org(conn, ctx.org_id, gateway_id, str(after[0]) if after else None, limit + 1)
    return Page[Device](
        items=[Device(**r) for r in rows[:limit]], next_cursor=next_cursor(rows, limit, lambda r: [r["id"]])
    )


@router.post("/devices", response_model=Device, status_code=201, summary="Register a device on a gateway")
def create_device(request: Request, body: DeviceIn, ctx: AdminUser, conn: Db) -> Device:
    gw = store.gateway(conn, body.gateway_id)
    if gw is None or ctx.org_id not in (gw["kommun_org_id"], gw["region_org_id"]):
        raise ProblemError(404, "Not found")
    with conn.transaction():
        row = store.create_device(conn, body.model_dump(), gw["home_id"])
        if row is None:
            raise ProblemError(409, "A device with this id exists")
        _log(request, conn, ctx, f"device/{body.id}")
    return Device(**row)
