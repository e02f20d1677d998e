"""SQL behind the web page's own figure: medication doses the robots handled (aggregated, per organisation).

Pseudonymous counts over the organisation's residents only; no resident id
leaves this query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row

DOSE_TAKEN = "medication.dose_taken"
DOSE_MISSED = "medication.dose_missed"


def robot_doses(conn: Connection[Any], org_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Doses taken with the robot and doses missed, for the organisation's residents in [since, until).

    The organisation's residents: those of the municipality (home care) or of the region it answers for.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE o.kind = %s)::int AS doses_taken,"
            " count(*) FILTER (WHERE o.kind = %s)::int AS doses_missed,"
            " count(DISTINCT o.resident_id)::int AS residents"
            " FROM observations o JOIN residents r ON r.resident_id = o.resident_id"
            " WHERE (r.kommun_org_id = %s OR r.region_org_id = %s) AND o.ts >= %s AND o.ts < %s"
            " AND o.kind IN (%s, %s)",
            (DOSE_TAKEN, DOSE_MISSED, org_id, org_id, since, until, DOSE_TAKEN, DOSE_MISSED),
        )
        row = cur.fetchone()
    return dict(row) if row else {"doses_taken": 0, "doses_missed": 0, "residents": 0}
