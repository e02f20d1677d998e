"""Who may see what: the access policy of the care-chain API (CARE-RULES.md, "Who may see what").

Pure: no FastAPI, no psycopg. The route layer loads the facts (the user's
context, the resident's owner, care relations, sharing consents, blocks, open
emergency accesses) and asks :func:`decide`; the answer says allowed or denied,
the HTTP status to give, and the basis that the audit row records.

The role -> scope map is DATA (:data:`READ_SCOPES`, :data:`WRITE_SCOPES`),
documented in docs/access.md. Change it there and here together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    NURSE = "nurse"
    CLINICIAN = "clinician"
    COORDINATOR = "coordinator"
    ADMIN = "admin"
    AUDITOR = "auditor"


class OrgKind(StrEnum):
    MUNICIPALITY = "municipality"  # kommun: social services (SoL), home care
    REGION = "region"  # region: health care (HSL, patient data act)


class Regime(StrEnum):
    """The legal regime a user acts under; derived from the organisation kind."""

    SOCIAL_SERVICES = "social_services"
    HEALTH_CARE = "health_care"


REGIME_OF: dict[OrgKind, Regime] = {
    OrgKind.MUNICIPALITY: Regime.SOCIAL_SERVICES,
    OrgKind.REGION: Regime.HEALTH_CARE,
}


class Category(StrEnum):
    """Separate need-to-know scopes of resident data."""

    ALERTS = "alerts"
    SENSOR_EVENTS = "sensor_events"
    MEDICATION = "medication"
    CLINICAL = "clinical"  # risk scores, vitals anomalies, clinical-family alerts in full
    IDENTITY = "identity"  # name, personnummer, consents
    NOTES = "notes"  # care plan, comments


class Purpose(StrEnum):
    TREATMENT = "treatment"
    EMERGENCY = "emergency"
    QUALITY = "quality"
    ADMINISTRATION = "administration"


class Outcome(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"


C = Category
_ALL = frozenset(Category)

#: (organisation kind, role) -> categories the role may READ for a resident it has a care relation to.
#: Home care in a municipality sees "needs a visit", not infection-risk scores: no CLINICAL there for nurses.
READ_SCOPES: dict[tuple[OrgKind, Role], frozenset[Category]] = {
    (OrgKind.MUNICIPALITY, Role.NURSE): frozenset({C.ALERTS, C.SENSOR_EVENTS, C.MEDICATION, C.IDENTITY, C.NOTES}),
    (OrgKind.MUNICIPALITY, Role.CLINICIAN): _ALL,  # e.g. the municipality's medically responsible nurse (MAS)
    (OrgKind.MUNICIPALITY, Role.COORDINATOR): frozenset({C.ALERTS, C.IDENTITY}),
    (OrgKind.MUNICIPALITY, Role.ADMIN): frozenset(),
    (OrgKind.MUNICIPALITY, Role.AUDITOR): frozenset(),
    (OrgKind.REGION, Role.NURSE): _ALL,
    (OrgKind.REGION, Role.CLINICIAN): _ALL,
    (OrgKind.REGION, Role.COORDINATOR): frozenset({C.ALERTS, C.IDENTITY}),
    (OrgKind.REGION, Role.ADMIN): frozenset(),
    (OrgKind.REGION, Role.AUDITOR): frozenset(),
}

#: Role -> categories it may WRITE (act on alerts, comment, edit the care plan, record consents and blocks).
WRITE_SCOPES: dict[Role, frozenset[Category]] = {
    Role.NURSE: frozenset({C.ALERTS, C.NOTES, C.IDENTITY}),
    Role.CLINICIAN: frozenset({C.ALERTS, C.NOTES, C.IDENTITY}),
    Role.COORDINATOR: frozenset(),
    Role.ADMIN: frozenset(),
    Role.AUDITOR: frozenset(),
}

#: Administrators register residents and record their consents for their OWN organisation without a
#: care relation (purpose administration), but read no resident data.
ADMIN_ORG_WRITES: frozenset[Category] = frozenset({C.IDENTITY})

#: Roles that may open emergency access (two steps, reason + code, time box, review queue).
EMERGENCY_ROLES: frozenset[Role] = frozenset({Role.NURSE, Role.CLINICIAN})
EMERGENCY_TTL = timedelta(hours=4)
EMERGENCY_REASON_CODES: dict[str, str] = {
    "life_threatening": "Life-threatening situation, the resident cannot consent",
    "unconscious": "The resident is unconscious or cannot communicate",
    "urgent_care": "Urgent care needs data held by another unit",
}

#: Roles that see their organisation's aggregated, pseudonymous figures without a care relation.
AGGREGATE_ROLES: frozenset[Role] = frozenset({Role.COORDINATOR, Role.ADMIN, Role.CLINICIAN, Role.NURSE})
AUDIT_ROLES: frozenset[Role] = frozenset({Role.AUDITOR})
REGISTRY_ROLES: frozenset[Role] = frozenset({Role.ADMIN})


@dataclass(frozen=True, slots=True)
class UserContext:
    """Every human call's context: who, which organisation and unit, which role and legal regime."""

    user_id: str
    org_id: str
    org_kind: OrgKind
    unit: str | None
    role: Role
    client: str | None = None  # system-to-system: the calling client id
    on_behalf_of: str | None = None

    @property
    def regime(self) -> Regime:
        return REGIME_OF[self.org_kind]


