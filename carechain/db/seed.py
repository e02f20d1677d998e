"""Demo and test data: organisations, homes laid out as the simulator lays them out, users.

Idempotent (ON CONFLICT DO NOTHING) and deterministic, so the simulator, the demo, the
tests and the benchmarks all agree on the ids: homes come from
:func:`carechain.simulation.homes.home_layout`. Names and personnummer are synthetic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

import psycopg
from psycopg.types.json import Jsonb

from carechain.care_plan import CarePlan
from carechain.personnummer import synthetic
from carechain.simulation.homes import HomeLayout, home_layout

ORGANISATIONS: tuple[tuple[str, str, str], ...] = (
    ("kommun-0180", "Stockholms stad", "kommun"),
    ("kommun-0182", "Nacka kommun", "kommun"),
    ("region-01", "Region Stockholm", "region"),
    ("region-03", "Region Uppsala", "region"),
)

#: The demo's users and where they work; the seed gives them care relations.
DEMO_USERS: dict[str, dict[str, str | None]] = {
    "nurse": {"user": "nurse-anna", "org": "kommun-0180", "unit": "hemtjanst-sodermalm"},
    "clinician": {"user": "clinician-erik", "org": "region-01", "unit": "vc-sodermalm"},
    "coordinator": {"user": "coordinator-maria", "org": "kommun-0180", "unit": None},
    "admin": {"user": "admin-ola", "org": "kommun-0180", "unit": None},
    "auditor": {"user": "auditor-karin", "org": "region-01", "unit": None},
}

_FIRST = ("Astrid", "Gunnar", "Karin", "Sven", "Birgitta", "Lennart", "Ingrid", "Bengt", "Margareta", "Olof")
_LAST = ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson", "Svensson")


@dataclass(frozen=True, slots=True)
class SeededHome:
    layout: HomeLayout
    kommun_org_id: str
    region_org_id: str


@dataclass(slots=True)
class SeedResult:
    organisations: list[str] = field(default_factory=list)
    homes: list[SeededHome] = field(default_factory=list)
    users: dict[str, dict[str, str | None]] = field(default_factory=lambda: dict(DEMO_USERS))

    @property
    def resident_ids(self) -> list[str]:
        return [h.layout.resident_id for h in self.homes]


def kommun_of(index: int) -> str:
    """Odd homes belong to Stockholm, even ones to Nacka; all to Region Stockholm."""
    return "kommun-0180" if index % 2 else "kommun-0182"


def seed_demo(conn: psycopg.Connection, homes: int, seed: int = 0, consent: bool = True) -> SeedResult:
    """Create organisations, ``homes`` homes (resident, gateway, devices, plan, consent) and relations."""
    rng = random.Random(seed)
    result = SeedResult(organisations=[o[0] for o in ORGANISATIONS])
    has_relations = conn.execute("SELECT to_regclass('care_relations')").fetchone()
    has_sharing = conn.execute("SELECT to_regclass('sharing_consents')").fetchone()
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO organisations (org_id, name, kind) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            ORGANISATIONS,
        )
        for i in range(1, homes + 1):
            lay = home_layout(i)
            kommun, region = kommun_of(i), "region-01"
            result.homes.append(SeededHome(lay, kommun, region))
            cur.execute(
                "INSERT INTO homes (home_id, kommun_org_id, region_org_id, area) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (lay.home_id, kommun, region, "sodermalm" if i % 4 in (1, 2) else "sickla"),
            )
            cur.execute(
                "INSERT INTO residents (resident_id, home_id, kommun_org_id, region_org_id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (lay.resident_id, lay.home_id, kommun, region),
            )
            born = date(1930 + rng.randrange(20), 1 + rng.randrange(12), 1 + rng.randrange(28))
            cur.execute(
                "INSERT INTO resident_identities (resident_id, name, personnummer) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (lay.resident_id, f"{rng.choice(_FIRST)} {rng.choice(_LAST)}", synthetic(born, i % 1000)),
            )
            cur.execute(
                "INSERT INTO gateways (gateway_id, home_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (lay.gateway_id, lay.home_id),
            )
            cur.executemany(
                "INSERT INTO devices (device_id, gateway_id, home_id, device_kind, room) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(d.device_id, lay.gateway_id, lay.home_id, d.device_kind, d.room) for d in lay.devices],
            )
            cur.execute(
                "INSERT INTO care_plans (resident_id, plan) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (lay.resident_id, Jsonb(CarePlan(lay.resident_id).to_dict())),
            )
            if consent:
                cur.execute(
                    "INSERT INTO monitoring_consents (home_id, subject, subject_ref, basis, method, recorded_by)"
                    " SELECT %s, 'resident', %s, 'consent', 'written', 'seed'"
                    " WHERE NOT EXISTS (SELECT 1 FROM monitoring_consents WHERE home_id = %s AND subject_ref = %s)",
                    (lay.home_id, lay.resident_id, lay.home_id, lay.resident_id),
                )
            if has_relations and has_relations[0]:
                _relations(cur, lay.resident_id, kommun)
            if has_sharing and has_sharing[0]:
                _sharing(cur, lay.resident_id, kommun, region)
    return result


def _relations(cur: psycopg.Cursor, resident_id: str, kommun: str) -> None:
    rels = [("clinician", "region-01")]
    if kommun == DEMO_USERS["nurse"]["org"]:
        rels.append(("nurse", kommun))
    for role, org in rels:
        u = DEMO_USERS[role]
        cur.execute(
            "INSERT INTO care_relations (user_id, org_id, unit, resident_id, kind, created_by)"
            " SELECT %s, %s, %s, %s, 'care_team', 'seed' WHERE NOT EXISTS"
            " (SELECT 1 FROM care_relations WHERE user_id = %s AND resident_id = %s)",
            (u["user"], org, u["unit"], resident_id, u["user"], resident_id),
        )


def _sharing(cur: psycopg.Cursor, resident_id: str, kommun: str, region: str) -> None:
    """The resident consented to joint documentation between their kommun and region (one year)."""
    for owner, reader, cats in (
        (kommun, region, ["alerts", "sensor_events", "medication"]),
        (region, kommun, ["alerts"]),
    ):
        cur.execute(
            "INSERT INTO sharing_consents (resident_id, owner_org_id, reader_org_id, categories, mode, legal_basis,"
            " valid_to, recorded_by, method) SELECT %s, %s, %s, %s, 'joint_documentation', 'consent',"
            " now() + interval '365 days', 'seed', 'written' WHERE NOT EXISTS (SELECT 1 FROM sharing_consents"
            " WHERE resident_id = %s AND owner_org_id = %s AND reader_org_id = %s)",
            (resident_id, owner, reader, cats, resident_id, owner, reader),
        )
