"""FHIR R4 read API at ``/fhir/R4``: metadata, read by id, search by patient.

Regional record systems call with system-level credentials and apply no
privacy filter themselves, so every rule of the care-chain API applies here
too: the caller's context comes from the bearer token (:func:`api.deps.get_current_user`),
each resident's data pass the access policy (:func:`api.access.decide`) per
data category, and every read — allowed or denied — is written to the audit
log (:func:`api.audit.record`) before any data leave. A resident the caller has
no relation to answers 404 exactly as an unknown id.

Errors are FHIR ``OperationOutcome`` documents (``application/fhir+json``)
with the HTTP status of the problem, not problem+json: the route class below
translates the API's errors for this router only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from psycopg import Connection
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import audit, fhir, fhir_store
from api.access import AUDIT_ROLES, Category, Decision, Outcome, Purpose, UserContext, decide, read_scope
from api.deps import get_current_user, get_db, get_state
from api.pagination import decode_cursor, encode_cursor
from api.problems import ProblemError

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = frozenset({"json", FHIR_JSON, "application/json"})
PREFIX = "/fhir/R4"
DEFAULT_COUNT = 50
MAX_COUNT = 500
LOCAL_TZ = ZoneInfo("Europe/Stockholm")
_STATUS_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    422: "invalid",
}


class FhirResponse(Response):
    media_type = FHIR_JSON


def _outcome_response(status: int, diagnostics: str) -> Response:
    code = _STATUS_CODE.get(status, "exception" if status >= 500 else "processing")
    body = fhir.to_json(fhir.operation_outcome(code, diagnostics))
    headers = {"WWW-Authenticate": 'Bearer realm="carechain"'} if status == 401 else None
    return FhirResponse(body, status_code=status, headers=headers)


class FhirRoute(APIRoute):
    """Answers every error of a FHIR route as an OperationOutcome with the right status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ProblemError as e:
                return _outcome_response(e.status, e.detail or "request refused")
            except StarletteHTTPException as e:
                return _outcome_response(e.status_code, str(e.detail))
            except RequestValidationError as e:
                first = e.errors()[0] if e.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return _outcome_response(400, f"invalid parameter {where}: {first.get('msg', '')}")
            except fhir.MappingError:
                # A stored record that cannot be expressed: an internal error; never echo resident data.
                log.exception("FHIR mapping failed for %s", request.url.path)
                return _outcome_response(500, "a stored record could not be expressed as FHIR")

        return fhir_handler


_RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
    "description": "A FHIR R4 resource (validated with the fhir.resources R4B models before it is sent)",
}
_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}},
}
#: Every FHIR route answers FHIR JSON; its errors are OperationOutcome documents.
FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The resource (or a searchset Bundle)", "content": {FHIR_JSON: {"schema": _RESOURCE_SCHEMA}}},
    **{
        status: {"description": desc, "content": {FHIR_JSON: {"schema": _OUTCOME_SCHEMA}}}
        for status, desc in (
            (400, "Invalid search parameter (OperationOutcome)"),
            (401, "No valid bearer token (OperationOutcome)"),
            (403, "Not permitted, or restricted data (OperationOutcome)"),
            (404, "Not found, or no care relation (OperationOutcome; the same answer)"),
        )
    },
}

router = APIRouter(
    prefix=PREFIX,
    route_class=FhirRoute,
    tags=["FHIR R4"],
    default_response_class=FhirResponse,
    responses=FHIR_RESPONSES,
)


def _search_params(names: Sequence[str]) -> dict[str, Any]:
    """OpenAPI description of a search's query parameters (read from the raw query, FHIR style)."""
    docs = {
        "patient": "the resident: ID or Patient/ID",
        "subject": "Patient/ID (same as patient)",
        "date": "ge|gt|le|lt|eq + FHIR date or dateTime; repeatable",
        "_count": "page size, 1..500 (default 50)",
        "_page": "opaque cursor from the Bundle's next link",
        "category": "e.g. vital-signs, activity, score",
        "code": "a code (reading kind, detector, or LOINC)",
        "status": "the resource's status code",
        "_id": "a logical id",
        "identifier": f"{fhir.SID_RESIDENT}|ID (pseudonym only)",
        "source": "Device/ID",
        "_format": "json",
    }
    params = [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": docs.get(n, n)}
        for n in names
    ]
    return {"parameters": params}


