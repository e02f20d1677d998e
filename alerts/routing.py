"""Routing by responsibility, pure: which organisation and role get an alert, per tier.

Rules are data (table ``routing_rules``): kind (or ``*``) and tier -> organisation kind (kommun or
region) and role, with an optional minimum severity; rows of one organisation override the defaults.
Medication and daily care go to the municipality's home-care nurse, vitals and infection signs to the
region's primary care, a fall to the municipality first and to the region when it is not acknowledged
(tier 2) or the resident is injured (then the region is told at once as well).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass(frozen=True, slots=True)
class RoutingRule:
    org_id: str | None  # None: the default for everyone
    kind: str  # an alert kind or "*"
    min_severity: str
    tier: int
    org_kind: str  # kommun | region
    role: str


@dataclass(frozen=True, slots=True)
class Responsibility:
    """The organisations responsible for one resident."""

    kommun_org_id: str | None
    region_org_id: str | None

    def org_of(self, org_kind: str) -> str | None:
        return self.kommun_org_id if org_kind == "kommun" else self.region_org_id


@dataclass(frozen=True, slots=True)
class Target:
    """Who is told at one tier."""

    org_id: str
    org_kind: str
    role: str
    tier: int


def _specificity(rule: RoutingRule) -> tuple[int, int, int, int]:
    # An organisation's own rule beats the default; an exact kind beats "*"; then higher tiers and severities.
    return (rule.org_id is not None, rule.kind != "*", rule.tier, SEVERITY_RANK.get(rule.min_severity, 0))


def route(
    kind: str,
    severity: str,
    tier: int,
    resp: Responsibility,
    rules: Iterable[RoutingRule],
    injured: bool = False,
) -> list[Target]:
    """Targets for an alert at ``tier``: the most specific rule with the highest tier not above ``tier``
    (so a tier past the last rule repeats the last). An injured fall adds the region at tier 1."""
    rank = SEVERITY_RANK.get(severity, 0)
    responsible_orgs = {o for o in (resp.kommun_org_id, resp.region_org_id) if o}
    usable = [
        r
        for r in rules
        if r.kind in (kind, "*")
        and r.tier <= tier
        and SEVERITY_RANK.get(r.min_severity, 0) <= rank
        and (r.org_id is None or r.org_id in responsible_orgs)
    ]
    if not usable:
        return []
    best = max(usable, key=_specificity)
    # Only the rules at the best rule's level of specificity and tier decide (several targets possible).
    chosen = [r for r in usable if _specificity(r)[:3] == _specificity(best)[:3]]
    targets: list[Target] = []
    for r in chosen:
        org = resp.org_of(r.org_kind)
        if org:
            targets.append(Target(org, r.org_kind, r.role, tier))
    region_told = any(t.org_kind == "region" for t in targets)
    if injured and kind == "fall" and tier == 1 and resp.region_org_id and not region_told:
        targets.append(Target(resp.region_org_id, "region", "clinician", tier))
    return _unique(targets)


def _unique(targets: list[Target]) -> list[Target]:
    seen: set[tuple[str, str]] = set()
    out = []
    for t in targets:
        if (t.org_id, t.role) not in seen:
            seen.add((t.org_id, t.role))
            out.append(t)
    return out


def responsible(kind: str, severity: str, resp: Responsibility, rules: Iterable[RoutingRule]) -> Target | None:
    """The organisation and role an alert belongs to (its tier-1 owner)."""
    targets = route(kind, severity, 1, resp, rules)
    return targets[0] if targets else None


def is_injured(evidence_features: Mapping[str, object]) -> bool:
    """A fall with an injury flag in its evidence goes to the region at once."""
    v = evidence_features.get("injured")
    return v is True or v == 1 or v == "true"
