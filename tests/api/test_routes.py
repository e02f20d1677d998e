"""The routers are mounted busiest first (api/routes/__init__.py); that is safe only while no path matches two
routers, which this checks for a concrete path made from every route template."""

from __future__ import annotations

import re

from starlette.routing import Match

from api.app import create_app
from api.routes import ROUTERS
from carechain.settings import Settings

VALUES = ("x", "1", "stream", "timeline", "alerts", "metadata", "_search", "Patient", "v1")


def test_no_path_matches_two_routers(tmp_path: object) -> None:
    app = create_app(Settings(state_dir=tmp_path))
    mounted = [r for r in app.router.routes if type(r).__name__ == "_IncludedRouter"]
    assert len(mounted) == len(ROUTERS)
    checked = 0
    for router in ROUTERS:
        for route in router.routes:
            for value in VALUES:
                path = re.sub(r"\{[^}]+\}", value, getattr(route, "path", "/"))
                for method in getattr(route, "methods", None) or {"GET"}:
                    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b""}
                    full = [i for i, m in enumerate(mounted) if m.matches({**scope, "headers": []})[0] == Match.FULL]
                    assert len(full) == 1, (method, path, full)
                    checked += 1
    assert checked > 300