@dataclass(frozen=True, slots=True)
class Period:
    valid_from: datetime
    valid_to: datetime | None

    def active(self, now: datetime) -> bool:
        return self.valid_from <= now and (self.valid_to is None or now < self.valid_to)


@dataclass(frozen=True, slots=True)
class CareRelation:
    id: int
    user_id: str
    org_id: str
    unit: str | None
    resident_id: str
    kind: str  # care_team | assigned_case | on_call
    period: Period


@dataclass(frozen=True, slots=True)
class SharingConsent:
    """Owner organisation makes data available to a reading organisation/unit (or one disclosure)."""

    id: int
    resident_id: str
    owner_org_id: str
    reader_org_id: str
    reader_unit: str | None  # None: every unit of the reading organisation
    categories: frozenset[Category]
    mode: str  # joint_documentation | disclosure
    legal_basis: str  # consent | documented_basis (resident cannot decide) | law
    period: Period
    withdrawn_at: datetime | None = None

    def covers(self, ctx: UserContext, owner_org_id: str, category: Category, now: datetime) -> bool:
        if self.withdrawn_at is not None and self.withdrawn_at <= now:
            return False
        return (
            self.owner_org_id == owner_org_id
            and self.reader_org_id == ctx.org_id
            and (self.reader_unit is None or self.reader_unit == ctx.unit)
            and category in self.categories
            and self.period.active(now)
        )


@dataclass(frozen=True, slots=True)
class Block:
    """A resident blocks a category (for everyone outside the owner) or a unit/organisation (for everything)."""

    id: int
    resident_id: str
    category: Category | None
    org_id: str | None
    unit: str | None
    period: Period

    def applies(self, ctx: UserContext, owner_org_id: str, category: Category, now: datetime) -> bool:
        if not self.period.active(now):
            return False
        if self.org_id is not None or self.unit is not None:
            org_hit = self.org_id is None or self.org_id == ctx.org_id
            unit_hit = self.unit is None or self.unit == ctx.unit
            return org_hit and unit_hit and (self.category is None or self.category == category)
        # A category block hides that category from readers outside the owning organisation.
        return self.category == category and ctx.org_id != owner_org_id


@dataclass(frozen=True, slots=True)
class EmergencyAccess:
    id: int
    user_id: str
    resident_id: str
    opened_at: datetime
    expires_at: datetime

    def active(self, now: datetime) -> bool:
        return self.opened_at <= now < self.expires_at


@dataclass(frozen=True, slots=True)
class ResidentFacts:
    """What the policy needs to know about one resident; loaded by the route layer."""

    resident_id: str
    owner_org_id: str  # the resident's municipality: owns home-care data (alerts, sensors, medication, ...)
    relations: tuple[CareRelation, ...] = ()
    consents: tuple[SharingConsent, ...] = ()
    blocks: tuple[Block, ...] = ()
    emergencies: tuple[EmergencyAccess, ...] = ()
    region_org_id: str | None = None  # the resident's region: owns the clinical category (health care)

    def owner_of(self, category: Category) -> str:
        """The organisation that owns this category of the resident's data."""
        if category is Category.CLINICAL and self.region_org_id:
            return self.region_org_id
        return self.owner_org_id

    @property
    def owners(self) -> frozenset[str]:
        return frozenset(o for o in (self.owner_org_id, self.region_org_id) if o)


