"""The authorisation matrix on a real server and database.

Every role × own/other municipality/region × with/without care relation × with/without sharing consent ×
with/without emergency access, over every resident endpoint: the HTTP answer AND the audit row. The expected
answer is computed here from the rules as written in docs/access.md, not by calling the policy code.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration

RID = "r-matrix"
ALL = {"alerts", "sensor_events", "medication", "clinical", "identity", "notes"}
READ = {
    ("municipality", "nurse"): ALL - {"clinical"},
    ("municipality", "clinician"): ALL,
    ("region", "nurse"): ALL,
    ("region", "clinician"): ALL,
    ("municipality", "coordinator"): {"alerts", "identity"},
    ("region", "coordinator"): {"alerts", "identity"},
}
WRITE = {"nurse": {"alerts", "notes", "identity"}, "clinician": {"alerts", "notes", "identity"}}

# (method, path, category, write)
ENDPOINTS: list[tuple[str, str, str, bool]] = [
    ("GET", "/v1/residents/{r}", "identity", False),
    ("GET", "/v1/residents/{r}/care-plan", "notes", False),
    ("PUT", "/v1/residents/{r}/care-plan", "notes", True),
    ("GET", "/v1/residents/{r}/care-relations", "identity", False),
    ("GET", "/v1/residents/{r}/sharing-consents", "identity", False),
    ("GET", "/v1/residents/{r}/blocks", "identity", False),
    ("GET", "/v1/residents/{r}/observations", "sensor_events", False),
    ("GET", "/v1/residents/{r}/medication", "medication", False),
    ("GET", "/v1/residents/{r}/timeline", "sensor_events", False),
    ("GET", "/v1/residents/{r}/activity", "sensor_events", False),
    ("GET", "/v1/residents/{r}/vitals", "sensor_events", False),
    ("GET", "/v1/residents/{r}/scores", "clinical", False),
    ("GET", "/v1/residents/{r}/alerts", "alerts", False),
    ("GET", "/v1/residents/{r}/audit-extract", "identity", False),
    ("GET", "/v1/alerts/{a}", "alerts", False),
]


@dataclass(frozen=True)
class User:
    role: str
    org: str
    relation: bool
    consent: bool
    emergency: bool

    @property
    def id(self) -> str:
        flags = f"{'R' if self.relation else 'r'}{'C' if self.consent else 'c'}{'E' if self.emergency else 'e'}"
        return f"m-{self.role}-{self.org}-{flags}"

    @property
    def kind(self) -> str:
        return seed.POLICY_KIND[seed.ORGS[self.org]]

    @property
    def unit(self) -> str:
        return f"{self.org}-{'consented' if self.consent else 'plain'}"

    def cross(self, category: str) -> bool:
        """The resident's municipality owns her data; her region owns the clinical category."""
        return self.org != (seed.REGION_X if category == "clinical" else seed.KOMMUN_A)


def users() -> list[User]:
    out = []
    for role, org, rel, con, em in itertools.product(
        ("nurse", "clinician", "coordinator", "admin", "auditor"),
        seed.ORGS,
        (False, True),
        (False, True),
        (False, True),
    ):
        if em and role not in ("nurse", "clinician"):
            continue  # only care staff may open emergency access
        out.append(User(role, org, rel, con, em))
    return out


def expected(u: User, category: str, write: bool) -> tuple[int, str | None]:
    """(status, basis prefix of the audit row) by the rules in docs/access.md."""
    scope = WRITE.get(u.role, set()) if write else READ.get((u.kind, u.role), set())
    if not scope:
        return 403, None
    if not u.relation and not u.emergency:
        return 404, None
    if category not in scope:
        return 403, "relation:" if u.relation else "emergency:"
    if u.relation and (not u.cross(category) or u.consent):
        return 200, "relation:"
    if u.emergency:
        return 200, "emergency:"
    return 403, "relation:"  # relation across organisations without consent


@pytest.fixture(scope="module")
def world(db: psycopg.Connection[Any]) -> dict[str, Any]:
    seed.organisations(db)
    seed.resident(db, RID, "h-matrix")
    seed.observations(db, RID, days=2, per_hour=2)
    alert_id, _ = seed.alert(db, RID, "fall", "welfare", notify=False)
    seed.alert(db, RID, "infection_signs", "clinical", notify=False)
    for org in (seed.KOMMUN_B, seed.REGION_X, seed.REGION_Y):
        seed.consent(db, RID, org, f"{org}-consented", sorted(ALL))
    for org in (seed.KOMMUN_A, seed.KOMMUN_B, seed.REGION_Y):
        seed.consent(db, RID, org, f"{org}-consented", ["clinical"], owner=seed.REGION_X)
    everyone = users()
    for u in everyone:
        if u.relation:
            seed.relation(db, u.id, u.org, u.unit, RID)
    return {"alert_id": alert_id, "users": everyone}


async def _open_emergency(c: httpx.AsyncClient, headers: dict[str, str]) -> None:
    step1 = await c.get(f"/v1/residents/{RID}/emergency", headers=headers)
    assert step1.status_code == 200, step1.text
    assert {u["org_id"] for u in step1.json()["units"]} >= {seed.KOMMUN_A, seed.REGION_X}
    step2 = await c.post(
        f"/v1/residents/{RID}/emergency",
        json={"reason": "Found on the floor, unresponsive; need medication list", "reason_code": "unconscious"},
        headers=headers,
    )
    assert step2.status_code == 201, step2.text
    assert step2.json()["review_status"] == "pending"