Db = Annotated[Connection[Any], Depends(get_db)]
User = Annotated[UserContext, Depends(get_current_user)]


# ---------------------------------------------------------------------------
# The gate: decide + audit, per resident and data category.


@dataclass(frozen=True, slots=True)
class Gate:
    """One FHIR request's access checks; each check is audited once."""

    request: Request
    conn: Connection[Any]
    ctx: UserContext
    resource_type: str
    now: datetime

    def check(self, resident_id: str, category: Category, *, action: str) -> Decision:
        """Decide whether the caller may read ``category`` of this resident, and audit the outcome."""
        return self.check_many(resident_id, (category,), action=action)[category]

    def check_many(self, resident_id: str, categories: Sequence[Category], *, action: str) -> dict[Category, Decision]:
        """:meth:`check` for several categories: one load of the facts, one audit append (a row each)."""
        facts = fhir_store.resident_facts(self.conn, resident_id)
        state = get_state(self.request)
        decisions = {
            c: decide(self.ctx, facts, c, self.now, show_restricted_marker=state.settings_show_restricted_marker)
            for c in categories
        }
        entries = [
            audit.entry(
                self.ctx,
                action=f"FHIR {action} {self.resource_type}",
                resource=f"fhir/{self.resource_type}/{c.value}",
                resident_id=resident_id,
                outcome=d.outcome,
                purpose=d.purpose,
                basis=d.basis,
                emergency=d.emergency,
            )
            for c, d in decisions.items()
        ]
        audit.record_many(self.conn, entries)
        state.metrics.audit_rows.inc(len(entries))
        return decisions

    def require(self, resident_id: str, category: Category, *, action: str) -> Decision:
        """:meth:`check`, raising the denial (404 without relation, 403 out of scope or blocked)."""
        decision = self.check(resident_id, category, action=action)
        if not decision.allowed:
            raise _denied(decision, f"{self.resource_type}")
        return decision

    def audit_plain(self, action: str, outcome: Outcome, resident_id: str | None = None) -> None:
        """Audit a call that reads no single resident's data (e.g. the access log itself)."""
        audit.record(
            self.conn,
            self.ctx,
            action=f"FHIR {action} {self.resource_type}",
            resource=f"fhir/{self.resource_type}",
            resident_id=resident_id,
            outcome=outcome,
            purpose=Purpose.QUALITY if self.ctx.role in AUDIT_ROLES else Purpose.TREATMENT,
        )
        get_state(self.request).metrics.audit_rows.inc()


def _denied(decision: Decision, what: str) -> ProblemError:
    if decision.status == 404:
        return ProblemError(404, f"{what} not found")
    if decision.restricted_marker:
        return ProblemError(403, "restricted data exist that the caller may not see")
    return ProblemError(403, "not permitted for this caller")


def _not_found(resource_type: str) -> ProblemError:
    return ProblemError(404, f"{resource_type} not found")


# ---------------------------------------------------------------------------
# Search parameters


@dataclass(frozen=True, slots=True)
class DateRange:
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def parse_dates(values: Sequence[str]) -> DateRange:
    """FHIR ``date`` parameters (``ge``, ``gt``, ``le``, ``lt``, ``eq``; dates are Stockholm days)."""
    since: datetime | None = None
    until: datetime | None = None
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", raw)
        start, end = _instant_range(text)
        if prefix in ("ge", "eq"):
            since = start if since is None else max(since, start)
        if prefix == "gt":
            since = end if since is None else max(since, end)
        if prefix in ("lt",):
            until = start if until is None else min(until, start)
        if prefix in ("le", "eq"):
            until = end if until is None else min(until, end)
    return DateRange(since, until)