class Reason(StrEnum):
    RELATION = "relation"
    RELATION_AND_CONSENT = "relation_and_consent"
    EMERGENCY = "emergency"
    ADMIN_OWN_ORG = "admin_own_org"
    NO_SUCH_RESIDENT = "no_such_resident"
    NO_RELATION = "no_relation"
    NO_CONSENT = "no_consent"
    OUT_OF_SCOPE = "out_of_scope"
    BLOCKED = "blocked"
    ROLE = "role"


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer. ``status`` is the HTTP status to give when denied (403 or 404)."""

    allowed: bool
    reason: Reason
    status: int = 200
    purpose: Purpose = Purpose.TREATMENT
    basis: str | None = None  # "relation:12", "relation:12+consent:4", "emergency:7", "block:3"
    emergency: bool = False
    restricted_marker: bool = False  # blocked: "restricted data exist" may be shown

    @property
    def outcome(self) -> Outcome:
        return Outcome.ALLOWED if self.allowed else Outcome.DENIED


def read_scope(ctx: UserContext) -> frozenset[Category]:
    """Categories this user's role may read (given a care relation)."""
    return READ_SCOPES.get((ctx.org_kind, ctx.role), frozenset())


def decide(
    ctx: UserContext,
    facts: ResidentFacts | None,
    category: Category,
    now: datetime,
    *,
    write: bool = False,
    show_restricted_marker: bool = True,
) -> Decision:
    """May ``ctx`` read (or write) ``category`` of this resident now?

    Denials never leak existence: a user without any relation to a resident gets
    404 exactly as for a resident that does not exist. Once a relation (or an
    emergency access) shows the resident is known to the user, an out-of-scope
    category is 403, a block 403 with the "restricted data exist" marker (or 404
    when the marker is configured off).
    """
    scope = WRITE_SCOPES.get(ctx.role, frozenset()) if write else read_scope(ctx)
    admin_write = write and ctx.role in REGISTRY_ROLES and category in ADMIN_ORG_WRITES
    if not scope and not admin_write:
        # Roles with no resident-data rights at all: 403 whatever the resident (no existence leak).
        return Decision(False, Reason.ROLE, status=403)
    if facts is None:
        return Decision(False, Reason.NO_SUCH_RESIDENT, status=404)
    if admin_write:
        if ctx.org_id == facts.owner_org_id:
            return Decision(True, Reason.ADMIN_OWN_ORG, purpose=Purpose.ADMINISTRATION, basis=f"org:{ctx.org_id}")
        return Decision(False, Reason.NO_RELATION, status=404, purpose=Purpose.ADMINISTRATION)

    relation = next(
        (
            r
            for r in facts.relations
            if r.user_id == ctx.user_id
            and r.org_id == ctx.org_id
            and (r.unit is None or r.unit == ctx.unit)
            and r.period.active(now)
        ),
        None,
    )
    emergency = next((e for e in facts.emergencies if e.user_id == ctx.user_id and e.active(now)), None)

    if relation is None and emergency is None:
        return Decision(False, Reason.NO_RELATION, status=404)
    if category not in scope:
        basis = f"relation:{relation.id}" if relation else f"emergency:{emergency.id}" if emergency else None
        return Decision(False, Reason.OUT_OF_SCOPE, status=403, basis=basis)

    if relation is not None:
        owner = facts.owner_of(category)
        block = next((b for b in facts.blocks if b.applies(ctx, owner, category, now)), None)
        cross = ctx.org_id != owner
        consent = next((c for c in facts.consents if c.covers(ctx, owner, category, now)), None) if cross else None
        if block is None and (not cross or consent is not None):
            if consent is not None:
                return Decision(True, Reason.RELATION_AND_CONSENT, basis=f"relation:{relation.id}+consent:{consent.id}")
            return Decision(True, Reason.RELATION, basis=f"relation:{relation.id}")
        if emergency is None:
            if block is not None:
                return Decision(
                    False,
                    Reason.BLOCKED,
                    status=403 if show_restricted_marker else 404,
                    basis=f"block:{block.id}",
                    restricted_marker=show_restricted_marker,
                )
            return Decision(False, Reason.NO_CONSENT, status=403, basis=f"relation:{relation.id}")

    # Emergency access overrides relation, consent and blocks (patient data act 4 ch. 4 §, 6 ch. 3 §):
    # time-boxed, purpose emergency, every use flagged and queued for review.
    assert emergency is not None
    return Decision(
        True, Reason.EMERGENCY, purpose=Purpose.EMERGENCY, basis=f"emergency:{emergency.id}", emergency=True
    )


