"""Care plans and global detector pauses from PostgreSQL (psycopg lives here, nowhere else in streams).

Tables (owned by storage and the API): ``care_plans(resident_id, plan jsonb,
updated_at)`` and ``detector_pauses(detector, resident_id, paused, changed_at)``
(a row with ``resident_id`` NULL is a global switch). When the database or a
table is missing, residents get the default plan: monitoring never stops for
want of a plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg

from carechain.care_plan import CarePlan

log = logging.getLogger(__name__)


class CarePlanStore:
    """Reads care plans and pauses; one autocommit connection, reopened after failures."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self.since: datetime | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        return self._conn

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except psycopg.Error as exc:
            log.warning("care plans unavailable (%s): default plans in use", type(exc).__name__)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return []

    def plans(self, resident_ids: Iterable[str]) -> dict[str, CarePlan]:
        """Plans of these residents (missing ones are absent: the caller uses the default)."""
        ids = list(resident_ids)
        if not ids:
            return {}
        rows = self._query("SELECT resident_id, plan FROM care_plans WHERE resident_id = ANY(%s)", (ids,))
        return {rid: _plan(rid, raw) for rid, raw in rows}

    def changed(self) -> dict[str, CarePlan]:
        """Plans changed since the previous call (all of them the first time)."""
        if self.since is None:
            rows = self._query("SELECT resident_id, plan, updated_at FROM care_plans")
        else:
            rows = self._query(
                "SELECT resident_id, plan, updated_at FROM care_plans WHERE updated_at > %s", (self.since,)
            )
        for _, _, at in rows:
            if at is not None and (self.since is None or at > self.since):
                self.since = at
        return {rid: _plan(rid, raw) for rid, raw, _ in rows}

    def global_pauses(self) -> set[str] | None:
        """Detectors paused for everyone (None when unknown, e.g. the database is away)."""
        rows = self._query(
            "SELECT DISTINCT ON (detector) detector, paused FROM detector_pauses"
            " WHERE resident_id IS NULL ORDER BY detector, changed_at DESC, id DESC"
        )
        if not rows and self._conn is None:
            return None
        return {d for d, paused in rows if paused}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _plan(resident_id: str, raw: Any) -> CarePlan:
    try:
        return CarePlan.from_dict(resident_id, raw if isinstance(raw, dict) else None)
    except (TypeError, ValueError, KeyError) as exc:
        log.warning("care plan of a resident is invalid (%s): default plan in use", type(exc).__name__)
        return CarePlan(resident_id=resident_id)
