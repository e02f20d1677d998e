"""The alert list reads the caller's reach and the alerts of that reach in one round trip; when the policy denies
one of those residents (here a block of the nurse's unit), their alerts are left out, pages stay complete, and
only the residents shown are audited."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.api import seed
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.integration


def test_list_leaves_out_a_denied_resident_in_reach(live: LiveServer, mint: Any, db: psycopg.Connection[Any]) -> None:
    seed.organisations(db)
    shown, blocked = "r-reach-shown", "r-reach-blocked"
    for rid in (shown, blocked):
        seed.resident(db, rid, f"h-{rid}")
        seed.relation(db, "nurse-reach", seed.KOMMUN_A, "hc-reach", rid)
    older = [seed.alert(db, shown, notify=False)[0] for _ in range(3)]
    newer = [seed.alert(db, blocked, notify=False)[0] for _ in range(3)]  # the newest rows are the blocked one's
    headers = {"Authorization": f"Bearer {mint('nurse-reach', seed.KOMMUN_A, 'nurse', 'hc-reach')}"}
    with httpx.Client(base_url=live.url, headers=headers) as c:
        before = c.get("/v1/alerts", params={"limit": 10}).json()
        assert {i["id"] for i in before["items"]} == set(older + newer) and not before["restricted"]

        db.execute(
            "INSERT INTO blocks (resident_id, org_id, unit, created_by) VALUES (%s, %s, 'hc-reach', 'test')",
            (blocked, seed.KOMMUN_A),
        )
        ids: list[int] = []
        cursor = None
        pages = 0
        while True:  # two per page: the blocked resident's newer alerts must not cut a page short
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            r = c.get("/v1/alerts", params=params)
            assert r.status_code == 200
            page = r.json()
            assert page["restricted"] and all(i["resident_id"] == shown for i in page["items"])
            ids += [i["id"] for i in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
            assert len(page["items"]) == 2
        assert ids == sorted(older, reverse=True) and pages == 2
        audited = db.execute(
            "SELECT DISTINCT resident_id FROM audit_log WHERE user_id = 'nurse-reach' AND resource = 'alerts/list'"
            " AND id > (SELECT max(id) FROM audit_log WHERE user_id = 'nurse-reach' AND resident_id = %s)",
            (blocked,),
        ).fetchall()
        assert audited == [(shown,)]