def _instant_range(text: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date or dateTime value covers: [start, end)."""
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).date()
            start = datetime.combine(day, time(0), LOCAL_TZ)
            return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ProblemError(400, f"date value {text[:40]!r} is not a FHIR date or dateTime") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=LOCAL_TZ)
    return at.astimezone(UTC), at.astimezone(UTC) + timedelta(microseconds=1)


def _patient_param(request: Request, required: bool = True) -> str | None:
    """The resident of a search: ``patient=ID``, ``patient=Patient/ID`` or ``subject=Patient/ID``."""
    values = request.query_params.getlist("patient") or request.query_params.getlist("subject")
    if not values:
        if required:
            raise ProblemError(400, "this search needs a patient parameter (patient=Patient/ID)")
        return None
    if len(values) > 1 or "," in values[0]:
        raise ProblemError(400, "search one patient at a time")
    raw = values[0].removeprefix("Patient/")
    if not fhir.is_valid_fhir_id(raw):
        raise ProblemError(400, "patient must be a FHIR id")
    try:
        return fhir.domain_id(raw)
    except fhir.MappingError:
        raise ProblemError(400, "patient must be a FHIR id") from None


def _count(request: Request) -> int:
    raw = request.query_params.get("_count")
    if raw is None:
        return DEFAULT_COUNT
    if not raw.isdigit() or not 0 < int(raw) <= MAX_COUNT:
        raise ProblemError(400, f"_count must be 1..{MAX_COUNT}")
    return int(raw)


def _check_params(request: Request, allowed: Sequence[str]) -> None:
    """Unknown or unsupported parameters are an error (FHIR strict handling), not silently ignored."""
    for name in request.query_params:
        if name not in allowed:
            raise ProblemError(400, f"search parameter {name[:40]!r} is not supported here")
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt not in JSON_FORMATS:
        raise ProblemError(400, "only JSON is served (_format=json)")


def _bundle(request: Request, resources: Sequence[Any], next_key: Sequence[Any] | None) -> Response:
    base = str(request.base_url).rstrip("/") + PREFIX
    self_url = str(request.url)
    next_url = None
    if next_key is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "_page"]
        params.append(("_page", encode_cursor(next_key)))
        next_url = f"{base}/{request.url.path.rsplit('/', 1)[-1]}?{urlencode(params)}"
    bundle = fhir.searchset(resources, base_url=base, self_url=self_url, next_url=next_url)
    return FhirResponse(fhir.to_json(bundle))


def _resource(resource: Any) -> Response:
    return FhirResponse(fhir.to_json(resource))


def _page_after(request: Request, arity: int) -> list[Any] | None:
    try:
        return decode_cursor(request.query_params.get("_page"), arity)
    except ProblemError:
        raise ProblemError(400, "malformed _page") from None


def _logical_id(raw: str) -> str:
    if not fhir.is_valid_fhir_id(raw):
        raise ProblemError(404, "not found")
    try:
        return fhir.domain_id(raw)
    except fhir.MappingError:
        raise ProblemError(404, "not found") from None


def _gate(request: Request, conn: Connection[Any], ctx: UserContext, resource_type: str) -> Gate:
    return Gate(request, conn, ctx, resource_type, datetime.now(UTC))


# ---------------------------------------------------------------------------
# metadata


@router.get("/metadata", summary="CapabilityStatement")
def metadata(request: Request) -> Response:
    """What this FHIR server offers (no resident data; no token needed)."""
    from api.app import API_VERSION

    base = str(request.base_url).rstrip("/") + PREFIX
    return _resource(fhir.capability_statement(base, API_VERSION, datetime.now(UTC)))


# ---------------------------------------------------------------------------
# Patient


@router.get("/Patient/{logical_id}", summary="Read a Patient (pseudonymous unless identity may be seen)")
def read_patient(logical_id: str, request: Request, conn: Db, ctx: User) -> Response:
    rid = _logical_id(logical_id)
    return _resource(_patient_for(_gate(request, conn, ctx, "Patient"), rid, "read"))


def _patient_for(gate: Gate, rid: str, action: str) -> Any:
    # Identity (name, personnummer) only with the IDENTITY scope; otherwise the pseudonymous Patient
    # needs only a relation (the ALERTS scope every care role has).
    show_identity = Category.IDENTITY in read_scope(gate.ctx)
    decision = gate.check(rid, Category.IDENTITY if show_identity else Category.ALERTS, action=action)
    if not decision.allowed and show_identity and decision.status == 403:
        show_identity = False
        decision = gate.check(rid, Category.ALERTS, action=action)
    if not decision.allowed:
        raise _denied(decision, "Patient")
    record = fhir_store.resident(gate.conn, rid)
    if record is None:
        raise _not_found("Patient")
    return fhir.patient(record, show_identity=show_identity)


@router.get(
    "/Patient",
    summary="Search Patient by _id or pseudonym identifier",
    openapi_extra=_search_params(("_id", "identifier", "_count", "_format")),
)
def search_patient(request: Request, conn: Db, ctx: User) -> Response:
    _check_params(request, ("_id", "identifier", "_count", "_format"))
    ids = request.query_params.getlist("_id")
    for ident in request.query_params.getlist("identifier"):
        system, _, value = ident.rpartition("|")
        if system and system != fhir.SID_RESIDENT:
            # Personal identity numbers never travel in URLs: only the pseudonym can be searched.
            raise ProblemError(400, f"only identifier={fhir.SID_RESIDENT}|ID can be searched")
        ids.append(value)
    if len(ids) != 1:
        raise ProblemError(400, "search one Patient by _id or identifier")
    gate = _gate(request, conn, ctx, "Patient")
    rid = ids[0] if not fhir.is_valid_fhir_id(ids[0]) else fhir.domain_id(ids[0])
    try:
        resources = [_patient_for(gate, rid, "search")]
    except ProblemError as e:
        if e.status != 404:
            raise
        resources = []  # a search that matches nothing (or nothing visible) is an empty Bundle
    return _bundle(request, resources, None)


# ---------------------------------------------------------------------------
# Resident-scoped types: a table of (category, loaders, mapper) per type.


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """How one resident-scoped resource type is read and searched."""

    name: str
    category: Callable[[Any], Category]  # the data category of one record
    categories: tuple[Category, ...]  # every category a search may return
    load: Callable[[Connection[Any], str], Any | None]  # by domain id
    search: Callable[..., list[Any]]  # (conn, resident_id, categories, dates, request, limit, after) -> records
    to_fhir: Callable[[Any, datetime], Any]
    resident_of: Callable[[Any], str]
    key_of: Callable[[Any], Sequence[Any]]  # paging key of a record
    params: tuple[str, ...] = ("patient", "subject", "date", "_count", "_page", "_format")


def _const(c: Category) -> Callable[[Any], Category]:
    return lambda _record: c


def _alert_mapper(fn: Callable[[fhir.AlertRecord], Any]) -> Callable[[Any, datetime], Any]:
    return lambda record, _now: fn(record)


SPECS: dict[str, TypeSpec] = {}


def _register(spec: TypeSpec) -> None:
    SPECS[spec.name] = spec


_register(
    TypeSpec(
        "Observation",
        category=fhir_store.observation_category,
        categories=(Category.SENSOR_EVENTS, Category.CLINICAL),
        load=fhir_store.observation,
        search=fhir_store.observations,
        to_fhir=lambda r, _now: fhir.observation(r),
        resident_of=lambda r: r.resident_id,
        key_of=lambda r: [r.ts.isoformat(), r.observation_id],
        params=("patient", "subject", "date", "category", "code", "_count", "_page", "_format"),
    )
)
_register(
    TypeSpec(
        "Device",
        category=_const(Category.SENSOR_EVENTS),
        categories=(Category.SENSOR_EVENTS,),
        load=fhir_store.device,
        search=fhir_store.devices,
        to_fhir=lambda r, _now: fhir.device(r),
        resident_of=lambda r: r.resident_id,
        key_of=lambda r: ["", r.device_id],
        params=("patient", "_count", "_page", "_format"),
    )
)
_register(
    TypeSpec(
        "Flag",
        category=lambda w: Category.CLINICAL if w.clinical else Category.ALERTS,
        categories=(Category.ALERTS, Category.CLINICAL),
        load=fhir_store.warning,
        search=fhir_store.warnings,
        to_fhir=lambda r, _now: fhir.flag(r),
        resident_of=lambda r: r.resident_id,
        key_of=lambda r: [r.start.isoformat(), r.warning_id],
        params=("patient", "subject", "date", "status", "_count", "_page", "_format"),
    )
)
for _name, _fn, _cat in (
    ("DetectedIssue", fhir.detected_issue, Category.MEDICATION),
    ("CommunicationRequest", fhir.communication_request, Category.ALERTS),
    ("Task", fhir.task, Category.ALERTS),
):
    _register(
        TypeSpec(
            _name,
            category=_const(_cat),
            categories=(_cat,),
            load=fhir_store.medication_alert if _name == "DetectedIssue" else fhir_store.alert,
            search=fhir_store.medication_alerts if _name == "DetectedIssue" else fhir_store.alerts,
            to_fhir=_alert_mapper(_fn),
            resident_of=lambda r: r.resident_id,
            key_of=lambda r: [r.created_at.isoformat(), r.alert_id],
            params=("patient", "subject", "date", "status", "_count", "_page", "_format"),
        )
    )
_register(
    TypeSpec(
        "MedicationAdministration",
        category=_const(Category.MEDICATION),
        categories=(Category.MEDICATION,),
        load=fhir_store.dose,
        search=fhir_store.doses,
        to_fhir=lambda r, _now: fhir.medication_administration(r),
        resident_of=lambda r: r.resident_id,
        key_of=lambda r: [r.ts.isoformat(), r.dose_id],
    )
)
_register(
    TypeSpec(
        "Communication",
        category=_const(Category.ALERTS),
        categories=(Category.ALERTS,),
        load=fhir_store.notification,
        search=fhir_store.notifications,
        to_fhir=lambda r, _now: fhir.communication(r),
        resident_of=lambda r: r.resident_id,
        key_of=lambda r: [r.created_at.isoformat(), r.notification_id],
    )
)
_register(
    TypeSpec(
        "CareTeam",
        category=_const(Category.IDENTITY),
        categories=(Category.IDENTITY,),
        load=fhir_store.care_relation,
        search=fhir_store.care_relations,
        to_fhir=fhir.care_team,
        resident_of=lambda r: r.resident_id,
        key_of=lambda r: [r.start.isoformat(), r.relation_id],
        params=("patient", "subject", "_count", "_page", "_format"),
    )
)
_register(
    TypeSpec(
        "Consent",
        category=_const(Category.IDENTITY),
        categories=(Category.IDENTITY,),
        load=fhir_store.consent,
        search=fhir_store.consents,
        to_fhir=fhir.consent,
        resident_of=lambda r: r.resident_id,
        key_of=lambda r: [r.recorded_at.isoformat(), r.consent_id],
        params=("patient", "_count", "_page", "_format"),
    )
)


def _summarised(ctx: UserContext, record: Any) -> Any:
    """Clinical-family alerts in full only with the CLINICAL scope; others see "needs a visit"."""
    clinical = isinstance(record, fhir.AlertRecord) and record.family == "clinical"
    if clinical and Category.CLINICAL not in read_scope(ctx):
        return fhir_store.needs_visit(record)
    return record


def _make_read(spec: TypeSpec) -> Callable[..., Response]:
    def read(logical_id: str, request: Request, conn: Db, ctx: User) -> Response:
        gate = _gate(request, conn, ctx, spec.name)
        record = spec.load(conn, _logical_id(logical_id))
        if record is None:
            # Audit the attempt too: a probe for ids is itself an access to log.
            gate.audit_plain("read", Outcome.DENIED)
            raise _not_found(spec.name)
        gate.require(spec.resident_of(record), spec.category(record), action="read")
        return _resource(spec.to_fhir(_summarised(ctx, record), gate.now))

    read.__doc__ = f"Read one {spec.name} (access rules and audit apply)."
    return read


def _make_search(spec: TypeSpec) -> Callable[..., Response]:
    def search(request: Request, conn: Db, ctx: User) -> Response:
        _check_params(request, spec.params)
        rid = _patient_param(request)
        assert rid is not None
        gate = _gate(request, conn, ctx, spec.name)
        allowed: list[Category] = []
        denial: Decision | None = None
        for category, decision in gate.check_many(rid, spec.categories, action="search").items():
            if decision.allowed:
                allowed.append(category)
            elif denial is None or decision.status == 404:
                denial = decision
        if not allowed:
            assert denial is not None
            if denial.status == 404:
                return _bundle(request, [], None)  # nothing visible: an empty searchset, no existence leak
            raise _denied(denial, spec.name)
        limit = _count(request)
        after = _page_after(request, 2)
        dates = parse_dates(request.query_params.getlist("date"))
        records = spec.search(conn, rid, tuple(allowed), dates, request.query_params, limit + 1, after)
        page, more = records[:limit], len(records) > limit
        resources = [spec.to_fhir(_summarised(ctx, r), gate.now) for r in page]
        return _bundle(request, resources, spec.key_of(page[-1]) if more and page else None)

    search.__doc__ = f"Search {spec.name} of one patient: a searchset Bundle with paging links."
    return search


for _spec in SPECS.values():
    router.add_api_route(
        f"/{_spec.name}/{{logical_id}}", _make_read(_spec), methods=["GET"], summary=f"Read {_spec.name}"
    )
    router.add_api_route(
        f"/{_spec.name}",
        _make_search(_spec),
        methods=["GET"],
        summary=f"Search {_spec.name}",
        openapi_extra=_search_params(_spec.params),
    )


# ---------------------------------------------------------------------------
# DeviceMetric: derived from a device (connectivity and battery)


@router.get("/DeviceMetric/{logical_id}", summary="Read DeviceMetric (a device's connectivity or battery)")
def read_device_metric(logical_id: str, request: Request, conn: Db, ctx: User) -> Response:
    gate = _gate(request, conn, ctx, "DeviceMetric")
    raw = logical_id
    for suffix in ("-online", "-battery"):
        if raw.endswith(suffix):
            device_id = _logical_id(raw.removesuffix(suffix))
            break
    else:
        raise _not_found("DeviceMetric")
    record = fhir_store.device(conn, device_id)
    if record is None or record.resident_id is None:
        gate.audit_plain("read", Outcome.DENIED)
        raise _not_found("DeviceMetric")
    gate.require(record.resident_id, Category.SENSOR_EVENTS, action="read")
    for metric in fhir.device_metrics(record):
        if metric.id == logical_id:
            return _resource(metric)
    raise _not_found("DeviceMetric")


@router.get(
    "/DeviceMetric",
    summary="Search DeviceMetric by patient or source device",
    openapi_extra=_search_params(("patient", "source", "_format")),
)
def search_device_metric(request: Request, conn: Db, ctx: User) -> Response:
    _check_params(request, ("patient", "source", "_format"))
    gate = _gate(request, conn, ctx, "DeviceMetric")
    source = request.query_params.get("source")
    if source:
        record = fhir_store.device(conn, _logical_id(source.removeprefix("Device/")))
        if record is None or record.resident_id is None:
            gate.audit_plain("search", Outcome.DENIED)
            return _bundle(request, [], None)
        devices = [record]
        rid = record.resident_id
    else:
        patient = _patient_param(request)
        assert patient is not None
        rid = patient
        devices = []
    decision = gate.check(rid, Category.SENSOR_EVENTS, action="search")
    if not decision.allowed:
        if decision.status == 404:
            return _bundle(request, [], None)
        raise _denied(decision, "DeviceMetric")
    if not source:
        devices = fhir_store.devices(
            conn, rid, (Category.SENSOR_EVENTS,), DateRange(), request.query_params, 1000, None
        )
    metrics = [m for d in devices for m in fhir.device_metrics(d)]
    return _bundle(request, metrics, None)


# ---------------------------------------------------------------------------
# AuditEvent: the access log, for auditors (reading the log is itself logged)


def _require_auditor(gate: Gate) -> None:
    if gate.ctx.role not in AUDIT_ROLES:
        gate.audit_plain("read", Outcome.DENIED)
        raise ProblemError(403, "the access log is for auditors")


@router.get("/AuditEvent/{logical_id}", summary="Read an AuditEvent (auditors)")
def read_audit_event(logical_id: str, request: Request, conn: Db, ctx: User) -> Response:
    gate = _gate(request, conn, ctx, "AuditEvent")
    _require_auditor(gate)
    raw = _logical_id(logical_id)
    record = fhir_store.audit_row(conn, int(raw)) if raw.isdigit() else None
    gate.audit_plain("read", Outcome.ALLOWED if record else Outcome.DENIED, record.resident_id if record else None)
    if record is None:
        raise _not_found("AuditEvent")
    return _resource(fhir.audit_event(record))


@router.get(
    "/AuditEvent",
    summary="Search AuditEvent by patient and date (auditors)",
    openapi_extra=_search_params(("patient", "subject", "date", "_count", "_page", "_format")),
)
def search_audit_event(request: Request, conn: Db, ctx: User) -> Response:
    _check_params(request, ("patient", "subject", "date", "_count", "_page", "_format"))
    gate = _gate(request, conn, ctx, "AuditEvent")
    _require_auditor(gate)
    rid = _patient_param(request, required=False)
    limit = _count(request)
    after = _page_after(request, 2)
    dates = parse_dates(request.query_params.getlist("date"))
    gate.audit_plain("search", Outcome.ALLOWED, rid)
    rows = fhir_store.audit_rows(conn, rid, dates, limit + 1, after)
    page, more = rows[:limit], len(rows) > limit
    resources = [fhir.audit_event(r) for r in page]
    next_key = [page[-1].at.isoformat(), int(page[-1].audit_id)] if more and page else None
    return _bundle(request, resources, next_key)