def may_record_consent(
    ctx: UserContext, facts: ResidentFacts | None, now: datetime, reader_org_id: str | None
) -> Decision:
    """Recording or withdrawing a resident's sharing consent or block.

    The owner organisation's administrators may, and care staff with an active care relation — staff of
    another organisation only for their own organisation as reader (the reading unit obtains consent).
    Consent is what is being recorded, so it is not required here.
    """
    if ctx.role not in EMERGENCY_ROLES and ctx.role not in REGISTRY_ROLES:
        return Decision(False, Reason.ROLE, status=403)
    if facts is None:
        return Decision(False, Reason.NO_SUCH_RESIDENT, status=404)
    if ctx.role in REGISTRY_ROLES:
        if ctx.org_id in facts.owners:
            return Decision(True, Reason.ADMIN_OWN_ORG, purpose=Purpose.ADMINISTRATION, basis=f"org:{ctx.org_id}")
        return Decision(False, Reason.NO_RELATION, status=404, purpose=Purpose.ADMINISTRATION)
    relation = next(
        (
            r
            for r in facts.relations
            if r.user_id == ctx.user_id
            and r.org_id == ctx.org_id
            and (r.unit is None or r.unit == ctx.unit)
            and r.period.active(now)
        ),
        None,
    )
    if relation is None:
        return Decision(False, Reason.NO_RELATION, status=404)
    if ctx.org_id not in facts.owners and reader_org_id not in (None, ctx.org_id):
        return Decision(False, Reason.OUT_OF_SCOPE, status=403, basis=f"relation:{relation.id}")
    return Decision(True, Reason.RELATION, basis=f"relation:{relation.id}")


def may_open_emergency(ctx: UserContext) -> bool:
    """Only care staff may break the glass."""
    return ctx.role in EMERGENCY_ROLES


def units_holding_data(facts: ResidentFacts, now: datetime) -> list[dict[str, Any]]:
    """Emergency step 1: which organisations/units hold data on the resident (no content)."""
    seen: dict[tuple[str, str | None], dict[str, Any]] = {}
    for org in sorted(facts.owners):
        seen[(org, None)] = {"org_id": org, "unit": None, "owner": True}
    for r in facts.relations:
        if r.period.active(now):
            seen.setdefault((r.org_id, r.unit), {"org_id": r.org_id, "unit": r.unit, "owner": False})
    return list(seen.values())


#: What a user without CLINICAL scope sees of a clinical-family alert: a neutral "needs a visit".
NEEDS_VISIT_KIND = "needs_visit"
NEEDS_VISIT_REASON = "The resident may need a visit."
NEEDS_VISIT_REASON_SV = "Den boende kan behöva ett besök."
_SUMMARY_KEYS = (
    "id",
    "resident_id",
    "home_id",
    "severity",
    "status",
    "created_at",
    "updated_at",
    "responsible_org_id",
    "acknowledged_at",
    "resolved_at",
)


def alert_view(ctx: UserContext, alert: Mapping[str, Any]) -> dict[str, Any]:
    """The alert as this user may see it: clinical-family alerts in full only with CLINICAL scope."""
    if alert.get("family") != "clinical" or Category.CLINICAL in read_scope(ctx):
        return dict(alert)
    view = {k: alert.get(k) for k in _SUMMARY_KEYS if k in alert}
    view.update(
        {
            "kind": NEEDS_VISIT_KIND,
            "family": "summary",
            "reason": NEEDS_VISIT_REASON,
            "reason_sv": NEEDS_VISIT_REASON_SV,
            "summary_only": True,
        }
    )
    return view


@dataclass(frozen=True, slots=True)
class Scope:
    """The residents a user may see in lists, computed once per request from facts."""

    resident_ids: frozenset[str] = field(default_factory=frozenset)
    bases: Mapping[str, Decision] = field(default_factory=dict)


def list_scope(ctx: UserContext, facts: Iterable[ResidentFacts], category: Category, now: datetime) -> Scope:
    """Which of these residents the user may see ``category`` of (for list endpoints and the live stream)."""
    bases: dict[str, Decision] = {}
    for f in facts:
        d = decide(ctx, f, category, now)
        if d.allowed:
            bases[f.resident_id] = d
    return Scope(frozenset(bases), bases)
