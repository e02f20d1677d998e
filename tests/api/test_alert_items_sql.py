"""The alert list's items built as JSON by PostgreSQL are the JSON the Python path (``alert_item`` and
pydantic-core) gives for the same rows: both views (full, and home care's "needs a visit" of a clinical alert),
timestamps with and without microseconds and in another session time zone, awkward evidence and text."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from pydantic_core import to_json

from api import store
from api.access import OrgKind, Role, UserContext
from api.routes import alerts as routes
from tests.api import seed

pytestmark = pytest.mark.integration

EVIDENCE = {"score": 0.1, "big": 12345678901234, "f": [1, 2.5, -0.001, 1e-7, None, True], "s": 'q"\\\n\tå€💡'}


@pytest.mark.parametrize("tz", ["Etc/UTC", "Europe/Stockholm"])
@pytest.mark.parametrize("role", [Role.NURSE, Role.CLINICIAN])  # municipality: home care / clinical scope
def test_item_json_from_postgres_is_the_python_json(
    api_db: str, db: psycopg.Connection[Any], role: Role, tz: str
) -> None:
    seed.organisations(db)
    rid = f"r-items-sql-{uuid.uuid4().hex[:8]}"
    seed.resident(db, rid, f"h-{rid}")
    ids = [seed.alert(db, rid, kind=k, family=f, notify=False)[0] for k, f in [("fall", "welfare")] * 2]
    ids += [seed.alert(db, rid, kind="infection_signs", family="clinical", notify=False)[0] for _ in range(2)]
    db.execute(
        "UPDATE alerts SET evidence = %s, reason = %s, acknowledged_at = '2026-11-23 08:00:00.12+00',"
        " created_at = '2026-03-29 01:30:00+00', resolved_at = '2026-11-23 08:00:00+00' WHERE id = ANY(%s)",
        (Jsonb(EVIDENCE), "50 % 'quoted' \"text\" %s", ids[1::2]),
    )
    ctx = UserContext("u", seed.KOMMUN_A, OrgKind.MUNICIPALITY, "hc", role)
    routes._ITEM_SELECT.clear()
    with psycopg.connect(api_db, autocommit=True) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", (tz,))
        select = routes._item_select(conn, ctx)
        assert select is not None
        by_sql = store.alerts_for(conn, [rid], None, None, None, None, None, 10, select)
        by_python = store.alerts_for(conn, [rid], None, None, None, None, None, 10)
    routes._ITEM_SELECT.clear()
    assert [r["id"] for r in by_sql] == [r["id"] for r in by_python] and len(by_sql) == 4
    for sql_row, py_row in zip(by_sql, by_python, strict=True):
        expected = to_json(routes.alert_item(ctx, py_row)).decode()
        assert json.loads(sql_row[routes.ITEM]) == json.loads(expected)
        assert list(json.loads(sql_row[routes.ITEM])) == list(json.loads(expected))  # the same key order
        if py_row["id"] in ids[0::2]:  # plain text and evidence: the bytes too, but for jsonb's ", " and ": "
            assert sql_row[routes.ITEM].replace(", ", ",").replace(": ", ":") == expected
    summary = [json.loads(r[routes.ITEM]) for r in by_sql if r["id"] in ids[2:]]
    assert all((i["kind"] == "needs_visit") == (role is Role.NURSE) for i in summary)
    # the page around the items: the same bytes as pydantic-core's page
    page = routes._rows_response(by_sql[:3], ctx, 2, restricted=True).body
    expected_page = routes._page_response(
        [routes.alert_item(ctx, r) for r in by_python[:2]],
        routes.next_cursor(by_python[:3], 2, lambda r: [str(r["sort_at"]), int(r["id"])]),
        True,
    ).body
    assert json.loads(page) == json.loads(expected_page)


def test_columns_of_other_types_fall_back_to_python(db: psycopg.Connection[Any]) -> None:
    ctx = UserContext("u", seed.KOMMUN_A, OrgKind.MUNICIPALITY, "hc", Role.NURSE)
    types = dict(store.alert_columns(db)) | {"sort_at": "timestamp with time zone"}
    assert routes._item_fields(ctx, types, clinical_family=False) is not None
    assert routes._item_fields(ctx, types | {"score": "double precision"}, clinical_family=False) is None