async def _run(live: LiveServer, mint: Any, world: dict[str, Any]) -> list[tuple[User, str, str, bool, httpx.Response]]:
    results: list[tuple[User, str, str, bool, httpx.Response]] = []
    sem = asyncio.Semaphore(12)
    plan_body = {"inactivity_limit_min": 150}

    async with httpx.AsyncClient(base_url=live.url, timeout=30) as c:

        async def one(u: User) -> None:
            async with sem:
                headers = {"Authorization": f"Bearer {mint(u.id, u.org, u.role, u.unit)}"}
                if u.emergency:
                    await _open_emergency(c, headers)
                for method, path, category, write in ENDPOINTS:
                    url = path.format(r=RID, a=world["alert_id"])
                    r = await c.request(method, url, headers=headers, json=plan_body if method == "PUT" else None)
                    results.append((u, method + " " + path, category, write, r))
                # A resident that does not exist answers exactly like one without a relation.
                ghost = await c.get("/v1/residents/r-does-not-exist", headers=headers)
                results.append((u, "GET ghost", "identity", False, ghost))

        await asyncio.gather(*(one(u) for u in world["users"]))
    return results


def test_authorisation_matrix_and_audit(
    live: LiveServer, mint: Any, world: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    results = asyncio.run(_run(live, mint, world))
    assert len(results) == len(world["users"]) * (len(ENDPOINTS) + 1)
    rids = [r.headers["x-request-id"] for *_, r in results]
    rows = db.execute(
        "SELECT request_id, resident_id, outcome, basis, emergency, purpose, user_id FROM audit_log"
        " WHERE request_id = ANY(%s)",
        (rids,),
    ).fetchall()
    by_request: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_request.setdefault(row[0], []).append(row)

    failures = []
    for u, endpoint, category, write, r in results:
        if endpoint == "GET ghost":
            want_status = 403 if not READ.get((u.kind, u.role)) else 404
            if r.status_code != want_status:
                failures.append(f"{u.id} ghost: {r.status_code} != {want_status}")
            continue
        want, basis = expected(u, category, write)
        if r.status_code != want:
            failures.append(f"{u.id} {endpoint}: {r.status_code} != {want}: {r.text[:120]}")
            continue
        if want != 200:
            assert r.headers["content-type"] == "application/problem+json"
        audit = by_request.get(r.headers["x-request-id"], [])
        if len(audit) != 1:
            failures.append(f"{u.id} {endpoint}: {len(audit)} audit rows")
            continue
        _, resident, outcome, row_basis, emergency, purpose, user = audit[0]
        ok = (
            resident == RID
            and user == u.id
            and outcome == ("allowed" if want == 200 else "denied")
            and (basis is None or (row_basis or "").startswith(basis))
            and emergency == (want == 200 and basis == "emergency:")
            and purpose == ("emergency" if emergency else "treatment")
        )
        if not ok:
            failures.append(f"{u.id} {endpoint}: audit row {audit[0]} (want {want}, {basis})")
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:40])


def test_no_existence_leak_in_denials(live: LiveServer, mint: Any, world: dict[str, Any]) -> None:
    u = User("nurse", seed.KOMMUN_B, False, False, False)
    headers = {"Authorization": f"Bearer {mint(u.id + '-leak', u.org, u.role, u.unit)}"}
    with httpx.Client(base_url=live.url, headers=headers) as c:
        real = c.get(f"/v1/residents/{RID}/alerts")
        ghost = c.get("/v1/residents/r-nobody-here/alerts")
    strip = {"instance", "request_id"}
    assert real.status_code == ghost.status_code == 404
    assert {k: v for k, v in real.json().items() if k not in strip} == {
        k: v for k, v in ghost.json().items() if k not in strip
    }


def test_kommun_nurse_sees_needs_a_visit_region_sees_the_clinical_alert(
    live: LiveServer, mint: Any, world: dict[str, Any]
) -> None:
    kommun = User("nurse", seed.KOMMUN_A, True, False, False)
    region = User("clinician", seed.REGION_X, True, True, False)  # consent for the municipality's alerts
    kinds = {}
    for u in (kommun, region):
        with httpx.Client(base_url=live.url) as c:
            r = c.get(
                f"/v1/residents/{RID}/alerts",
                headers={"Authorization": f"Bearer {mint(u.id, u.org, u.role, u.unit)}"},
            )
        assert r.status_code == 200, r.text
        kinds[u.role] = {a["kind"]: a for a in r.json()["items"]}
    assert set(kinds["nurse"]) == {"fall", "needs_visit"}
    assert "evidence" not in kinds["nurse"]["needs_visit"]
    assert set(kinds["clinician"]) == {"fall", "infection_signs"}
    assert kinds["clinician"]["infection_signs"]["evidence"]["score"] == 0.93


def test_emergency_access_enters_the_review_queue(live: LiveServer, mint: Any, world: dict[str, Any]) -> None:
    auditor = {"Authorization": f"Bearer {mint('auditor-m', seed.KOMMUN_A, 'auditor')}"}
    with httpx.Client(base_url=live.url, headers=auditor) as c:
        queue = c.get("/v1/audit/emergency-queue").json()
        picks = c.get("/v1/audit/review/picks", params={"rule": "emergency"}).json()
    emergency_users = {u.id for u in world["users"] if u.emergency}
    assert emergency_users <= {q["user_id"] for q in queue}
    assert all(q["review_status"] == "pending" for q in queue)
    assert picks and all(p["emergency"] for p in picks)
