"""Unit tests of the pure access policy (api/access.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.access import (
    READ_SCOPES,
    Block,
    CareRelation,
    Category,
    EmergencyAccess,
    OrgKind,
    Period,
    Purpose,
    Reason,
    ResidentFacts,
    Role,
    SharingConsent,
    UserContext,
    alert_view,
    decide,
    list_scope,
    units_holding_data,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ALWAYS = Period(NOW - 30 * DAY, None)

KOMMUN = "org-kommun-a"
REGION = "org-region-x"


def ctx(
    role: Role = Role.NURSE, org: str = KOMMUN, kind: OrgKind = OrgKind.MUNICIPALITY, unit: str = "hc-1"
) -> UserContext:
    return UserContext(user_id="u1", org_id=org, org_kind=kind, unit=unit, role=role)


def relation(org: str = KOMMUN, unit: str | None = "hc-1", period: Period = ALWAYS, user: str = "u1") -> CareRelation:
    return CareRelation(1, user, org, unit, "r1", "care_team", period)


def facts(**kw: object) -> ResidentFacts:
    return ResidentFacts(resident_id="r1", owner_org_id=KOMMUN, **kw)  # type: ignore[arg-type]


def test_active_relation_allows_and_names_the_relation() -> None:
    d = decide(ctx(), facts(relations=(relation(),)), Category.ALERTS, NOW)
    assert d.allowed and d.reason is Reason.RELATION and d.basis == "relation:1"
    assert d.purpose is Purpose.TREATMENT and not d.emergency


def test_no_relation_is_404_like_a_missing_resident() -> None:
    assert decide(ctx(), facts(), Category.ALERTS, NOW).status == 404
    assert decide(ctx(), None, Category.ALERTS, NOW).status == 404


def test_expired_relation_and_other_unit_denied() -> None:
    expired = relation(period=Period(NOW - 10 * DAY, NOW - DAY))
    assert not decide(ctx(), facts(relations=(expired,)), Category.ALERTS, NOW).allowed
    other_unit = relation(unit="hc-2")
    assert not decide(ctx(), facts(relations=(other_unit,)), Category.ALERTS, NOW).allowed
    not_mine = relation(user="u2")
    assert not decide(ctx(), facts(relations=(not_mine,)), Category.ALERTS, NOW).allowed


def test_kommun_nurse_has_no_clinical_scope_region_nurse_has() -> None:
    d = decide(ctx(), facts(relations=(relation(),)), Category.CLINICAL, NOW)
    assert not d.allowed and d.status == 403 and d.reason is Reason.OUT_OF_SCOPE
    assert Category.CLINICAL in READ_SCOPES[(OrgKind.REGION, Role.NURSE)]


def region_clinician() -> UserContext:
    return ctx(Role.CLINICIAN, REGION, OrgKind.REGION, "vc-1")


def consent(**kw: object) -> SharingConsent:
    base: dict[str, object] = {
        "id": 4,
        "resident_id": "r1",
        "owner_org_id": KOMMUN,
        "reader_org_id": REGION,
        "reader_unit": "vc-1",
        "categories": frozenset({Category.ALERTS, Category.CLINICAL}),
        "mode": "joint_documentation",
        "legal_basis": "consent",
        "period": Period(NOW - DAY, NOW + 30 * DAY),
    }
    base.update(kw)
    return SharingConsent(**base)  # type: ignore[arg-type]


def test_cross_org_needs_consent_for_the_reading_unit_and_category() -> None:
    rel = relation(org=REGION, unit="vc-1")
    no_consent = decide(region_clinician(), facts(relations=(rel,)), Category.ALERTS, NOW)
    assert not no_consent.allowed and no_consent.reason is Reason.NO_CONSENT and no_consent.status == 403
    ok = decide(region_clinician(), facts(relations=(rel,), consents=(consent(),)), Category.ALERTS, NOW)
    assert ok.allowed and ok.basis == "relation:1+consent:4"
    wrong_cat = decide(region_clinician(), facts(relations=(rel,), consents=(consent(),)), Category.MEDICATION, NOW)
    assert not wrong_cat.allowed
    withdrawn = consent(withdrawn_at=NOW - timedelta(minutes=1))
    assert not decide(region_clinician(), facts(relations=(rel,), consents=(withdrawn,)), Category.ALERTS, NOW).allowed
    expired = consent(period=Period(NOW - 10 * DAY, NOW - DAY))
    assert not decide(region_clinician(), facts(relations=(rel,), consents=(expired,)), Category.ALERTS, NOW).allowed
    other_unit = consent(reader_unit="vc-9")
    assert not decide(region_clinician(), facts(relations=(rel,), consents=(other_unit,)), Category.ALERTS, NOW).allowed


def test_blocks_give_the_restricted_marker_or_nothing() -> None:
    rel = relation(org=REGION, unit="vc-1")
    block = Block(3, "r1", Category.ALERTS, None, None, ALWAYS)
    f = facts(relations=(rel,), consents=(consent(),), blocks=(block,))
    d = decide(region_clinician(), f, Category.ALERTS, NOW)
    assert not d.allowed and d.reason is Reason.BLOCKED and d.restricted_marker and d.status == 403
    quiet = decide(region_clinician(), f, Category.ALERTS, NOW, show_restricted_marker=False)
    assert quiet.status == 404 and not quiet.restricted_marker
    # A category block does not hide the owner's own data from the owner's staff.
    own = decide(ctx(), facts(relations=(relation(),), blocks=(block,)), Category.ALERTS, NOW)
    assert own.allowed
    unit_block = Block(5, "r1", None, KOMMUN, "hc-1", ALWAYS)
    assert not decide(ctx(), facts(relations=(relation(),), blocks=(unit_block,)), Category.ALERTS, NOW).allowed


def test_emergency_overrides_relation_and_consent_and_is_flagged() -> None:
    em = EmergencyAccess(7, "u1", "r1", NOW - timedelta(minutes=5), NOW + timedelta(hours=4))
    d = decide(region_clinician(), facts(emergencies=(em,)), Category.CLINICAL, NOW)
    assert d.allowed and d.emergency and d.purpose is Purpose.EMERGENCY and d.basis == "emergency:7"
    expired = EmergencyAccess(8, "u1", "r1", NOW - timedelta(hours=5), NOW - timedelta(hours=1))
    assert decide(region_clinician(), facts(emergencies=(expired,)), Category.CLINICAL, NOW).status == 404


def test_roles_without_resident_rights_get_403_whatever_the_resident() -> None:
    for role in (Role.AUDITOR, Role.ADMIN):
        assert decide(ctx(role), facts(relations=(relation(),)), Category.ALERTS, NOW).status == 403
        assert decide(ctx(role), None, Category.ALERTS, NOW).status == 403


def test_admin_writes_identity_in_own_org_only() -> None:
    admin = ctx(Role.ADMIN)
    assert decide(admin, facts(), Category.IDENTITY, NOW, write=True).allowed
    other = ctx(Role.ADMIN, org=REGION, kind=OrgKind.REGION)
    assert decide(other, facts(), Category.IDENTITY, NOW, write=True).status == 404


def test_coordinator_identity_only_with_relation() -> None:
    coord = ctx(Role.COORDINATOR)
    assert decide(coord, facts(), Category.IDENTITY, NOW).status == 404
    assert decide(coord, facts(relations=(relation(),)), Category.IDENTITY, NOW).allowed
    assert decide(coord, facts(relations=(relation(),)), Category.SENSOR_EVENTS, NOW).status == 403


@pytest.mark.parametrize("role", [Role.NURSE, Role.COORDINATOR])
def test_clinical_alert_is_needs_a_visit_for_kommun(role: Role) -> None:
    alert = {"id": 1, "resident_id": "r1", "family": "clinical", "kind": "infection_signs", "evidence": {"score": 0.9}}
    view = alert_view(ctx(role), alert)
    assert view["kind"] == "needs_visit" and "evidence" not in view and view["summary_only"]
    assert alert_view(region_clinician(), alert)["kind"] == "infection_signs"
    welfare = {**alert, "family": "welfare", "kind": "fall"}
    assert alert_view(ctx(role), welfare)["kind"] == "fall"


def test_list_scope_and_units_holding_data() -> None:
    f1 = facts(relations=(relation(),))
    f2 = ResidentFacts(resident_id="r2", owner_org_id=KOMMUN)
    scope = list_scope(ctx(), [f1, f2], Category.ALERTS, NOW)
    assert scope.resident_ids == {"r1"}
    units = units_holding_data(facts(relations=(relation(org=REGION, unit="vc-1"),)), NOW)
    assert {(u["org_id"], u["unit"]) for u in units} == {(KOMMUN, None), (REGION, "vc-1")}


def test_region_owns_the_clinical_category() -> None:
    f = ResidentFacts(
        resident_id="r1", owner_org_id=KOMMUN, region_org_id=REGION, relations=(relation(REGION, "vc-1"),)
    )
    # The resident's region reads its own clinical data without a consent...
    assert decide(region_clinician(), f, Category.CLINICAL, NOW).basis == "relation:1"
    # ...but the municipality's alerts only with one.
    assert decide(region_clinician(), f, Category.ALERTS, NOW).reason is Reason.NO_CONSENT
    mas = ctx(Role.CLINICIAN)
    f2 = ResidentFacts(resident_id="r1", owner_org_id=KOMMUN, region_org_id=REGION, relations=(relation(),))
    assert decide(mas, f2, Category.CLINICAL, NOW).reason is Reason.NO_CONSENT
    from_region = consent(owner_org_id=REGION, reader_org_id=KOMMUN, reader_unit=None)
    f3 = ResidentFacts(
        resident_id="r1", owner_org_id=KOMMUN, region_org_id=REGION, relations=(relation(),), consents=(from_region,)
    )
    assert decide(mas, f3, Category.CLINICAL, NOW).allowed


def test_decisions_hold_for_any_time_and_role() -> None:
    """Property: nobody ever reads a resident without a relation or emergency access, whatever else exists."""
    from hypothesis import given
    from hypothesis import strategies as st

    @given(
        role=st.sampled_from(list(Role)),
        kind=st.sampled_from(list(OrgKind)),
        category=st.sampled_from(list(Category)),
        hours=st.integers(-1000, 1000),
        with_consent=st.booleans(),
    )
    def check(role: Role, kind: OrgKind, category: Category, hours: int, with_consent: bool) -> None:
        now = NOW + timedelta(hours=hours)
        user = ctx(role, REGION if kind is OrgKind.REGION else KOMMUN, kind, "vc-1")
        consents = (consent(reader_org_id=user.org_id, reader_unit=None),) if with_consent else ()
        d = decide(user, facts(consents=consents), category, now)
        assert not d.allowed and d.status in (403, 404)

    check()
